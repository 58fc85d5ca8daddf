"""Structural check of an ONNX model: the ONNX checker (with shape inference), opset, I/O, operators.

Per-target operator support (OpenVINO, ONNX Runtime, TensorRT) builds on this in `convertctl check`.
"""

from __future__ import annotations

from pathlib import Path

from convertctl.checks.model_facts import one_line
from convertctl.errors import SourceModelError, require
from convertctl.model import describe


def check_structure(path: Path) -> tuple[list[str], dict]:
    onnx = require("onnx", "onnx")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError: both mean the file is not a valid model
        msg = one_line(str(exc), 600)  # the reason first, then the node it is about ("==> Context: ...")
        raise SourceModelError(f"{path.name} fails the ONNX checker: {msg}") from None
    io = describe(path)
    dynamic = sorted({d for t in io.inputs + io.outputs for d in t.shape if isinstance(d, str)})
    findings = [
        f"ONNX checker and shape inference passed (IR {io.ir_version}, opset {io.opset}, {io.node_count} nodes)",
        "operators: " + ", ".join(f"{op} x{n}" for op, n in io.op_counts.items()),
    ]
    if dynamic:
        findings.append("dynamic dims: " + ", ".join(dynamic))
    details = {
        "ir_version": io.ir_version,
        "opset": io.opset,
        "node_count": io.node_count,
        "op_counts": io.op_counts,
        "inputs": [vars(t) for t in io.inputs],
        "outputs": [vars(t) for t in io.outputs],
    }
    return findings, details
