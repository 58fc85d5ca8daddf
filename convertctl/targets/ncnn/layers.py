"""Blob-by-blob comparison of an ncnn model with ONNX Runtime on the ONNX it came from: where does it diverge first?

ncnn's Extractor computes any blob by name, and ONNX Runtime gives any intermediate tensor once it is made a graph
output. What is missing is the mapping: pnnx renames every blob (`0`, `1`, .., `in0`, `out0`), fuses layers
(Conv+BatchNorm+activation become one Convolution) and rewrites the graph, so no name leads back to an ONNX tensor.
The blobs are therefore matched by value: for each ncnn blob, the ONNX tensor with the same number of elements whose
values are closest (cosine), found through a fingerprint of 257 fixed positions, then confirmed on the whole tensor.
A blob with no ONNX tensor of its size and direction (a layout pnnx introduced) is "unmatched" and said so. The first
diverging layer is the first matched blob, in the .param's order, whose cosine falls below the threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.evaluate.intermediates import best_match, by_size, node_outputs

_MATCH = 0.99  # a blob is "matched" to an ONNX tensor at least this similar; below it, it has no counterpart


def onnx_intermediates(onnx_path: Path, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Every float tensor a node of the ONNX makes, for one run (ONNX Runtime, every node output a graph output);
    and tensor -> producing node name."""
    onnx = require("onnx", "onnx")

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {t: node.name or f"{node.op_type}_{i}" for i, node in enumerate(graph.node) for t in node.output if t}
    values = node_outputs(onnx_path, feeds)
    return {n: v for n, v in values.items()
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1}, producer


def compare(folder: Path, onnx_path: Path, feeds: dict[str, np.ndarray], threshold: float = 0.999) -> dict:
    """The ncnn model in `folder` against ONNX Runtime on `onnx_path`, blob by blob, on one sample (`feeds`, batch
    of 1). Returns {"matched", "blobs", "first_divergence", "worst", "threshold"}."""
    ncnn = require("ncnn", "ncnn")
    from convertctl.targets.ncnn.convert import blob_graph
    from convertctl.targets.ncnn.runner import KIT, load_net, per_sample

    kit = json.loads((folder / KIT).read_text())
    net = load_net(folder, kit)
    layers = blob_graph((folder / kit["files"]["param"]).read_text())
    ref, producer = onnx_intermediates(onnx_path, feeds)
    sized = by_size(ref)

    ex = net.create_extractor()
    keep = []
    sample = next(per_sample(feeds, kit["blobs"]["inputs"]))
    for blob, arr in sample.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        keep.append(arr)
        ex.input(blob, ncnn.Mat(arr))
    rows, first, unmatched = [], None, None
    for kind, name, _, tops in layers:
        if kind == "Input":
            continue
        for blob in tops:
            ret, mat = ex.extract(blob)
            if ret != 0:
                continue
            got = np.array(mat, copy=True)
            best = best_match([(False, got)], sized.get(got.size, []), _MATCH)
            row = {"layer": name, "type": kind, "blob": blob}
            if best is not None:
                tensor, cosine, _ = best
                row.update(onnx_tensor=tensor, onnx_node=producer.get(tensor, ""), cosine=round(cosine, 6))
                if cosine < threshold and first is None:
                    first = row
            elif unmatched is None:
                unmatched = row
            rows.append(row)
    matched = [r for r in rows if "cosine" in r]
    worst = sorted(matched, key=lambda r: r["cosine"])[:5]
    return {"threshold": threshold, "blobs": len(rows), "matched": len(matched),
            "first_divergence": first, "first_unmatched": unmatched, "worst": worst}
