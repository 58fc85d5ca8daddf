"""Emit per-target precisions from one FP32 ONNX and one calibration table.

- qdq_s8:   TensorRT's explicit-quantization form: symmetric INT8 (zero-point 0), weights per channel,
            activations per tensor, biases left in float. OpenVINO also reads it as INT8.
- qdq_u8s8: ONNX Runtime on x86: U8 activations, S8 per-channel weights (shared/FACTS.md: S8S8 ran
            slower than FP32 on this CPU, U8S8 2.6x faster).
- fp16:     FP16-typed ONNX; operators known to lose accuracy in FP16, and nodes whose calibrated
            range overflows FP16, stay FP32; inputs and outputs keep their types.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from convertctl.errors import UsageError, require
from convertctl.quantize.table import CalibrationTable, ort_method

EMISSIONS = ("fp32", "qdq_s8", "qdq_u8s8", "fp16")


def quantizable_op_types(model_path: Path, exclude_ops: list[str]) -> list[str]:
    """Operator types ONNX Runtime's QDQ quantizer handles, present in the model, minus the excluded ones."""
    registry = require("onnxruntime.quantization.registry", "onnxruntime")
    from convertctl.model import describe

    present = set(describe(model_path).op_counts)
    return sorted((present & set(registry.QDQRegistry)) - set(exclude_ops))


def already_quantized(model_path: Path) -> bool:
    from convertctl.model import describe

    ops = describe(model_path).op_counts
    return any(op in ops for op in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                                    "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"))


def emit_qdq(fp32: Path, table: CalibrationTable, out: Path, flavour: str, exclude_ops=(), exclude_nodes=()) -> dict:
    quant = require("onnxruntime.quantization", "onnxruntime")
    if already_quantized(fp32):
        raise UsageError(f"{fp32.name} is already quantized (it has Q/DQ or integer operators)",
                         hint="quantize the FP32 model instead")
    ops = quantizable_op_types(fp32, list(exclude_ops))
    if not ops:
        raise UsageError("the model has no operators to quantize", hint="check quantize.exclude_ops")
    tensorrt = flavour == "qdq_s8"
    with _quiet_root_logger():  # ORT logs a generic "consider pre-processing" warning on every call
        _quantize_static(quant, fp32, table, out, ops, tensorrt, exclude_nodes)
    return {"flavour": flavour, "op_types": ops, "activation": "int8 symmetric" if tensorrt else "uint8 asymmetric",
            "weights": "int8 symmetric per-channel", "excluded_nodes": list(exclude_nodes),
            "excluded_ops": list(exclude_ops)}


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_static(quant, fp32, table, out, ops, tensorrt, exclude_nodes):
    quant.quantize_static(
        model_input=str(fp32), model_output=str(out), calibration_data_reader=None,
        quant_format=quant.QuantFormat.QDQ, op_types_to_quantize=ops, per_channel=True,
        activation_type=quant.QuantType.QInt8 if tensorrt else quant.QuantType.QUInt8,
        weight_type=quant.QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
        calibrate_method=ort_method(table.method), calibration_cache_path=str(table.path),
        extra_options={
            "ActivationSymmetric": tensorrt,  # TensorRT: zero-point 0
            "WeightSymmetric": True,
            "QuantizeBias": not tensorrt,  # TensorRT rejects INT32 bias DQ (onnx-tensorrt #850)
        },
    )


# Operators that commonly lose accuracy or overflow in FP16 (same spirit as onnxconverter-common's list).
FP16_KEEP_FP32_OPS = ["ReduceSum", "ReduceMean", "ReduceProd", "Exp", "Log", "Pow", "Softmax", "LogSoftmax",
                      "Resize", "Range", "CumSum", "TopK", "NonMaxSuppression", "RandomUniformLike",
                      "RandomNormalLike", "Upsample", "Where"]


def emit_fp16(fp32: Path, out: Path, table: CalibrationTable | None, range_limit: float, exclude_ops=(),
              exclude_nodes=()) -> dict:
    onnx = require("onnx", "onnx")
    float16 = require("onnxruntime.transformers.float16", "onnxruntime")
    model = onnx.load(str(fp32))
    overflow: list[str] = []
    if table is not None:
        ranges = table.ranges()
        for node in model.graph.node:
            if any(max(abs(ranges[t][0]), abs(ranges[t][1])) > range_limit for t in node.output if t in ranges):
                overflow.append(node.name)
    keep_ops = sorted(set(FP16_KEEP_FP32_OPS) | set(exclude_ops))
    keep_nodes = sorted(set(overflow) | set(exclude_nodes))
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=keep_ops,
                                                 node_block_list=keep_nodes)
    onnx.save(converted, str(out))
    return {"kept_fp32_ops": [op for op in keep_ops if any(n.op_type == op for n in model.graph.node)],
            "kept_fp32_nodes_overflow": overflow, "kept_fp32_nodes_excluded": sorted(exclude_nodes),
            "range_limit": range_limit, "ranges_from": "calibration table" if table else "none (no calibration)"}
