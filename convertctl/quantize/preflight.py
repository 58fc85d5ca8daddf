"""Refuse models that cannot be quantized, before calibration spends minutes on them."""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import UsageError, require

QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                 "ConvInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul")
_FLOAT = ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE")
_HALF = {10: "FP16", 16: "BF16"}  # onnx.TensorProto.FLOAT16, BFLOAT16


def half_precision(model) -> str:
    """What makes `model` an FP16/BF16 or mixed-precision model, e.g. "input x FP16, 12 FP16 weights, 3 Casts
    to FP16" (empty when nothing does): graph inputs and outputs, initializers, Constant nodes and Casts of
    those types, in the main graph and its subgraphs."""
    onnx = require("onnx", "onnx")
    io, weights, constants, casts = [], 0, 0, 0
    kinds: set[str] = set()
    for what, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            kind = _HALF.get(v.type.tensor_type.elem_type)
            if kind:
                io.append(f"{what} {v.name!r} {kind}")

    def visit(graph):
        nonlocal weights, constants, casts
        for init in graph.initializer:
            if init.data_type in _HALF:
                weights += 1
                kinds.add(_HALF[init.data_type])
        for node in graph.node:
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i in _HALF:
                    casts += 1
                    kinds.add(_HALF[a.i])
                elif node.op_type == "Constant" and a.type == onnx.AttributeProto.TENSOR and a.t.data_type in _HALF:
                    constants += 1
                    kinds.add(_HALF[a.t.data_type])
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g)
                for g in a.graphs:
                    visit(g)

    visit(model.graph)
    kind = "/".join(sorted(kinds)) or "FP16"
    counts = ((weights, f"{kind} weight"), (constants, f"{kind} constant"), (casts, f"Cast to {kind}"))
    parts = io[:3] + [f"{n} {what.replace(' ', 's ', 1) if what.startswith('Cast') and n > 1 else what}"
                      f"{'s' if n > 1 and not what.startswith('Cast') else ''}" for n, what in counts if n]
    return ", ".join(parts)


def check_quantizable(model_path: Path, precisions: set[str]) -> None:
    """INT8 needs a float model without quantization in it; INT8 and FP16 need float tensors to convert."""
    wanted = precisions & {"int8", "fp16"}
    if not wanted:
        return
    from convertctl.model import load_proto

    onnx = require("onnx", "onnx")
    model = load_proto(model_path)  # an empty or corrupt file is said to be one, not "no float tensors"
    graph = model.graph
    if "int8" in wanted:
        found = sorted({n.op_type for n in graph.node if n.op_type in QUANTIZED_OPS})
        if found:
            count = sum(n.op_type in QUANTIZED_OPS for n in graph.node)
            raise UsageError(f"{model_path.name} is already quantized ({count} nodes of {', '.join(found)}): "
                             "an int8 target cannot quantize it again",
                             hint="give the FP32 model, or build this one with fp32 targets (they keep its Q/DQ)")
        half = half_precision(model)
        if half:
            raise UsageError(f"{model_path.name} computes in reduced precision ({half}): INT8 quantization needs "
                             "an FP32 model (the Q/DQ quantizer cannot scale FP16/BF16 tensors)",
                             hint="quantize the model's FP32 export (before .half() or an FP16 conversion); this "
                                  "one builds as it is with fp32 or fp16 targets")
    float_types = {getattr(onnx.TensorProto, t) for t in _FLOAT}
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
    if not any(i.data_type in float_types for i in graph.initializer) and \
            not any(v.type.tensor_type.elem_type in float_types for v in typed):
        raise UsageError(f"{model_path.name} has no float tensors to quantize (no float inputs, weights or "
                         f"intermediate tensors): {' and '.join(sorted(wanted))} targets have nothing to do",
                         hint="build it with fp32 targets")
