"""Emit per-target precisions from one FP32 ONNX and one calibration table.

- qdq_s8:   symmetric INT8 (zero-point 0), weights per channel, activations per tensor, biases left in
            float: the explicit-quantization form TensorRT takes; OpenVINO also reads it as INT8.
- qdq_u8s8: ONNX Runtime on x86: U8 activations, S8 per-channel weights (measured on an Intel Xeon: S8S8
            ran slower than FP32, U8S8 2.6x faster). With `reduce_range` the weights use 7 bits
            (-64..64): x86 CPUs without VNNI compute U8S8 with VPMADDUBSW, whose 16-bit sums of two products
            saturate with 8-bit weights, not with 7-bit ones (ONNX Runtime's advice for such CPUs).
- qdq_u8u8: U8 activations, U8 asymmetric per-channel weights: ONNX Runtime's U8U8 kernels do not saturate on
            any x86 CPU, but ran slower than FP32 on an AVX2-only CPU (onnxruntime int8_form: u8u8 only).
- fp16:     FP16-typed ONNX; operators known to lose accuracy in FP16, nodes whose calibrated range
            overflows FP16 and the nodes reading such a tensor, and the statistics of normalizations written
            as elementary ops (mean, variance, norm up to the square root) stay FP32, and values pass from
            one FP32 node to the next in FP32; inputs and outputs keep their types.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from convertctl.errors import UsageError, require
from convertctl.onnx_graph import Graph
from convertctl.onnx_save import save_checked, subgraphs
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
        top, nested = weighted_layers(fp32)
        if nested and not top:  # silero-vad: the whole network is the body of one If
            raise UsageError(f"the model has no operators to quantize in its main graph: its {nested} "
                             "Conv/Gemm/MatMul layers sit inside If/Loop/Scan bodies, which ONNX Runtime's Q/DQ "
                             "quantizer does not enter",
                             hint="build it with fp32/fp16 targets; an INT8 model needs those layers in the main "
                                  "graph (an export without the If, e.g. one traced for a single sample rate)")
        raise UsageError("the model has no operators to quantize", hint="check quantize.exclude_ops")
    symmetric = flavour == "qdq_s8"  # symmetric INT8 activations (zero-point 0)
    if reduce_range and flavour != "qdq_u8s8":
        raise UsageError(f"reduce_range applies to qdq_u8s8 only, not {flavour}")
    with _quiet_root_logger():  # ORT logs a generic "consider pre-processing" warning on every call
        _quantize_static(quant, fp32, table, out, ops, flavour, exclude_nodes, reduce_range)
    kept_float = keep_float_layers_float(out)
    top, nested = weighted_layers(fp32)
    weights = ("uint8 asymmetric per-channel" if flavour == "qdq_u8u8" else
               "int8 symmetric per-channel" + (", 7 bits (reduce_range)" if reduce_range else ""))
    return {"flavour": flavour, "op_types": ops, "activation": "int8 symmetric" if symmetric else "uint8 asymmetric",
            "weights": weights, "reduce_range": reduce_range, "excluded_nodes": list(exclude_nodes),
            "excluded_ops": list(exclude_ops), "float_layers_fed_float": kept_float,
            **({"layers_in_subgraphs_left_float": nested, "layers_in_main_graph": top} if nested else {})}


def weighted_layers(path: Path) -> tuple[int, int]:
    """(Conv/ConvTranspose/Gemm/MatMul nodes in the main graph, those inside If/Loop/Scan bodies). ONNX Runtime's
    Q/DQ quantizer (and its calibrator) works on the main graph only: the layers in bodies stay float."""
    onnx = require("onnx", "onnx")
    ops = (*_WEIGHTED_OPS, "MatMul")

    def nested(graph) -> int:
        n = 0
        for node in graph.node:
            for attr in node.attribute:
                bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else \
                    list(attr.graphs) if attr.type == onnx.AttributeProto.GRAPHS else []
                for body in bodies:
                    n += sum(inner.op_type in ops for inner in body.node) + nested(body)
        return n

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(node.op_type in ops for node in graph.node), nested(graph)


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
    index = Graph(graph)
    producer, inits = index.producer, index.initializers
    float_weights = {name for name, i in inits.items() if i.data_type == onnx.TensorProto.FLOAT}
    rewired, clipped = [], {}
    for node in list(graph.node):
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in float_weights:
            continue
        dq = producer(node.input[0])
        q = producer(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
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
    symmetric, u8_weights = flavour == "qdq_s8", flavour == "qdq_u8u8"
    quant.quantize_static(
        model_input=str(fp32), model_output=str(out), calibration_data_reader=None,
        quant_format=quant.QuantFormat.QDQ, op_types_to_quantize=ops, per_channel=True,
        reduce_range=reduce_range,  # weights only: 7 bits
        activation_type=quant.QuantType.QInt8 if symmetric else quant.QuantType.QUInt8,
        weight_type=quant.QuantType.QUInt8 if u8_weights else quant.QuantType.QInt8,
        nodes_to_exclude=list(exclude_nodes),
        calibrate_method=ort_method(table.method), calibration_cache_path=str(table.path),
        extra_options={
            "ActivationSymmetric": symmetric,  # zero-point 0 (TensorRT takes nothing else)
            "WeightSymmetric": not u8_weights,
            "QuantizeBias": not symmetric,  # float biases: TensorRT rejects INT32 bias DQ (onnx-tensorrt #850)
        },
    )


def rehome_subgraph_casts(graph) -> int:
    """Move the Casts the FP16 converter put in the wrong graph into the subgraph whose values they convert;
    returns how many moved.

    onnxruntime.transformers' `convert_float_to_float16` converts If/Loop/Scan bodies too, but appends the Casts
    around a node it keeps in FP32 inside a body (a Pow in silero-vad's If branch) to the *main* graph, where the
    value they read does not exist (ONNX's checker: "input 'slice_2' of node ... is not output of any previous
    node"). Such a Cast belongs right after the node that produces its input, in that node's graph; the nodes of
    the body that read its output are in that graph (or deeper), so every value is again defined in scope."""
    onnx = require("onnx", "onnx")
    moved = 0
    while True:
        top = {i.name for i in graph.input} | {i.name for i in graph.initializer} | \
            {o for n in graph.node for o in n.output}
        where = _nested_producers(graph)
        stray = next((n for n in graph.node if n.op_type == "Cast" and n.input and n.input[0] not in top
                      and n.input[0] in where), None)
        if stray is None:
            return moved
        sub, producer = where[stray.input[0]]
        cast = onnx.NodeProto()
        cast.CopyFrom(stray)
        graph.node.remove(stray)
        position = 0 if producer is None else list(sub.node).index(producer) + 1
        sub.node.insert(position, cast)
        moved += 1


def _nested_producers(graph, where: dict | None = None) -> dict:
    """Every value defined in a body nested in `graph` -> (that body, the node producing it, or None for a body
    input or initializer)."""
    where = {} if where is None else where
    for node in graph.node:
        for body in subgraphs(node):
            for value in (*body.input, *body.initializer):
                where.setdefault(value.name, (body, None))
            for inner in body.node:
                for out in inner.output:
                    where.setdefault(out, (body, inner))
            _nested_producers(body, where)
    return where


# Operators that commonly lose accuracy or overflow in FP16 (same spirit as onnxconverter-common's list).
FP16_KEEP_FP32_OPS = ["ReduceSum", "ReduceMean", "ReduceProd", "Exp", "Log", "Pow", "Softmax", "LogSoftmax",
                      "Resize", "Range", "CumSum", "TopK", "NonMaxSuppression", "RandomUniformLike",
                      "RandomNormalLike", "Upsample", "Where"]

# Why each group of nodes stays FP32 (recorded in the emission's details as `kept_fp32_why`).
FP16_KEPT_WHY = {
    "kept_fp32_ops": "operator types that overflow or lose accuracy in FP16 (FP16_KEEP_FP32_OPS), and "
                     "quantize.exclude_ops",
    "kept_fp32_nodes_overflow": "their calibrated output range exceeds range_limit",
    "kept_fp32_nodes_overflow_consumers": "they read a tensor whose calibrated range exceeds range_limit: in FP16 "
                                          "it would reach them as inf",
    "kept_fp32_nodes_normalization": "statistics of a normalization written as elementary ops (reductions to a "
                                     "square root): in FP16 E[x^2]-E[x]^2 cancels and sums of squares overflow",
    "kept_fp32_nodes_excluded": "quantize.exclude_nodes",
}


def emit_fp16(fp32: Path, out: Path, table: CalibrationTable | None, range_limit: float, exclude_ops=(),
              exclude_nodes=()) -> dict:
    onnx = require("onnx", "onnx")
    float16 = require("onnxruntime.transformers.float16", "onnxruntime")
    model = onnx.load(str(fp32))
    named = name_unnamed_nodes(model.graph)  # the converter keeps nodes FP32 by name
    overflow: list[str] = []
    consumers: list[str] = []
    if table is not None:
        ranges = table.ranges()
        beyond = {t for t, (lo, hi) in ranges.items() if max(abs(lo), abs(hi)) > range_limit}
        for node in model.graph.node:
            if any(t in beyond for t in node.output):
                overflow.append(node.name)
            elif any(t in beyond for t in node.input):
                consumers.append(node.name)
    normalization = normalization_statistics(model.graph)
    keep_ops = sorted(set(FP16_KEEP_FP32_OPS) | set(exclude_ops))
    keep_nodes = sorted(set(overflow) | set(consumers) | set(normalization) | set(exclude_nodes))
    original = {n.name for n in _all_nodes(model.graph)}
    renamed = unique_initializer_names(model.graph)  # the converter asserts one name per float initializer
    converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=keep_ops,
                                                 node_block_list=keep_nodes)
    rehomed = rehome_subgraph_casts(converted.graph)
    duplicates = drop_duplicate_casts(converted.graph)
    round_trips = skip_fp16_round_trips(converted.graph, original)
    fp16_nodes, fp32_nodes = _precision_counts(converted.graph, original)
    # the converter inserts Casts out of order: sorted and checked, or ONNX Runtime segfaults loading it
    reordered = save_checked(converted, out)
    fixes = {"casts_moved_into_subgraphs": rehomed, "initializers_renamed_in_subgraphs": renamed,
             "duplicate_casts_dropped": duplicates, "fp16_round_trips_removed": round_trips,
             "unnamed_nodes_named": named}
    kept = {"kept_fp32_ops": [op for op in keep_ops if any(n.op_type == op for n in model.graph.node)],
            "kept_fp32_nodes_overflow": overflow, "kept_fp32_nodes_overflow_consumers": consumers,
            "kept_fp32_nodes_normalization": sorted(normalization),
            "kept_fp32_nodes_excluded": sorted(exclude_nodes)}
    return {"nodes_reordered": reordered, **{k: v for k, v in fixes.items() if v}, **kept,
            "kept_fp32_why": {k: FP16_KEPT_WHY[k] for k, v in kept.items() if v},
            "nodes_fp16": fp16_nodes, "nodes_fp32": fp32_nodes,
            "fp16_node_share": round(fp16_nodes / max(1, fp16_nodes + fp32_nodes), 3),
            "range_limit": range_limit, "ranges_from": "calibration table" if table else "none (no calibration)"}


# A normalization exported as elementary ops (LayerNorm, MVN, RMSNorm, L2-normalize without their fused op) computes
# its statistics from reductions up to a square root. Both usual forms fail in FP16 arithmetic (TensorRT's strongly
# typed engines compute this ONNX as typed): E[x^2]-E[x]^2 cancels (Magika's first LayerNorm: variances down to 1e-8
# under an E[x^2] up to 0.71, where FP16 values are 4.9e-4 apart; its 1/sqrt(var+eps) came out up to 930 off, of
# 1000) and sums of squares overflow (its second: sum x^2 up to 1.0e6). OpenVINO's FP16 compression keeps MVN and
# NormalizeL2 in FP32 for the same reasons.
_NORM_REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2"}
# what the statistics flow through between the reductions and the root
_NORM_THROUGH = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Clip", "Abs", "Neg", "Pow", "Cast", "Identity",
                 "Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten", "Transpose"} | _NORM_REDUCTIONS
_LAYOUT = {"Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten", "Transpose", "Identity"}
_DATA_INPUT_ONLY = _LAYOUT | {"Pow", "Clip"}  # their other inputs are shapes, exponents, bounds
# how far back from the root statistics are looked for (Magika's longest path, Sqrt back to ReduceSum: 8 nodes), so a
# Sqrt of an activation does not reach, through a residual stream, the statistics of an earlier normalization
_NORM_MAX_DEPTH = 12


def normalization_statistics(graph) -> dict[str, str]:
    """The nodes that compute the statistics of a normalization written as elementary ops, in `graph` and the
    graphs nested in it: node name -> name of the square root they feed.

    A root is a Sqrt, a Pow by 0.5 or -0.5, or a ReduceL2. Walking back from it through elementwise and reshaping
    ops, and not past a reduction, the nodes on a path from a reduction to the root are its statistics (Magika:
    ReduceSum x, x*x -> ReduceSum, scale, E[x^2] - mean^2, Max 0, + eps, Sqrt); with them the squaring a reduction
    reads, the centring x - ReduceMean(x) that squaring reads (PyTorch's ReduceMean -> Sub -> Pow -> ReduceMean ->
    Add -> Sqrt -> Div), and the Div or Reciprocal by the root. A root no reduction feeds (e.g. the square root of a
    head size) is not a normalization."""
    found: dict[str, str] = {}
    nodes = list(graph.node)
    producer = {out: k for k, node in enumerate(nodes) for out in node.output if out}
    readers: dict[str, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in node.input:
            readers.setdefault(name, []).append(k)
    scalars = _scalar_constants(graph)

    def exponent(node):
        return scalars.get(node.input[1]) if node.op_type == "Pow" and len(node.input) > 1 else None

    def is_square(node) -> bool:
        return (node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]) or \
            exponent(node) == 2.0

    def through_layout(name: str) -> tuple[int | None, list[int]]:
        k, passed = producer.get(name), []
        while k is not None and nodes[k].op_type in _LAYOUT:
            passed.append(k)
            k = producer.get(nodes[k].input[0])
        return k, passed

    for r, root in enumerate(nodes):
        if not (root.op_type in ("Sqrt", "ReduceL2") or exponent(root) in (0.5, -0.5)):
            continue
        walked, queue, reductions, extra = set(), [(r, 0)], [], set()
        for k, depth in queue:  # breadth first: each node at its shortest distance from the root
            if k in walked:
                continue
            walked.add(k)
            node = nodes[k]
            if node.op_type in _NORM_REDUCTIONS:
                reductions.append(k)
                square = producer.get(node.input[0]) if node.input else None
                if square is not None and is_square(nodes[square]):
                    extra.add(square)
                    centre = producer.get(nodes[square].input[0])
                    if centre is not None and nodes[centre].op_type == "Sub":
                        mean, passed = through_layout(nodes[centre].input[1])
                        if mean is not None and nodes[mean].op_type in _NORM_REDUCTIONS and \
                                nodes[mean].input[0] == nodes[centre].input[0]:
                            extra.update([centre, mean, *passed])
                continue
            inputs = node.input[:1] if node.op_type in _DATA_INPUT_ONLY else node.input
            if depth < _NORM_MAX_DEPTH:
                queue.extend((producer[name], depth + 1) for name in inputs
                             if name in producer and nodes[producer[name]].op_type in _NORM_THROUGH)
        # keep only the walked nodes on a path from a reduction to the root
        on_path, stack = set(), list(reductions)
        while stack:
            k = stack.pop()
            if k in on_path or k not in walked:
                continue
            on_path.add(k)
            for out in nodes[k].output:
                stack.extend(readers.get(out, ()))
        if r not in on_path:
            continue
        divide = {k for k in readers.get(root.output[0], ()) if nodes[k].op_type == "Reciprocal"
                  or (nodes[k].op_type == "Div" and nodes[k].input[1] == root.output[0])}
        for k in sorted(on_path | extra | divide):
            found.setdefault(nodes[k].name, root.name)
    for node in graph.node:
        for body in subgraphs(node):
            for name, root in normalization_statistics(body).items():
                found.setdefault(name, root)
    return found


def _scalar_constants(graph) -> dict[str, float]:
    numpy_helper = require("onnx.numpy_helper", "onnx")
    tensors = [(init.name, init) for init in graph.initializer if np.prod(init.dims, dtype=np.int64) == 1]
    tensors += [(node.output[0], attr.t) for node in graph.node if node.op_type == "Constant"
                for attr in node.attribute if attr.name == "value" and np.prod(attr.t.dims, dtype=np.int64) == 1]
    values = {}
    for name, tensor in tensors:
        with contextlib.suppress(Exception):  # a type numpy cannot read is no exponent
            values[name] = float(numpy_helper.to_array(tensor).reshape(-1)[0])
    return values


def skip_fp16_round_trips(graph, original: set[str] = frozenset(), types: dict | None = None) -> int:
    """Let a node kept in FP32 read the FP32 output of another one directly; returns how many FP32 -> FP16 -> FP32
    round trips were removed.

    The FP16 converter casts every output of a node it keeps in FP32 to FP16, and back to FP32 for each reader kept
    in FP32 too. A value beyond FP16's range becomes inf on the way although both nodes run in FP32: Magika's x^2
    (up to 2.4e5, kept FP32 for overflow) reached its FP32 ReduceSum as inf, so 1/sqrt(variance) became 0 and the
    LayerNorm's output its bias alone for 3 of 54 samples (cosine 0.97). With the round trips gone, a chain kept in
    FP32 stays FP32.
    Only the converter's Casts are touched: none named in `original` (the model's own nodes)."""
    onnx = require("onnx", "onnx")
    if types is None:
        types = _elem_types(graph, initializers=True)
    removed = 0
    producer = Graph(graph).producer
    outputs = {o.name for o in graph.output}
    emptied = set()
    for cast in list(graph.node):
        first = producer(cast.input[0]) if cast.op_type == "Cast" and cast.input else None
        if first is None or first.op_type != "Cast" or {cast.name, first.name} & original or \
                _cast_to(cast) != onnx.TensorProto.FLOAT or \
                _cast_to(first) != onnx.TensorProto.FLOAT16 or types.get(first.input[0]) != onnx.TensorProto.FLOAT:
            continue
        source = first.input[0]
        if cast.output[0] in outputs:  # the graph output keeps its name; a Cast FP32 -> FP32 is a no-op
            cast.input[0] = source
        else:
            _replace_reads(graph, cast.output[0], source)
            graph.node.remove(cast)
        emptied.add(first.output[0])
        removed += 1
    read = {name for g in _all_graphs(graph) for node in g.node for name in node.input} | outputs
    for cast in [n for n in graph.node if n.op_type == "Cast" and n.output[0] in emptied - read]:
        graph.node.remove(cast)  # an FP16 copy nothing reads any more
    for node in graph.node:
        for body in subgraphs(node):
            removed += skip_fp16_round_trips(body, original, types)
    return removed


def _cast_to(node) -> int | None:
    return next((attr.i for attr in node.attribute if attr.name == "to"), None)


def _replace_reads(graph, old: str, new: str, values: bool = False) -> None:
    """Every read of `old` in `graph` and the bodies nested in it that do not define `old` again reads `new`;
    with `values`, the graphs' outputs and value_info of that name are renamed too (a renamed definition)."""
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new
        for body in subgraphs(node):
            if old not in {i.name for i in (*body.input, *body.initializer)}:
                _replace_reads(body, old, new, values)
    if values:
        for value in (*graph.output, *graph.value_info):
            if value.name == old:
                value.name = new


def _all_graphs(graph):
    yield graph
    for node in graph.node:
        for body in subgraphs(node):
            yield from _all_graphs(body)


def _elem_types(graph, initializers: bool = False) -> dict[str, int]:
    """Tensor name -> element type of every typed value (and, with `initializers`, initializer) of every graph."""
    types = {v.name: v.type.tensor_type.elem_type for g in _all_graphs(graph)
             for v in (*g.input, *g.output, *g.value_info)}
    if initializers:
        types.update({i.name: i.data_type for g in _all_graphs(graph) for i in g.initializer})
    return types


def _all_nodes(graph):
    for g in _all_graphs(graph):
        yield from g.node


def name_unnamed_nodes(graph) -> int:
    """Give every node without a name one no node of the model has; returns how many. The FP16 converter keeps
    nodes in FP32 by name, and no name means never kept."""
    taken = {node.name for node in _all_nodes(graph)}
    named = 0
    for node in _all_nodes(graph):
        if not node.name:
            k = named
            while f"{node.op_type}_{k}" in taken:
                k += 1
            node.name = f"{node.op_type}_{k}"
            taken.add(node.name)
            named += 1
    return named


def _precision_counts(graph, original: set[str]) -> tuple[int, int]:
    """(FP16, FP32) nodes of the converted model among those of the FP32 one (the converter's Casts left out):
    a node whose float output is FP16 computes in FP16, one whose float output is FP32 in FP32."""
    onnx = require("onnx", "onnx")
    types = _elem_types(graph)
    fp16 = fp32 = 0
    for node in _all_nodes(graph):
        if node.name not in original:
            continue
        kinds = {types.get(out) for out in node.output}
        if onnx.TensorProto.FLOAT in kinds:
            fp32 += 1
        elif onnx.TensorProto.FLOAT16 in kinds:
            fp16 += 1
    return fp16, fp32


def drop_duplicate_casts(graph) -> int:
    """Drop the Casts that repeat one already in the graph (same input, same output name, same type); returns how
    many. The FP16 converter adds one `<tensor>_cast_to_fp32` Cast per FP32-kept consumer of a tensor, all with the
    same output name, which breaks SSA (ONNX's checker: "has been used as output names multiple times"; Magika)."""
    dropped = 0
    first: dict[str, tuple] = {}  # output name -> (inputs, attributes) of the first Cast writing it
    for node in list(graph.node):
        for body in subgraphs(node):
            dropped += drop_duplicate_casts(body)
        if node.op_type != "Cast" or len(node.output) != 1:
            continue
        key = (tuple(node.input), tuple((a.name, a.i) for a in node.attribute))
        if first.get(node.output[0]) == key:
            graph.node.remove(node)
            dropped += 1
        else:
            first.setdefault(node.output[0], key)
    return dropped


def unique_initializer_names(graph) -> int:
    """Give every initializer of the If/Loop/Scan bodies a name no other graph of the model uses; returns how many
    were renamed. onnxruntime.transformers' FP16 converter keys initializers by name across all graphs (`assert
    n.name not in fp32_initializers`): silero-vad's ONNX, written by spox, has the same initializer names in both
    branches of its If. A body's own initializer shadows any outer value of its name, so renaming it and every read
    of it inside that body (and the bodies nested in it that do not define the name again) changes nothing."""
    seen = {i.name for i in graph.initializer}
    renamed = 0

    def visit(g) -> None:
        nonlocal renamed
        for node in g.node:
            for body in subgraphs(node):
                for init in body.initializer:
                    if init.name in seen:
                        old, k = init.name, 1
                        while f"{old}__{k}" in seen:
                            k += 1
                        init.name = f"{old}__{k}"
                        _replace_reads(body, old, init.name, values=True)
                        renamed += 1
                    seen.add(init.name)
                visit(body)

    visit(graph)
    return renamed
