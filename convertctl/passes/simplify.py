"""Graph simplification (constant folding, redundant-node removal, fusion) plus ONNX shape inference.

onnxslim is the default: it reaches the same node count as onnxsim (or fewer), imports in 0.2 s
against onnxsim's 1.4 s (its simplify call is slower on large graphs, but import + call is ~1 s
cheaper per run), and is pure Python. onnxsim stays selectable (`optimize.simplifier: onnxsim`).
benchmarks/README.md, "Simplifier choice", has the measurement.
"""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import require
from convertctl.model import TWO_GB, companion_files


def simplify(src: Path, dst: Path, tool: str) -> dict:
    onnx = require("onnx", "onnx")
    model = onnx.load(str(src))
    before = len(model.graph.node)
    if tool == "onnxslim":
        onnxslim = require("onnxslim", "onnx")
        model = onnxslim.slim(model)
    elif tool == "onnxsim":
        onnxsim = require("onnxsim", "onnx")
        model, ok = onnxsim.simplify(model)
        if not ok:
            raise RuntimeError("onnxsim could not validate its own result")
    else:
        raise ValueError(f"unknown simplifier {tool!r}")
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    # Keep the input's layout (external weights stay external), and go external when protobuf requires it.
    external = len(companion_files(src)) > 1 or _too_big(model)
    onnx.save(model, str(dst), save_as_external_data=external, all_tensors_to_one_file=True,
              location=dst.name + ".data" if external else None, size_threshold=1024)
    return {"tool": tool, "version": _version(tool), "nodes_before": before, "nodes_after": len(model.graph.node)}


def _too_big(model) -> bool:
    try:
        return model.ByteSize() >= TWO_GB
    except Exception:  # protobuf refuses to even measure messages over 2 GB
        return True


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
