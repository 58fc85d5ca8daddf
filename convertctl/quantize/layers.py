"""Per-layer quantization error: which layers to keep in higher precision.

Both models (FP32 and quantized) expose every quantized layer's output; one run of each on the
evaluation samples gives, per layer, the SQNR of its output against FP32 (accumulated error) and
the SQNR of its float inputs. "Introduced" = input SQNR − output SQNR: the error this layer adds
on top of what reached it, which is what ranks the layers (worst first). The source module is
traced back through the weight's initializer name, which exporters derive from the module path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.onnx_graph import Graph

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
EXACT_DB = 60.0


def sqnr_db(ref: np.ndarray, act: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of `act` against `ref` in dB (200 when they are equal, -200 when the
    reference is all zeros and they are not)."""
    noise = float(np.sum((ref.astype(np.float64) - act.astype(np.float64)) ** 2))
    signal = float(np.sum(ref.astype(np.float64) ** 2))
    return 200.0 if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else -200.0)


def with_outputs(model, names: list[str]):
    """The ModelProto `model` (changed in place) with every tensor of `names` added as a graph output."""
    onnx = require("onnx", "onnx")
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model


def _run(model, feeds, names: list[str], chunk: int | None = None) -> dict[str, np.ndarray]:
    """The tensors `names` over every sample, in chunks the model accepts (quantize/batches.py)."""
    from convertctl.quantize.batches import run_session

    ort = require("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip(names, run_session(sess, feeds, chunk, names), strict=True))


def source_module(node, initializers: set[str]) -> str | None:
    for name in node.input[1:2]:  # the weight input
        base = name.removesuffix("_DequantizeLinear_Output")
        if base in initializers or name in initializers:
            return base.rsplit(".", 1)[0] if base.endswith((".weight", ".kernel")) else base
    return None


def _upstream_layers(graph: Graph, layer_outputs: set[str]) -> dict[str, set[str]]:
    """For each layer output, the nearest layer outputs upstream of its layer (through other nodes)."""
    result = {}
    for out in layer_outputs:
        found, seen, stack = set(), set(), list(graph.producer(out).input)
        while stack:
            t = stack.pop()
            if t in seen or graph.producer(t) is None:
                continue
            seen.add(t)
            if t in layer_outputs:
                found.add(t)
            else:
                stack.extend(graph.producer(t).input)
        result[out] = found
    return result


def layer_errors(fp32: Path, quantized: Path, feeds: dict[str, np.ndarray], chunk: int | None = None) -> list[dict]:
    """One row per quantized layer, worst (most error introduced) first. The samples of `feeds` are run
    `chunk` at a time (a fixed-batch model: its batch at a time, whatever `chunk` says)."""
    onnx = require("onnx", "onnx")
    ref_model, q_model = onnx.load(str(fp32)), onnx.load(str(quantized))
    q_outputs = {o for n in q_model.graph.node for o in n.output}
    inits = {i.name for i in ref_model.graph.initializer}
    q_inits = {i.name for i in q_model.graph.initializer}
    ref_graph, q_graph = Graph(ref_model), Graph(q_model)

    def comparable(node) -> str | None:
        """The layer's output, or that of the activation the quantizer folded into it (Conv -> Clip/Relu)."""
        out = node.output[0]
        while out not in q_outputs:
            nxt = [user for user, _ in ref_graph.consumers(out)]
            if len(nxt) != 1 or nxt[0].op_type not in ("Clip", "Relu"):
                return None
            out = nxt[0].output[0]
        return out

    layers = [(n, comparable(n)) for n in ref_model.graph.node if n.op_type in LAYER_OPS]
    layers = [(n, o) for n, o in layers if o is not None]
    if not layers:
        return []
    outs = [o for _, o in layers]

    # On the quantized side, compare what the next layer really receives: the tensor after its Q -> DQ
    # pair (a folded Clip/Relu only takes effect there).
    def dequantized(t: str) -> str:
        for q, _ in q_graph.consumers(t):
            if q.op_type == "QuantizeLinear":
                for dq, _ in q_graph.consumers(q.output[0]):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return t

    q_names = [dequantized(o) for o in outs]
    ref = _run(with_outputs(ref_model, outs), feeds, outs, chunk)
    act_q = _run(with_outputs(q_model, q_names), feeds, q_names, chunk)
    act = {o: act_q[q] for o, q in zip(outs, q_names, strict=True)}
    sqnr = {o: sqnr_db(ref[o], act[o]) for o in outs}
    upstream = _upstream_layers(ref_graph, set(outs))
    rows = []
    for node, out in layers:
        # compare at layer outputs only: between layers the quantizer may fold nodes (e.g. Clip into Q)
        # graph inputs arrive exact; beyond 60 dB an input's error is negligible, so cap there
        sq_in = min([sqnr[u] for u in upstream[out]] + [EXACT_DB])
        r, a = ref[out].ravel().astype(np.float64), act[out].ravel().astype(np.float64)
        denom = np.linalg.norm(r) * np.linalg.norm(a)
        rows.append({
            "node": node.name, "op": node.op_type, "output": out,
            "source": source_module(node, inits | q_inits),
            "sqnr_db": round(float(sqnr[out]), 3), "input_sqnr_db": round(float(sq_in), 3),
            "introduced_db": round(max(0.0, float(sq_in - sqnr[out])), 3),
            "cosine": float(r @ a / denom) if denom > 0 else 1.0,
        })
    rows.sort(key=lambda row: (-row["introduced_db"], row["sqnr_db"]))
    return rows


def suggested_exclusions(sensitivity: list[dict], count: int = 5, below_median_db: float = 10.0,
                         floor_db: float = 25.0) -> list[str]:
    """Node names to paste into `quantize.exclude_nodes`, from the sensitivity ranking (sensitivity.py, most
    sensitive first, not the introduced-dB rows above): up to `count` layers whose single-layer output
    SQNR is at least `below_median_db` under the median layer's, i.e. whose INT8 weights alone add 10x
    the output noise of a typical layer. On EfficientNet-Lite0 (50 layers, median 44 dB) that is 5
    layers at 21-33 dB, the same on 8, 16, 32 and 91 samples (the 6th is 9.9-10.7 dB under: out, or cut
    by `count`); keeping them in float raised the INT8 model's cosine from 0.9907 to 0.9974 (SQNR
    17.2 -> 22.8 dB, top-1 agreement 0.934 -> 0.956 on 91 held-out views). The layers that read one shared
    weight are one entry: all of them, or none. A weight whose INT8 copy alone leaves the outputs under
    `floor_db` (25 dB: 0.3 % of the signal's power as noise, a cosine near 0.9985) is suggested whatever the
    median: Basic Pitch's 32 constant-Q Convs share one weight at 18.6 dB, which is its own median."""
    if not sensitivity:
        return []
    # one weight shared by several layers is one measurement and one decision: its readers are kept in float
    # together (keeping one of them float leaves the others' INT8 copy of it), and it counts once for the median
    groups: dict[str, list[dict]] = {}
    for r in sensitivity:
        groups.setdefault(r.get("weight") or r["node"], []).append(r)
    ranked = sorted(groups.values(), key=lambda rows: (rows[0]["sqnr_db"], rows[0]["cosine"]))
    median = float(np.median([rows[0]["sqnr_db"] for rows in ranked]))
    return [r["node"] for rows in ranked[:count]
            if rows[0]["sqnr_db"] <= median - below_median_db or rows[0]["sqnr_db"] < floor_db for r in rows]
