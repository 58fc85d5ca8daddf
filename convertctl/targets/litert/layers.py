"""Tensor-by-tensor comparison of a model.tflite with ONNX Runtime on the FP32 ONNX, on one sample: where does the
.tflite diverge first?

The interpreter keeps every intermediate tensor when asked (`experimental_preserve_all_tensors`), and ONNX Runtime
gives any node output once it is made a graph output. No name leads from one to the other: onnx2tf names tensors
after the TensorFlow ops it emitted (`model_2/tf.math.multiply_1/Mul;...`), TFLiteConverter after the source's
layers, and both fuse (Conv+BatchNorm+activation are one CONV_2D). So tensors are matched by value, as the ncnn
target does: for each op output of the .tflite (dequantized where it is int8), the ONNX tensor of the same size whose
values are closest (cosine), on a fingerprint of fixed positions first, then on the whole tensor. A 3-D to 5-D
tensor is also tried channels-first (NHWC -> NCHW): onnx2tf's tensors are channels-last where the ONNX's are not.
The first diverging layer is the first matched op output, in the interpreter's execution order, below the threshold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.evaluate.intermediates import best_match, by_size

THRESHOLD = {"fp32": 0.999, "fp16": 0.999, "int8": 0.99}  # cosine below which a matched tensor diverges
# a tensor is matched to an ONNX tensor at least this similar; below, it has no counterpart (a layout or a fusion
# the converter introduced). INT8 tensors sit further from FP32 ones: a lower bar
_MATCH = {"fp32": 0.99, "fp16": 0.99, "int8": 0.9}


def onnx_tensors(onnx_path: Path, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every float node output of the ONNX on `feeds` (ONNX Runtime, no graph optimization: the tensors as the ONNX
    has them), and tensor -> "node (OpType)"."""
    import onnx

    from convertctl.evaluate.intermediates import node_outputs

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {t: f"{n.name or f'{n.op_type}_{i}'} ({n.op_type})"
                for i, n in enumerate(graph.node) for t in n.output if t}
    found = node_outputs(onnx_path, feeds)
    # the inputs too: an int8 model's first QUANTIZE (or onnx2tf's input transpose) is the input itself
    found.update({n: np.asarray(v) for n, v in feeds.items()})
    producer.update({n: "model input" for n in feeds})
    kept = {n: v for n, v in found.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1}
    return kept, producer


def tflite_tensors(interp) -> list[tuple[str, str, np.ndarray]]:
    """(op, tensor name, float value) of every op output computed from the inputs, in execution order, after one
    invoke of an interpreter made with experimental_preserve_all_tensors. Int8 tensors dequantized; ops on
    constants only (the FP16 model's weight DEQUANTIZE) skipped: they have no ONNX node output to match."""
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only API giving the execution order (ai-edge-litert 2.3, also TF's)
    produced = {int(d["index"]) for d in interp.get_input_details()}
    rows = []
    for op in ops:
        live = any(int(i) in produced for i in op["inputs"] if i >= 0) and op["op_name"] != "DELEGATE"
        produced.update(int(o) for o in op["outputs"])
        if not live:
            continue
        for index in op["outputs"]:
            det = details[int(index)]
            try:
                value = np.asarray(interp.get_tensor(int(index)))
            except ValueError:  # no data kept for it
                continue
            q = det.get("quantization_parameters") or {}
            scales, zeros = q.get("scales", []), q.get("zero_points", [])
            if value.dtype.kind in "iu" and len(scales) == 1:
                value = (value.astype(np.float64) - float(zeros[0])) * float(scales[0])
            elif value.dtype.kind != "f":
                continue  # shapes, indices: nothing to compare by value
            if value.size > 1:
                rows.append((op["op_name"], det["name"], value))
    return rows


def _views(value: np.ndarray) -> list[tuple[bool, np.ndarray]]:
    """(transposed?, view): as it is and, for 3-D to 5-D, channels-first (the ONNX layout onnx2tf transposed)."""
    views = [(False, value)]
    if 3 <= value.ndim <= 5:
        views.append((True, np.moveaxis(value, -1, 1)))
    return views


def compare(tflite: Path, onnx_path: Path, onnx_feeds: dict[str, np.ndarray], tflite_feeds: dict[str, np.ndarray],
            precision: str, threshold: float | None = None) -> dict:
    """The .tflite against ONNX Runtime on `onnx_path`, tensor by tensor, on one sample (the same sample in each's
    layout). {"tensors", "matched", "threshold", "first_divergence", "first_unmatched", "worst"}: rows with the
    .tflite op and tensor, the ONNX tensor and node, the cosine and whether it was matched channels-first."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    threshold = THRESHOLD.get(precision, 0.999) if threshold is None else threshold
    ref, producer = onnx_tensors(onnx_path, onnx_feeds)
    sized = by_size(ref)
    with warnings.catch_warnings():  # "intended for debugging purposes only": that is what this is
        warnings.simplefilter("ignore")
        # without XNNPACK: a delegate computes its partition as one node and keeps none of the tensors inside it;
        # the builtin kernels compute (and keep) every op's output
        interp = Interpreter(model_path=str(tflite), experimental_preserve_all_tensors=True, num_threads=1,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    keys = list(interp.get_signature_list())
    runner = interp.get_signature_runner(keys[0]) if keys else None
    if runner is not None:
        runner(**tflite_feeds)
    else:
        interp.allocate_tensors()
        for det in interp.get_input_details():
            interp.set_tensor(det["index"], tflite_feeds[det["name"]])
        interp.invoke()
    rows, first, unmatched = [], None, None
    for op, name, value in tflite_tensors(interp):
        row = {"op": op, "tensor": name[:160]}
        best = best_match(_views(value), sized.get(value.size, []), _MATCH.get(precision, 0.99))
        if best is not None:
            tensor, cosine, transposed = best
            row.update(onnx_tensor=tensor, onnx_node=producer.get(tensor, ""), cosine=round(cosine, 6),
                       **({"nhwc": True} if transposed else {}))
            if cosine < threshold and first is None:
                first = row
        elif unmatched is None:
            unmatched = row
        rows.append(row)
    matched = [r for r in rows if "cosine" in r]
    return {"threshold": threshold, "tensors": len(rows), "matched": len(matched), "first_divergence": first,
            "first_unmatched": unmatched, "worst": sorted(matched, key=lambda r: r["cosine"])[:5]}


def line(row: dict | None) -> str | None:
    """One row as the manifest says it (the form of the ncnn target's per_layer)."""
    if not row:
        return None
    where = f"{row['op']} (tensor {row['tensor']})"
    if "cosine" not in row:
        return where
    layout = ", compared NHWC -> NCHW" if row.get("nhwc") else ""
    return f"{where} ~ ONNX {row['onnx_node']}: cosine {row['cosine']:.6f}{layout}"


def summary(report: dict, sample: str) -> dict:
    return {"sample": sample, "tensors": report["tensors"], "matched": report["matched"],
            "threshold": report["threshold"], "first_divergence": line(report["first_divergence"]),
            "first_unmatched": line(report["first_unmatched"]), "worst": [line(r) for r in report["worst"][:3]]}
