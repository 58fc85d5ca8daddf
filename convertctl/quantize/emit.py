"""Emit per-target precisions from one FP32 ONNX and one calibration table.

- qdq_s8:   TensorRT's explicit-quantization form: symmetric INT8 (zero-point 0), weights per channel,
            activations per tensor, biases left in float. OpenVINO also reads it as INT8.
- qdq_u8s8: ONNX Runtime on x86: U8 activations, S8 per-channel weights (shared/FACTS.md: S8S8 ran
            slower than FP32 on this CPU, U8S8 2.6x faster). With `reduce_range` the weights use 7 bits
            (-64..64): x86 CPUs without VNNI compute U8S8 with VPMADDUBSW, whose 16-bit sums of two products
            saturate with 8-bit weights, not with 7-bit ones (ONNX Runtime's advice for such CPUs).
- qdq_u8u8: U8 activations, U8 asymmetric per-channel weights: ONNX Runtime's U8U8 kernels do not saturate on
            any x86 CPU, but ran slower than FP32 on an AVX2-only CPU (onnxruntime int8_form: u8u8 only).
- fp16:     FP16-typed ONNX; operators known to lose accuracy in FP16, and nodes whose calibrated
            range overflows FP16, stay FP32; inputs and outputs keep their types.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError, require
from convertctl.onnx_save import save_checked
from convertctl.quantize.table import CalibrationTable, ort_method

EMISSIONS = ("fp32", "qdq_s8", "qdq_u8s8", "qdq_u8u8", "fp16")


def quantizable_op_types(model_path: Path, exclude_ops: list[str]) -> list[str]:
    """Operator types ONNX Runtime's QDQ quantizer handles, present in the model, minus the excluded ones."""
    registry = require("onnxruntime.quantization.registry", "onnxruntime")
    from convertctl.model import describe

    present = set(describe(model_path).op_counts)
    return sorted((present & set(registry.QDQRegistry)) - set(exclude_ops))


def already_quantized(model_path: Path) -> bool:
    from convertctl.model import describe
    from convertctl.quantize.preflight import QUANTIZED_OPS

    return any(op in QUANTIZED_OPS for op in describe(model_path).op_counts)


def emit_qdq(fp32: Path, table: CalibrationTable, out: Path, flavour: str, exclude_ops=(), exclude_nodes=(),
             reduce_range: bool = False) -> dict:
    quant = require("onnxruntime.quantization", "onnxruntime")
    if already_quantized(fp32):
        raise UsageError(f"{fp32.name} is already quantized (it has Q/DQ or integer operators)",
                         hint="quantize the FP32 model instead")
    ops = quantizable_op_types(fp32, list(exclude_ops))
    if not ops:
        raise UsageError("the model has no operators to quantize", hint="check quantize.exclude_ops")
    tensorrt = flavour == "qdq_s8"
    if reduce_range and flavour != "qdq_u8s8":
        raise UsageError(f"reduce_range applies to qdq_u8s8 only, not {flavour}")
    with _quiet_root_logger():  # ORT logs a generic "consider pre-processing" warning on every call
        _quantize_static(quant, fp32, table, out, ops, flavour, exclude_nodes, reduce_range)
    kept_float = keep_float_layers_float(out)
    weights = ("uint8 asymmetric per-channel" if flavour == "qdq_u8u8" else
               "int8 symmetric per-channel" + (", 7 bits (reduce_range)" if reduce_range else ""))
    return {"flavour": flavour, "op_types": ops, "activation": "int8 symmetric" if tensorrt else "uint8 asymmetric",
            "weights": weights, "reduce_range": reduce_range, "excluded_nodes": list(exclude_nodes),
            "excluded_ops": list(exclude_ops), "float_layers_fed_float": kept_float}


_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm")


def keep_float_layers_float(path: Path) -> list[str]:
    """Feed every layer left in float (excluded: its weight is still a float initializer) a float tensor,
    not the DequantizeLinear output. Why: when such a layer's input comes from a per-tensor
    DequantizeLinear, ONNX Runtime's `WeightBiasQuantization` graph optimizer (on at every level above
    "disable all") quantizes its float weight to per-tensor INT8 when the session is created, silently
    undoing the exclusion (measured on EfficientNet-Lite0: excluding one depthwise Conv dropped
    cosine vs FP32 from 0.991 to 0.915). The float tensor is the one the Q/DQ pair was made from,
    clipped to the pair's representable range: the quantizer may have removed a ReLU/Clip before the
    Q (the Q's saturation does its work), so the clip restores exactly what the DQ carried, minus rounding."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    float_weights = {name for name, i in inits.items() if i.data_type == onnx.TensorProto.FLOAT}
    rewired, clipped = [], {}
    for node in list(graph.node):
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in float_weights:
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or q.input[1] not in inits:
            continue
        if dq.output[0] not in clipped:
            scale = float(numpy_helper.to_array(inits[q.input[1]]).reshape(-1)[0])
            zp_init = inits.get(q.input[2]) if len(q.input) > 2 else None
            zp_arr = numpy_helper.to_array(zp_init) if zp_init is not None else None
            zp = int(zp_arr.reshape(-1)[0]) if zp_arr is not None else 0
            info = np.iinfo(zp_arr.dtype if zp_arr is not None else np.uint8)
            lo, hi = (info.min - zp) * scale, (info.max - zp) * scale
            base = f"{dq.output[0]}_float"
            graph.initializer.extend([numpy_helper.from_array(np.array(lo, np.float32), base + "_min"),
                                      numpy_helper.from_array(np.array(hi, np.float32), base + "_max")])
            clip = helper.make_node("Clip", [q.input[0], base + "_min", base + "_max"], [base], name=base + "_clip")
            graph.node.insert(list(graph.node).index(node), clip)
            clipped[dq.output[0]] = base
        node.input[0] = clipped[dq.output[0]]
        rewired.append(node.name)
    if rewired:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        for n in [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] not in used]:
            graph.node.remove(n)  # a pair that now feeds nothing else
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        for n in [n for n in graph.node if n.op_type == "QuantizeLinear" and n.output[0] not in used]:
            graph.node.remove(n)
        used = {i for n in graph.node for i in n.input}
        for init in [i for i in graph.initializer if i.name not in used]:
            graph.initializer.remove(init)  # the removed pairs' scales and zero points
        save_checked(model, path)
    return rewired


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_static(quant, fp32, table, out, ops, flavour, exclude_nodes, reduce_range=False):
    tensorrt, u8_weights = flavour == "qdq_s8", flavour == "qdq_u8u8"
    quant.quantize_static(
        model_input=str(fp32), model_output=str(out), calibration_data_reader=None,
        quant_format=quant.QuantFormat.QDQ, op_types_to_quantize=ops, per_channel=True,
        reduce_range=reduce_range,  # weights only: 7 bits
        activation_type=quant.QuantType.QInt8 if tensorrt else quant.QuantType.QUInt8,
        weight_type=quant.QuantType.QUInt8 if u8_weights else quant.QuantType.QInt8,
        nodes_to_exclude=list(exclude_nodes),
        calibrate_method=ort_method(table.method), calibration_cache_path=str(table.path),
        extra_options={
            "ActivationSymmetric": tensorrt,  # TensorRT: zero-point 0
            "WeightSymmetric": not u8_weights,
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
    # the converter inserts Casts out of order: sorted and checked, or ONNX Runtime segfaults loading it
    reordered = save_checked(converted, out)
    return {"nodes_reordered": reordered, "kept_fp32_ops": [op for op in keep_ops if any(n.op_type == op for n in model.graph.node)],
            "kept_fp32_nodes_overflow": overflow, "kept_fp32_nodes_excluded": sorted(exclude_nodes),
            "range_limit": range_limit, "ranges_from": "calibration table" if table else "none (no calibration)"}
