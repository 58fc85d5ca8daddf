"""Per-layer sensitivity: how much the model's outputs move when only one layer's weights are INT8.

For each quantized layer, the FP32 model is run with that one layer's weights quantized exactly as the
Q/DQ emission stores them (symmetric INT8 per output channel, dequantized back to float), every
activation and every other weight left in float; the model outputs are compared with the FP32 run.
This finds the layers whose weight error the rest of the network amplifies, which the per-layer
"introduced dB" ranking of layers.py cannot see: it measures the error at each layer's own output,
where such a layer looks harmless. Measured on EfficientNet-Lite0 (50 layers): its first depthwise
conv alone leaves the logits at 21 dB SQNR, the median layer at 44 dB, the whole INT8 model at 17 dB;
the introduced-dB ranking puts it 18th, and the weights' own SQNR (46 dB, above the median) does
not single it out either. The noise of single layers roughly adds up, so the layers far below the
median are the ones worth keeping in float (layers.suggested_exclusions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.onnx_graph import Graph
from convertctl.quantize.layers import LAYER_OPS, source_module, sqnr_db

QMIN, QMAX = -128, 127  # the INT8 weights' storage range; the symmetric scale maps max|w| to 127
REDUCED = 64  # reduce_range (7-bit weights, CPUs without VNNI): ONNX Runtime maps max|w| to 64, clips to ±64


def channel_axis(node, weight_rank: int) -> int:
    """The per-channel axis ONNX Runtime's Q/DQ quantizer uses for this layer's weight (its output channels)."""
    if node.op_type == "ConvTranspose":
        axis = 1
    elif node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 0 if trans_b else 1
    elif node.op_type == "MatMul":
        axis = 1
    else:  # Conv
        axis = 0
    return axis if axis < weight_rank else weight_rank - 1


def quantize_weight(w: np.ndarray, axis: int, reduce_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """INT8 weights and float32 scales as ONNX Runtime's quantizer computes them (per channel, symmetric,
    zero-point 0): scale = float32(2·max|w| / 254) computed in float64, q = round-half-even(w / scale) in
    float32, clipped to [-128, 127]; an all-zero channel gets scale 1. With `reduce_range` (7 bits):
    scale = float32(2·max|w| / 128), q clipped to [-64, 64]."""
    lo, hi = (-REDUCED, REDUCED) if reduce_range else (-QMAX, QMAX)
    w = np.asarray(w, np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    absmax = np.maximum(np.abs(moved.min(axis=1, initial=0.0)), np.abs(moved.max(axis=1, initial=0.0)))
    scale = ((absmax.astype(np.float64) * 2) / (hi - lo)).astype(np.float32)
    scale[scale < np.finfo(np.float32).tiny] = 1.0
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip((w / scale.reshape(shape)).round(), lo if reduce_range else QMIN, hi).astype(np.int8)
    return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    """What DequantizeLinear computes for zero-point 0: q · scale in float32, scale along `axis`."""
    scale = np.asarray(scale, np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return q.astype(np.float32) * scale.reshape(())
    shape = [1] * q.ndim
    shape[axis] = -1
    return q.astype(np.float32) * scale.reshape(shape)


def fake_quantize(w: np.ndarray, axis: int, reduce_range: bool = False) -> np.ndarray:
    """The float32 weights a DequantizeLinear of `quantize_weight(w, axis, reduce_range)` produces."""
    q, scale = quantize_weight(w, axis, reduce_range)
    return dequantize(q, scale, axis)


def _weight_input(node, inits: dict) -> int | None:
    """Index of the layer's weight initializer input (MatMul: whichever input is one), else None."""
    candidates = (1, 0) if node.op_type == "MatMul" else (1,)
    return next((i for i in candidates if i < len(node.input) and node.input[i] in inits), None)


def emitted_weights(qdq: Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per layer the Q/DQ model quantized: (INT8 weight, scale, axis) of the DequantizeLinear feeding its weight
    input. A layer left in float (excluded) keeps a float initializer there and is not listed."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    graph = Graph(model)
    inits = graph.initializers
    found = {}
    for node in graph.nodes:
        if node.op_type not in LAYER_OPS:
            continue
        for t in ((1, 0) if node.op_type == "MatMul" else (1,)):
            dq = graph.producer(node.input[t]) if t < len(node.input) else None
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                continue  # a DQ of an activation, or no DQ
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            q = numpy_helper.to_array(inits[dq.input[0]])
            zp = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
            if zp is not None and np.any(zp != 0):  # never from the symmetric weights emit_qdq asks for
                continue
            found[node.name] = (q, numpy_helper.to_array(inits[dq.input[1]]), axis if axis >= 0 else axis + q.ndim)
            break
    return found


def quantized_layers(qdq: Path) -> list[str]:
    """Names of the layers the Q/DQ model really quantized, in graph order: their weight comes from a
    DequantizeLinear of an initializer (excluded layers keep a float initializer)."""
    return list(emitted_weights(qdq))


def _worst(ref: list[np.ndarray], act: list[np.ndarray], names: list[str]) -> tuple[float, float, str]:
    """Lowest SQNR and cosine over the model outputs, and the output with the lowest SQNR."""
    worst_sqnr, worst_cos, worst_name = np.inf, 1.0, names[0]
    for name, r, a in zip(names, ref, act, strict=True):
        sq = sqnr_db(r, a)
        rv, av = r.ravel().astype(np.float64), a.ravel().astype(np.float64)
        denom = np.linalg.norm(rv) * np.linalg.norm(av)
        cos = float(rv @ av / denom) if denom > 0 else 1.0
        if sq < worst_sqnr:
            worst_sqnr, worst_name = sq, name
        worst_cos = min(worst_cos, cos)
    return float(worst_sqnr), worst_cos, worst_name


def weight_sensitivity(fp32: Path, feeds: dict[str, np.ndarray], layers: list[str] | None = None,
                       max_samples: int = 16, chunk: int | None = None, qdq: Path | None = None,
                       reduce_range: bool = False) -> list[dict]:
    """One row per layer, most sensitive (lowest output SQNR) first: `node`, `op`, `source`, `weight`,
    `axis`, `sqnr_db` and `cosine` (worst model output against the FP32 run, with only this layer's
    weights in INT8), `model_output` (which output that was), `weight_sqnr_db` (of the weights themselves),
    `samples`; `weight_shared_by` (how many layers read it) for a weight several layers share (tf2onnx writes
    one for 32 Convs of Basic Pitch): it is quantized and measured once, for all of them, as it is stored once.

    `layers`: the node names to test; None: those `qdq` quantized (`quantized_layers`), or without
    `qdq` every Conv/ConvTranspose/Gemm/MatMul with a float initializer weight. The INT8 weights are
    `quantize_weight`'s; with `qdq` (the emitted Q/DQ model), that model's own INT8 weights and scales,
    which differ only where ONNX Runtime enlarged a channel's scale so that its INT32 bias fits
    (`qdq_u8s8`, channels with near-zero weights). The first `max_samples` samples are run, `chunk`
    at a time (the model's batch limit; a fixed-batch model: its batch at a time). `reduce_range`: 7-bit
    weights, as the emission for CPUs without VNNI."""
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnxruntime")
    from onnx import numpy_helper

    from convertctl.data.batching import axes_of, sample_count, take
    from convertctl.quantize.batches import run_session

    model = onnx.load(str(fp32))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    emitted = emitted_weights(qdq) if qdq is not None else {}
    if layers is None and qdq is not None:
        layers = list(emitted)
    wanted = None if layers is None else set(layers)
    todo = []
    for node in graph.node:
        if node.op_type not in LAYER_OPS or (wanted is not None and node.name not in wanted):
            continue
        idx = _weight_input(node, inits)
        if idx is None or inits[node.input[idx]].data_type != onnx.TensorProto.FLOAT:
            continue
        todo.append((node, node.input[idx]))
    if not todo:
        return []
    axes = axes_of(chunk)
    n = min(max_samples, sample_count(feeds, axes))
    first = take(feeds, 0, n, axes)  # along each input's batch axis
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def run(model_bytes: bytes) -> tuple[list[str], list[np.ndarray]]:
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        outs = run_session(sess, first, chunk)
        return [o.name for o in sess.get_outputs()], outs

    out_names, ref = run(model.SerializeToString())
    all_inits = set(inits)
    readers: dict[str, int] = {}
    for _, wname in todo:
        readers[wname] = readers.get(wname, 0) + 1
    measured: dict[tuple[str, int], tuple] = {}  # (weight, axis) -> numbers: a shared weight is quantized once
    rows = []
    for node, wname in todo:
        init = inits[wname]
        original = numpy_helper.to_array(init)
        axis = channel_axis(node, original.ndim)
        from_qdq = node.name in emitted and emitted[node.name][0].shape == original.shape
        if from_qdq:
            axis = emitted[node.name][2]
        if (wname, axis) not in measured:  # a shared weight: quantized and run once
            if from_qdq:
                q, scale, _ = emitted[node.name]
                fq = dequantize(q, scale, axis)
            else:
                fq = fake_quantize(original, axis, reduce_range)
            saved = onnx.TensorProto()
            saved.CopyFrom(init)
            init.CopyFrom(numpy_helper.from_array(fq, wname))
            try:
                _, act = run(model.SerializeToString())
            finally:
                init.CopyFrom(saved)  # as loaded: the next layer sees the FP32 model again
            measured[(wname, axis)] = (*_worst(ref, act, out_names), round(float(sqnr_db(original, fq)), 3))
        sqnr, cos, worst_out, weight_sqnr = measured[(wname, axis)]
        rows.append({
            "node": node.name, "op": node.op_type, "source": source_module(node, all_inits), "weight": wname,
            "axis": axis, "sqnr_db": round(sqnr, 3), "cosine": cos, "model_output": worst_out,
            "weight_sqnr_db": weight_sqnr, "samples": n,
            **({"weight_shared_by": readers[wname]} if readers[wname] > 1 else {}),
        })
    rows.sort(key=lambda r: (r["sqnr_db"], r["cosine"]))
    return rows
