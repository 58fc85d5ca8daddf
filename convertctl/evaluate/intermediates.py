"""Every intermediate tensor of an ONNX model on one input, as ONNX Runtime computes it: the reference the edge
targets' per-layer comparisons (mnn, ncnn, litert) match their runtime's tensors against."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two tensors of the same size, in float64; two all-zero tensors are identical."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def node_outputs(onnx_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every node output of the ONNX on `feeds` (the model's own inputs only are fed), with no graph optimisation:
    the tensors as the ONNX has them, not as ONNX Runtime's fusions would. Through a temporary file, so a model over
    protobuf's 2 GB in-memory limit with external data still loads."""
    import onnx

    from convertctl.onnx_session import session
    from convertctl.quantize.layers import with_outputs

    model = onnx.load(str(onnx_path))
    with_outputs(model, [t for node in model.graph.node for t in node.output if t])
    with tempfile.TemporaryDirectory(prefix="convertctl-intermediates-") as tmp:
        path = Path(tmp) / "all_outputs.onnx"
        onnx.save(model, str(path), save_as_external_data=model.ByteSize() > 1_500_000_000)
        sess = session(path, level="disable")
        names = [o.name for o in sess.get_outputs()]
        inputs = {i.name for i in sess.get_inputs()}
        values = sess.run(names, {k: v for k, v in feeds.items() if k in inputs})
    return dict(zip(names, values, strict=True))


PROBE = 257  # fingerprint positions: a candidate is ranked on these before whole tensors are compared


def by_size(values: dict[str, np.ndarray]) -> dict[int, list[tuple[str, np.ndarray]]]:
    """The tensors grouped by element count: a runtime's tensor is matched only against ONNX tensors of its size."""
    groups: dict[int, list[tuple[str, np.ndarray]]] = {}
    for name, value in values.items():
        groups.setdefault(value.size, []).append((name, value))
    return groups


def best_match(views: list[tuple[object, np.ndarray]], candidates: list[tuple[str, np.ndarray]],
               min_cosine: float) -> tuple[str, float, object] | None:
    """(ONNX tensor, cosine, the view's tag) of the candidate most similar to any of `views` (one runtime tensor in
    the layouts it may be in, each tagged), ranked on a fingerprint of fixed positions, the best three confirmed on
    the whole tensor; None when none reaches `min_cosine`."""
    if not candidates:
        return None
    idx = np.linspace(0, views[0][1].size - 1, PROBE).astype(np.int64)
    scored = [(cosine(view.ravel()[idx], v.ravel()[idx]), n, v, tag, view)
              for tag, view in views for n, v in candidates]
    top = sorted(scored, key=lambda s: -s[0])[:3]
    full, name, tag = max(((cosine(view, v), n, t) for _, n, v, t, view in top), key=lambda s: s[0])
    return (name, full, tag) if full >= min_cosine else None
