"""Per-layer comparison of a float model.mnn against the ONNX it came from, on one sample: every tensor MNN computes
(Interpreter.runSessionWithCallBackInfo) next to the ONNX tensor of the same name (ONNX Runtime with every node
output made a graph output), in the ONNX graph's order, and the first layer whose relative error passes a
threshold: where the conversion starts to differ, with the ONNX node and source layer it belongs to.

MNN keeps the ONNX tensor names for what it computes and adds suffixes for what it inserts (`_raster_0`,
`__matmul_converted`). A layer MNN fused with the activation after it (Conv+Relu) carries the first node's name but
the last one's values: a tensor is compared with its own ONNX tensor and, through single-consumer element-wise
activations, with theirs, and the closest counts.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# what MNN computed under an ONNX tensor's name: a MatMul/Gemm it turned into a convolution. Its `_raster_N` tensors
# are layout copies around an op (often of the op's *input*): never compared
_SUFFIXES = re.compile(r"__matmul_converted$")
_RASTER = re.compile(r"_raster_\d+$")
_ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Mul", "Add", "PRelu",
                "BatchNormalization", "Identity"}
THRESHOLD = {"fp32": 1e-3, "fp16": 2e-2}  # max |MNN - ONNX| / max |ONNX| of a tensor that diverges


def probe_feeds(ctx) -> dict[str, np.ndarray] | None:
    """One sample: the first calibration sample, else seeded random data in each input's range at the opt dims."""
    if ctx is None:
        return None
    if ctx.calibration is not None:
        for feeds in ctx.calibration():
            return {k: np.asarray(v) for k, v in feeds.items()}
    if not ctx.inputs:
        return None
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in ctx.inputs:
        shape = [d if isinstance(d, int) else ctx.dims.get(d, (1, 1, 1))[1] for d in spec.shape]
        dtype = np.dtype(spec.dtype)
        if spec.value is not None:
            feeds[spec.name] = np.full(shape, spec.value, dtype=dtype)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(int(spec.range[0]), int(spec.range[1]), size=shape, endpoint=True).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feeds[spec.name] = rng.uniform(spec.range[0], spec.range[1], size=shape).astype(dtype)
    return feeds


def _onnx_tensors(onnx_path: Path, feeds: dict) -> tuple[dict, dict, dict]:
    """(every node output's value, tensor -> (order, node), tensor -> its single consumer if element-wise)."""
    import onnx

    from convertctl.evaluate.intermediates import node_outputs

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    values = node_outputs(onnx_path, feeds)
    producer = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    after = {t: users[0].output[0] for t, users in consumers.items()
             if len(users) == 1 and users[0].op_type in _ACTIVATIONS and users[0].output}
    return values, producer, after


def _mnn_tensors(mnn_path: Path, feeds: dict, config: dict) -> list[tuple[str, str, np.ndarray]]:
    from convertctl.targets.mnn.runner import import_mnn, native_stdout_captured

    MNN = import_mnn()
    rows: list[tuple[str, str, np.ndarray]] = []
    with native_stdout_captured():
        interp = MNN.Interpreter(str(mnn_path))
        session = interp.createSession(dict(config))
        tensors = interp.getSessionInputAll(session)
        for name, value in feeds.items():
            if name in tensors:
                interp.resizeTensor(tensors[name], tuple(int(d) for d in value.shape))
        interp.resizeSession(session)
        for name, value in feeds.items():
            if name not in tensors:
                continue
            if value.dtype.kind in "iub":
                host = MNN.Tensor(value.shape, MNN.Halide_Type_Int, np.ascontiguousarray(value, np.int32),
                                  MNN.Tensor_DimensionType_Caffe)
            else:
                host = MNN.Tensor(value.shape, MNN.Halide_Type_Float, np.ascontiguousarray(value, np.float32),
                                  MNN.Tensor_DimensionType_Caffe)
            tensors[name].copyFrom(host)

        def before(_tensors, _info):
            return True

        def after(outs, info):
            if not outs:
                return True
            t = outs[0]
            shape = tuple(t.getShape())
            if not shape or any(d <= 0 for d in shape):
                return True
            try:
                host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32),
                                  MNN.Tensor_DimensionType_Caffe)
                t.copyToHostTensor(host)
                rows.append((info.getName(), info.getType(), np.array(host.getNumpyData(), copy=True)))
            except Exception:  # an integer tensor, or one MNN will not copy out: not compared
                pass
            return True

        interp.runSessionWithCallBackInfo(session, before, after)
    return rows


def _error(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float] | None:
    if ref.dtype.kind != "f" or ref.size != got.size or ref.size == 0:
        return None
    r, g = ref.reshape(-1).astype(np.float64), got.reshape(-1).astype(np.float64)
    if not np.all(np.isfinite(r)):
        return None
    diff = float(np.abs(r - g).max()) if np.all(np.isfinite(g)) else float("inf")
    scale = float(np.abs(r).max())
    denom = float(np.linalg.norm(r) * np.linalg.norm(g))
    cosine = float(r @ g / denom) if denom > 0 else (1.0 if diff == 0 else 0.0)
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return min(diff, 1e30), min(rel, 1e30), cosine  # finite: the manifest is strict JSON


def compare_layers(onnx_path: Path, mnn_path: Path, feeds: dict, config: dict, precision: str) -> dict:
    """{"rows": [...], "summary": {...}}: per MNN tensor its error against the ONNX tensor it stands for."""
    import onnx

    from convertctl.checks.model_facts import source_of

    values, producer, after = _onnx_tensors(onnx_path, feeds)
    initializers = {i.name for i in onnx.load(str(onnx_path), load_external_data=False).graph.initializer}
    rows, seen = [], set()
    computed = [(n, k, g) for n, k, g in _mnn_tensors(mnn_path, feeds, config) if not _RASTER.search(n)]
    exact = {n for n, _, _ in computed if n in values}
    for name, kind, got in computed:
        base = name if name in values else _SUFFIXES.sub("", name)
        if base not in values or base in seen or (base != name and base in exact):
            continue
        candidates, t = [base], base
        for _ in range(3):  # the activations MNN may have fused into this layer
            t = after.get(t)
            if t is None or t not in values:
                break
            candidates.append(t)
        scored = [(e, c) for c in candidates if (e := _error(values[c], got)) is not None]
        if not scored:
            continue
        (max_abs, rel, cosine), matched = min(scored, key=lambda s: s[0][1])
        seen.add(base)
        order, node = producer[base]
        rows.append({"onnx_tensor": base, "onnx_node": node.name, "op_type": node.op_type,
                     "source": source_of(node, initializers), "mnn_op": kind.strip(),
                     **({"matched_after_fusion": matched} if matched != base else {}),
                     "max_abs": max_abs, "rel_err": rel, "cosine": cosine, "_order": order})
    rows.sort(key=lambda r: r["_order"])
    for r in rows:
        del r["_order"]
    threshold = THRESHOLD.get(precision, THRESHOLD["fp32"])
    first = next((r for r in rows if r["rel_err"] > threshold), None)
    worst = max(rows, key=lambda r: r["rel_err"]) if rows else None
    return {"rows": rows, "summary": {
        "compared": len(rows), "by": "MNN session callbacks vs ONNX Runtime, every node output, one sample",
        "threshold_rel_err": threshold, "first_diverging": first, "worst": worst, "file": "layers.json"}}
