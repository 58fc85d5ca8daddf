"""Run a framework export in a child process.

Why a child: torch, paddle and tensorflow are heavy, can crash natively (and TF + Paddle in one
process segfault), and must never be imported by the CLI process. The child gets a JSON request,
writes `result.json` or `error.json`; its stdout/stderr go to a log file kept with the output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convertctl import processes
from convertctl.errors import ConvertctlError, SourceModelError, UsageError

_ERROR_KINDS = {"usage": UsageError, "source": SourceModelError}


def _tail(log: Path, lines: int = 12) -> str:
    try:
        text = log.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


TIMEOUT_ENV = "CONVERTCTL_EXPORT_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0  # an export of a real model takes seconds to minutes


def child_timeout() -> float:
    """Seconds a framework's child may take: $CONVERTCTL_EXPORT_TIMEOUT_S, else an hour."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(value) if value and float(value) > 0 else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None


def run_child(worker: str, request: dict, workdir: Path, log_name: str, python: str | None = None) -> dict:
    """Run `python -m worker request.json` in `workdir`; return its result or raise its error."""
    workdir.mkdir(parents=True, exist_ok=True)
    req = workdir / f"{log_name}.request.json"
    req.write_text(json.dumps(request, indent=2, default=str))
    result_path, error_path, log = (workdir / f"{log_name}.result.json", workdir / f"{log_name}.error.json",
                                    workdir / f"{log_name}.log")
    for p in (result_path, error_path):
        p.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    python = python or sys.executable
    with open(log, "wb") as out, package_path(python) as path:
        if path:  # another environment: it finds convertctl's workers, not this environment's packages
            env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        t0 = time.perf_counter()
        timeout = child_timeout()
        try:
            proc = processes.run([python, "-m", worker, str(req)], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=workdir, timeout=timeout)
        except subprocess.TimeoutExpired:  # a hung export must not hold the run forever: its group is stopped
            raise ConvertctlError(f"the {log_name} process did not finish within {timeout:g} s and was stopped",
                                  hint=f"full log: {log}; for a longer export set {TIMEOUT_ENV} (seconds)") from None
        seconds = round(time.perf_counter() - t0, 3)
    if error_path.exists():
        err = json.loads(error_path.read_text())
        cls = _ERROR_KINDS.get(err.get("kind"), ConvertctlError)
        raise cls(err["message"], hint=err.get("hint") or f"full log: {log}")
    if proc.returncode != 0 or not result_path.exists():
        how = exit_description(proc.returncode)
        tail = _tail(log)
        raise ConvertctlError(
            f"the {log_name} process {how} without a result" + (f"; last output:\n{tail}" if tail else ""),
            hint=f"full log: {log}",
        )
    return {**json.loads(result_path.read_text()), "child_seconds": seconds}  # start-up and import included


def offline_env(**extra: str) -> dict[str, str]:
    """This process's environment for a converter child that must reach nothing: every proxy variable points at a
    closed local port, so a download attempt fails at once instead of leaving the machine."""
    closed = "http://127.0.0.1:9"
    return dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="", HTTP_PROXY=closed, HTTPS_PROXY=closed,
                http_proxy=closed, https_proxy=closed, NO_PROXY="", no_proxy="", **extra)


@contextlib.contextmanager
def package_path(python: str):
    """For an interpreter of another environment: a folder holding only a link to this convertctl package.

    Putting convertctl's parent folder on PYTHONPATH instead could put this environment's site-packages
    (numpy 2, onnx 1.23) ahead of the child's own (the Paddle legacy stack needs numpy<2)."""
    # not resolve(): a venv's bin/python is a symlink to the base interpreter, yet its own environment
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        yield None
        return
    import convertctl

    with tempfile.TemporaryDirectory(prefix="convertctl-pkg-") as folder:
        (Path(folder) / "convertctl").symlink_to(Path(convertctl.__file__).resolve().parent)
        yield folder


def exit_description(returncode: int) -> str:
    """How a child process ended, for a message: "was killed by signal SIGSEGV" / "exited with code 3"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"was killed by signal {-returncode}"
        why = {"SIGSEGV": " (a native crash)", "SIGABRT": " (a native abort)", "SIGBUS": " (a native crash)",
               "SIGKILL": " (often the kernel's out-of-memory killer)"}.get(name, "")
        return f"was killed by signal {name}{why}"
    return f"exited with code {returncode}"
