"""Which operator makes pnnx crash: one trial conversion per distinct operator, each a one-node model.

pnnx can die natively (a segfault in its ncnn pass, e.g. on Magika's int32 Equal/Expand graph) and then says
nothing about the operator. Its log names only the pass. So after such a crash, every distinct operator type of the
model is converted on its own (the first node of that type, with the input types and shapes shape inference gives it
at the traced input shapes, its constant inputs as initializers) in a child process each; the types whose one-node
conversion crashes too are the ones named. Bounded: at most _MAX_TYPES types, _EACH_S seconds each.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from convertctl.errors import require

_MAX_TYPES = 48
_EACH_S = 60.0


def crashing_operators(onnx_path: Path, shapes: list[tuple[list[int], int]], scratch: Path) -> list[str]:
    """'OpType (node name)' for each operator type whose one-node conversion crashes pnnx too."""
    onnx = require("onnx", "onnx")
    from convertctl.processes import run
    from convertctl.targets.ncnn.convert import pnnx_binary, shape_arg

    model = onnx.load(str(onnx_path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = [vi for vi in g.input if vi.name not in inits]
    for vi, (shape, _) in zip(graph_inputs, shapes, strict=False):  # the traced shapes, so every dim is known
        dims = vi.type.tensor_type.shape.dim
        for d, size in zip(dims, shape, strict=False):
            d.Clear()
            d.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        inferred = model
    types = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    exe = pnnx_binary()
    found, seen = [], set()
    for i, node in enumerate(g.node):
        if node.op_type in seen or len(seen) >= _MAX_TYPES:
            continue
        seen.add(node.op_type)
        feeds, consts = [], []
        for t in node.input:
            if not t:
                continue
            if t in inits:
                consts.append(inits[t])
            elif t in types and _static(types[t]):
                feeds.append(types[t])
            else:
                break
        else:
            if not feeds:
                continue
            outs = [types[t] if t in types else onnx.ValueInfoProto(name=t) for t in node.output if t]
            one = onnx.helper.make_model(onnx.helper.make_graph([node], "one", feeds, outs, consts),
                                         opset_imports=list(model.opset_import), ir_version=model.ir_version)
            folder = scratch / f"op{i}"
            folder.mkdir(parents=True, exist_ok=True)
            onnx.save(one, str(folder / "model.onnx"))
            shape = shape_arg([([d.dim_value for d in vi.type.tensor_type.shape.dim], vi.type.tensor_type.elem_type)
                               for vi in feeds])
            with open(folder / "pnnx.log", "wb") as log:
                try:
                    done = run([str(exe), "model.onnx", f"inputshape={shape}", "fp16=0"], timeout=_EACH_S,
                               cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    continue
            if done.returncode != 0:
                found.append(f"{node.op_type} ({node.name or f'{node.op_type}_{i}'})")
    return found


def _static(vi) -> bool:
    tt = vi.type.tensor_type
    return tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)
