"""Activation histograms with the chosen clipping ranges, for the layers that lose the most.

For each of the worst layers of the per-layer ranking (quantize/layer_errors.json), the tensor the
quantizer clips is the float input of the layer's activation Q -> DQ pair in the Q/DQ model. Its
FP32 values on the evaluation samples are binned over their observed min..max, and set against
the calibrated range [lo, hi] the Q node's scale and zero point were computed from (the table's
range of the tensor the scale is named after: ONNX Runtime names it `<tensor>_scale`, and shares
one scale along ops such as MaxPool, whose input range then applies).

The FP32 model runs in chunks, twice (min/max, then counts), so memory holds one chunk of the
chosen tensors at a time, never the whole evaluation slice of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.onnx_graph import Graph

BINS = 64
WORST = 6
_QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
           "uint4": (0, 15), "int4": (-8, 7)}


def _quantized_input(g: Graph, node_name: str) -> dict | None:
    """The layer's activation input as the Q/DQ model quantizes it: Q node input, scale and zero point."""
    numpy_helper = require("onnx.numpy_helper", "onnx")
    producer, inits = g.producer, g.initializers
    node = g.node_named(node_name)
    if node is None:
        return None
    for t in node.input:
        dq = producer(t)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producer(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":  # a weight: its DQ reads an initializer
            continue
        if q.input[1] not in inits:
            return None
        scale = numpy_helper.to_array(inits[q.input[1]])
        if scale.size != 1:  # per-channel activations: not a single clipping range
            return None
        zp_name = q.input[2] if len(q.input) > 2 and q.input[2] else None
        zp = numpy_helper.to_array(inits[zp_name]) if zp_name in inits else np.zeros((), np.uint8)
        qmin, qmax = _QRANGE.get(zp.dtype.name, (0, 255))
        s, z = float(scale.reshape(())), int(zp.reshape(()))
        return {"tensor": q.input[0], "scale_name": q.input[1], "scale": s, "zero_point": z,
                "dtype": zp.dtype.name, "grid": [(qmin - z) * s, (qmax - z) * s]}
    return None


def layer_histograms(fp32: Path, quantized: Path, ranges: dict[str, tuple[float, float]], rows: list[dict],
                     feeds: dict[str, np.ndarray], worst: int = WORST, bins: int = BINS, chunk: int | None = 8) -> dict:
    """The document written to quantize/histograms.json: one entry per layer, worst first.

    `ranges` is the calibration table (`CalibrationTable.ranges()`), `rows` the per-layer ranking
    (`layer_errors`), `feeds` the evaluation slice the ranking was computed on. The samples are run at most
    `chunk` at a time (and at most 8, which bounds memory); a fixed-batch model: its batch at a time.
    """
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnxruntime")
    from convertctl.data.batching import Chunk, axes_of, is_exact, sample_count, take
    from convertctl.quantize.batches import chunks_of_session
    from convertctl.quantize.layers import with_outputs

    ref_model, q_model = onnx.load(str(fp32)), onnx.load(str(quantized))
    graph_inputs = {i.name for i in ref_model.graph.input}
    fp32_tensors = graph_inputs | {o for n in ref_model.graph.node for o in n.output}
    picked: list[tuple[dict, dict]] = []
    q_graph = Graph(q_model)
    for row in rows:
        if len(picked) == worst:
            break
        qin = _quantized_input(q_graph, row["node"])
        if qin is None:  # excluded from quantization, or not found
            continue
        tensor = qin["tensor"]
        if tensor not in fp32_tensors:
            tensor = tensor.removesuffix("_QuantizeLinear_Input")
            if tensor not in fp32_tensors:
                continue
        qin["tensor"] = tensor
        picked.append((row, qin))
    axes = axes_of(chunk)
    doc = {"model": Path(quantized).name, "bins": bins, "samples": sample_count(feeds, axes) if feeds else 0,
           "layers": []}
    if not picked:
        return doc
    tensors = sorted({qin["tensor"] for _, qin in picked})
    computed = [t for t in tensors if t not in graph_inputs]
    sess = None
    if computed:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(with_outputs(ref_model, computed).SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
    n_samples = sample_count(feeds, axes)
    # at most 8 samples per run, cut along each input's batch axis; a model that takes exactly b: b
    step = chunk if is_exact(chunk) else Chunk(min(int(chunk or 8), 8), axes)

    def values():
        """One dict tensor -> flat float32 values per chunk of samples."""
        if sess is None:  # only graph inputs: nothing to run
            parts = ((take(feeds, i, i + int(step), axes), []) for i in range(0, n_samples, int(step)))
        else:
            parts = chunks_of_session(sess, feeds, step, computed)
        for part, outs in parts:
            got = dict(zip(computed, outs, strict=True)) if sess else {}
            yield {t: np.asarray(got[t] if t in got else part[t], dtype=np.float32).ravel() for t in tensors}

    lo_obs = {t: np.inf for t in tensors}
    hi_obs = {t: -np.inf for t in tensors}
    nonfinite = dict.fromkeys(tensors, 0)
    for part in values():  # pass 1: observed range
        for t, v in part.items():
            ok = np.isfinite(v)
            nonfinite[t] += int(v.size - ok.sum())
            if ok.any():
                lo_obs[t] = min(lo_obs[t], float(v[ok].min()))
                hi_obs[t] = max(hi_obs[t], float(v[ok].max()))
    stats = {}
    for t in tensors:
        lo, hi = (lo_obs[t], hi_obs[t]) if np.isfinite(lo_obs[t]) else (0.0, 0.0)
        stats[t] = {"min": lo, "max": hi, "counts": np.zeros(bins, np.int64), "values": 0, "below": {}, "above": {}}
    bounds = {}  # tensor -> the distinct (lo, hi) pairs to count clipping against
    for _, qin in picked:
        lo, hi = _clip_range(qin, ranges)
        bounds.setdefault(qin["tensor"], set()).add((lo, hi))
    for part in values():  # pass 2: counts and clipping
        for t, v in part.items():
            v = v[np.isfinite(v)]
            st = stats[t]
            # clipped into the bins: a rerun that differs in the last bit must not drop a value
            st["counts"] += _histogram(np.clip(v, st["min"], st["max"]), bins, st["min"], st["max"])
            st["values"] += int(v.size)
            for lo, hi in bounds[t]:
                st["below"][lo] = st["below"].get(lo, 0) + int(np.count_nonzero(v < lo))
                st["above"][hi] = st["above"].get(hi, 0) + int(np.count_nonzero(v > hi))
    for row, qin in picked:
        t = qin["tensor"]
        st = stats[t]
        lo, hi = _clip_range(qin, ranges)
        range_tensor = _range_tensor(qin, ranges)
        n = st["values"]
        below, above = st["below"][lo], st["above"][hi]
        g_lo, g_hi = qin["grid"]
        doc["layers"].append({
            "node": row["node"], "op": row["op"], "source": row.get("source"),
            "introduced_db": row.get("introduced_db"), "sqnr_db": row.get("sqnr_db"),
            "tensor": t, "range_tensor": range_tensor,
            "range": [lo, hi],
            "grid": [g_lo, g_hi], "scale": qin["scale"], "zero_point": qin["zero_point"], "dtype": qin["dtype"],
            "values": n, "nonfinite": nonfinite[t],
            "min": st["min"], "max": st["max"],
            "edges": np.linspace(*_span(st["min"], st["max"]), bins + 1).tolist(),
            "counts": st["counts"].tolist(),
            "clipped_below": below, "clipped_above": above,
            "clipped_fraction": (below + above) / n if n else 0.0,
            "range_used": _share(st["min"], st["max"], lo, hi) if n else 0.0,
            "grid_used": _share(st["min"], st["max"], g_lo, g_hi) if n else 0.0,
        })
    return doc


def _range_tensor(qin: dict, ranges: dict) -> str | None:
    """The table entry the scale was computed from: `<name>_scale` names it (shared scales included)."""
    for name in (qin["scale_name"].removesuffix("_scale"), qin["tensor"]):
        if name in ranges:
            return name
    return None


def _clip_range(qin: dict, ranges: dict) -> tuple[float, float]:
    name = _range_tensor(qin, ranges)
    return tuple(ranges[name]) if name else tuple(qin["grid"])


def _span(lo: float, hi: float) -> tuple[float, float]:
    """The binned interval: observed min..max; a constant tensor gets np.histogram's one unit around it."""
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def _histogram(v: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    return np.histogram(v, bins=bins, range=_span(lo, hi))[0]


def _share(obs_lo: float, obs_hi: float, lo: float, hi: float) -> float:
    """Share of [lo, hi] the observed values span."""
    if hi <= lo:
        return 1.0
    return float(max(0.0, min(obs_hi, hi) - max(obs_lo, lo)) / (hi - lo))


def summary(doc: dict) -> dict:
    """The few numbers the manifest keeps (details["histograms"]); the bins stay in the file."""
    return {"file": "histograms.json", "model": doc["model"], "bins": doc["bins"], "samples": doc["samples"],
            "layers": [{"node": h["node"], "tensor": h["tensor"], "range": h["range"],
                        "clipped_fraction": h["clipped_fraction"], "range_used": h["range_used"]}
                       for h in doc["layers"]]}
