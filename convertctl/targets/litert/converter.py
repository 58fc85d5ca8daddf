"""onnx2tf, run in a child process of its own Python environment, with a timeout.

Why its own environment: onnx2tf 1.29.24 (the last release for Python 3.11) pins tensorflow 2.19.0, numpy 1.26.4,
onnx 1.19.1, onnxruntime 1.23.0 and ai-edge-litert 2.1.0, which conflict with convertctl's own. `make frameworks`
builds it from env.txt beside this file. Why a child: TensorFlow takes seconds to import and a native converter
abort must not take the run with it; a hang is stopped at `converter_timeout_s`.

The interpreter, in this order: $CONVERTCTL_ONNX2TF_PYTHON; <cache>/envs/onnx2tf/bin/python (make frameworks);
this interpreter if it has onnx2tf and tensorflow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from convertctl.errors import ConvertctlError, UsageError

ENV_VAR = "CONVERTCTL_ONNX2TF_PYTHON"
ENV_NAME = "onnx2tf"
PINS = Path(__file__).resolve().parent / "env.txt"
WORKER = "convertctl.targets.litert.worker"


def managed_env() -> Path:
    from convertctl.paths import default_cache_dir

    return default_cache_dir() / "envs" / ENV_NAME


def interpreter() -> tuple[str, str]:
    """(python, how it was chosen). A UsageError naming how to make the environment when there is none."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise UsageError(f"{ENV_VAR} names {chosen}, which is not an executable Python interpreter")
        return chosen, ENV_VAR
    managed = managed_env() / "bin" / "python"
    if managed.is_file():
        from convertctl.frontends.interpreters import env_lacks, incomplete_env

        lacking = env_lacks(managed_env(), ("onnx2tf", "tensorflow"))
        if lacking:  # an interrupted `make frameworks`: said as such, not as the child's "No module named onnx2tf"
            raise incomplete_env(managed_env(), lacking, "run `make frameworks` again")
        return str(managed), f"{managed_env()} (make frameworks)"
    if all(importlib.util.find_spec(m) is not None for m in ("onnx2tf", "tensorflow")):
        return sys.executable, "this interpreter"
    env = managed_env()
    raise UsageError("no Python environment with onnx2tf for the litert target (onnx2tf converts the ONNX to .tflite)",
                     hint=f"`make frameworks`, or: python3 -m venv {env} && {env}/bin/pip install -r {PINS}; "
                          f"or set {ENV_VAR} to a Python that has onnx2tf 1.29.24")


def command(argv: list[str]) -> str:
    """The command line a user runs in that environment to reproduce the conversion (in the build's folder)."""
    return shlex.join(["onnx2tf", *argv])


def run(argv: list[str], workdir: Path, onnx: str, timeout: float) -> dict:
    """Run `onnx2tf argv` in `workdir` through the worker; its versions and seconds, or a ConvertctlError naming the
    ONNX operator onnx2tf stopped at. The child's output goes to workdir/onnx2tf.log."""
    from convertctl import processes
    from convertctl.frontends.child import exit_description, offline_env, package_path

    python, origin = interpreter()
    request = workdir / "onnx2tf.request.json"
    request.write_text(json.dumps({"argv": argv, "onnx": onnx}))
    result, error, log = (workdir / "onnx2tf.result.json", workdir / "onnx2tf.error.json", workdir / "onnx2tf.log")
    # nothing leaves the machine (offline_env): build.py writes the sample images onnx2tf would download.
    # oneDNN aborted TensorFlow natively on PP-OCRv4 det ("could not create a primitive descriptor for a convolution
    # forward propagation primitive", SIGILL); without it the conversion passes (measured)
    env = offline_env(TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    t0 = time.perf_counter()
    with open(log, "wb") as out, package_path(python) as path:
        if path:
            env["PYTHONPATH"] = path
        try:
            proc = processes.run([python, "-m", WORKER, request.name], timeout=timeout, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise ConvertctlError(f"onnx2tf did not finish within converter_timeout_s ({int(timeout)} s) and was "
                                  "stopped", hint=f"raise converter_timeout_s; full log: {log}") from None
    seconds = round(time.perf_counter() - t0, 3)
    if error.exists():
        raise ConvertctlError(_failure(json.loads(error.read_text()), log, onnx), hint=f"full log: {log}")
    if proc.returncode != 0 or not result.exists():
        raise ConvertctlError(f"the onnx2tf process {exit_description(proc.returncode)} without a result"
                              + (f": {last_error(log)}" if last_error(log) else ""), hint=f"full log: {log}")
    return {**json.loads(result.read_text()), "seconds": seconds, "python": python, "python_origin": origin}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_error(log: Path) -> str:
    """onnx2tf's last `ERROR:` line (its own checks log the reason, then exit)."""
    try:
        lines = _ANSI.sub("", log.read_text(errors="replace")).splitlines()
    except OSError:
        return ""
    found = [ln.split("ERROR:", 1)[1].strip() for ln in lines if "ERROR:" in ln and ln.split("ERROR:", 1)[1].strip()]
    return found[-1][:300] if found else ""


def _failure(err: dict, log: Path, onnx: str) -> str:
    """One line naming the operator: from the exception onnx2tf tagged with the node it was converting, else the
    TF layer name it gave (onnx2tf names TF ops after ONNX nodes), else its last logged error."""
    if err.get("from_log"):
        return f"{err['message']}: {last_error(log) or 'no reason logged'}"
    node, op_type, message = err.get("node"), err.get("op_type"), err["message"]
    if not node:
        text = _ANSI.sub("", log.read_text(errors="replace")) if log.exists() else ""
        named = re.findall(r"name='([^']+)'", text)
        node = named[-1] if named else None
        op_type = op_type or (_op_type_of(onnx, node) if node else None)
        detail = re.findall(r"^\s*(?:ValueError|TypeError|RuntimeError|InvalidArgumentError)?:?\s*(Dimensions must be "
                            r"equal.*|.*[Ii]ncompatible shapes.*|.*not supported.*)$", text, re.M)
        message = detail[-1].strip()[:300] if detail else message
    if node and op_type and message.startswith("ModuleNotFoundError: No module named 'onnx2tf.ops."):
        return f"onnx2tf has no converter for {op_type} (node {node!r}): \"{op_type} OP is not yet implemented\""
    where = f" at {op_type} node {node!r}" if node and op_type else (f" at node {node!r}" if node else "")
    return f"onnx2tf cannot convert the model{where}: {message}"


def _op_type_of(onnx_path: str, node: str) -> str | None:
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    return next((n.op_type for n in graph.node if n.name == node), None)
