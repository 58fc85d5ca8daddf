"""The ONNX model in flight: where it is on disk and what its inputs and outputs look like."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import SourceModelError, require

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}
TWO_GB = 2**31


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]  # symbolic dims by name; an unnamed dynamic dim becomes "?"
    dtype: str


@dataclass
class ModelIO:
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: int
    ir_version: int
    node_count: int
    op_counts: dict[str, int]


def load_proto(path: Path, with_weights: bool = False):
    """Load an ONNX file; a missing or corrupt file becomes one clear error."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    if not path.is_file():
        raise SourceModelError(f"model file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=with_weights)
    except Exception as exc:  # protobuf raises DecodeError and friends: all mean "not an ONNX file"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceModelError(
            f"{path} is not a readable ONNX model ({first})",
            hint="check that the file is complete (not truncated) and really is an .onnx model",
        ) from None


def _tensor_info(value) -> TensorInfo:
    t = value.type.tensor_type
    shape: list[int | str] = []
    for d in t.shape.dim:
        shape.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return TensorInfo(value.name, shape, _ONNX_DTYPES.get(t.elem_type, f"onnx-type-{t.elem_type}"))


def describe(path: Path) -> ModelIO:
    proto = load_proto(path)
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    ops: dict[str, int] = {}
    for node in graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        ops[key] = ops.get(key, 0) + 1
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelIO(
        inputs=[_tensor_info(i) for i in graph.input if i.name not in initializers],
        outputs=[_tensor_info(o) for o in graph.output],
        opset=opset,
        ir_version=proto.ir_version,
        node_count=len(graph.node),
        op_counts=dict(sorted(ops.items())),
    )


def copy_model(path: Path, out_dir: Path, name: str = "model.onnx") -> list[Path]:
    """Copy an ONNX model and its external-data files into out_dir as `name` (the data files keep the names
    the model references); return the copies' paths relative to out_dir."""
    import shutil

    copied = []
    for i, f in enumerate(companion_files(path)):
        target = name if i == 0 else f.name
        shutil.copyfile(f, Path(out_dir) / target)
        copied.append(Path(target))
    return copied


def companion_files(path: Path) -> list[Path]:
    """The model file plus any external-data files it references, as they are on disk."""
    proto = load_proto(path)
    files = [Path(path)]
    seen = set()
    for init in proto.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and entry.value not in seen:
                seen.add(entry.value)
                files.append(Path(path).parent / entry.value)
    return files
