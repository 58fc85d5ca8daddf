"""Refuse models that cannot be quantized, before calibration spends minutes on them."""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import UsageError, require

QUANTIZED_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                 "ConvInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul")
_FLOAT = ("FLOAT", "FLOAT16", "BFLOAT16", "DOUBLE")


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
    float_types = {getattr(onnx.TensorProto, t) for t in _FLOAT}
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
    if not any(i.data_type in float_types for i in graph.initializer) and \
            not any(v.type.tensor_type.elem_type in float_types for v in typed):
        raise UsageError(f"{model_path.name} has no float tensors to quantize (no float inputs, weights or "
                         f"intermediate tensors): {' and '.join(sorted(wanted))} targets have nothing to do",
                         hint="build it with fp32 targets")
