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
