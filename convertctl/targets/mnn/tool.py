"""MNN's native tools (the wheel's compiled `_tools.mnnconvert` / `_tools.mnnquant`) in a child process of their
own (worker.py): a native abort or a hang stops only the child, and MNN's stdout ("The device supports: ...", its
progress lines) lands in a log file, never on convertctl's stdout. The parent reads the log: which operators MNNConvert
refused, whether it said "Converted Success!"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.errors import ConvertctlError

# MNNConvert's refusal: "[12:00:00] :220: These Op Not Support: ONNX::Hardmax ONNX::Mish"
_NOT_SUPPORTED = re.compile(r"These Op Not Support:\s*(.*)")
_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\]\s*[:@]?\s*\d*:\s*")
# MNN's own chatter, left out of a failure's summary
_CHATTER = ("The device supports", "Start to Convert", "ONNX Model ir version", "ONNX Model opset version",
            "Start to Optimize", "inputTensors", "outputTensors", "Converted Failed", "MNN use ")


@dataclass
class ToolRun:
    """One run of a native tool: its log, what the child imported, and how it ended."""

    log: Path
    text: str
    returncode: int
    seconds: float
    modules: list[str] = field(default_factory=list)  # the MNN/aliyun modules the child imported
    result: bool = False  # the child got back from the native call (no abort)

    def lines(self) -> list[str]:
        return [_STAMP.sub("", line).strip() for line in self.text.splitlines() if line.strip()]

    def refused_ops(self) -> list[str]:
        """The operator types MNNConvert said it does not support ("ONNX::Hardmax" -> "Hardmax")."""
        ops = []
        for line in self.lines():
            m = _NOT_SUPPORTED.search(line)
            if m:
                ops += [o.split("::", 1)[-1] for o in m.group(1).split() if o]
        return list(dict.fromkeys(ops))

    def summary(self, limit: int = 300) -> str:
        """The last lines MNN printed that say something (errors, asserts), on one line."""
        said = [line for line in self.lines() if not line.startswith(_CHATTER) and "CollectFeature" not in line
                and "computeDistance" not in line]
        text = "; ".join(said[-3:])
        return text[:limit] + ("…" if len(text) > limit else "")


def how_it_ended(returncode: int) -> str:
    from convertctl.frontends.child import exit_description

    return exit_description(returncode)


def run_tool(tool: str, argv: list[str], workdir: Path, name: str, timeout_s: float) -> ToolRun:
    """Run MNN's `tool` ("convert" | "quant") with `argv` in a child in `workdir`; `name` names its files
    (`<name>.log`, `<name>.request.json`). Raises ConvertctlError on a timeout; a crash is in the ToolRun."""
    from convertctl import processes

    workdir.mkdir(parents=True, exist_ok=True)
    req = workdir / f"{name}.request.json"
    result_path = workdir / f"{name}.result.json"
    log = workdir / f"{name}.log"
    result_path.unlink(missing_ok=True)
    req.write_text(json.dumps({"tool": tool, "argv": argv}, indent=2))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # the child finds this convertctl, whichever way it was put on the path
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = processes.run([sys.executable, "-m", "convertctl.targets.mnn.worker", str(req)], timeout=timeout_s,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise ConvertctlError(f"MNN's {_TITLE[tool]} did not finish within {timeout_s:g} s and was stopped",
                                  hint=f"raise converter_timeout_s in the mnn target; log: {log}") from None
    seconds = round(time.perf_counter() - t0, 3)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    req.unlink(missing_ok=True)
    result_path.unlink(missing_ok=True)
    return ToolRun(log=log, text=log.read_text(errors="replace"), returncode=proc.returncode, seconds=seconds,
                   modules=result.get("modules", []), result=bool(result))


_TITLE = {"convert": "converter (MNNConvert)", "quant": "offline quantizer (quantized.out)"}


def convert_argv(onnx_path: Path, mnn_path: Path, fp16: bool) -> list[str]:
    """MNNConvert's arguments (argv[0] included) for an ONNX model."""
    argv = ["MNNConvert", "-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(mnn_path),
            "--bizCode", "convertctl"]
    return argv + (["--fp16"] if fp16 else [])
