"""What a built model.tflite takes and gives, against the ONNX it was converted from: `signature.json`.

onnx2tf renames nothing in the signature (serving_default keeps the ONNX input/output names, with characters a
SavedModel cannot hold replaced), but it changes layouts: a 4-D/5-D input becomes channels-last, and so may any
output. The transposes that map the ONNX layout onto the .tflite's are found from the shapes, and where a shape
alone is ambiguous (a square feature map, C == H) from numbers: one probe input through ONNX Runtime and the
interpreter, the candidate that reproduces ONNX Runtime's output wins. The runner applies exactly these."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError


def channels_last(rank: int) -> list[int]:
    """NCHW -> NHWC (and NCW, NCDHW likewise): the permutation onnx2tf applies to an input."""
    return [0, *range(2, rank), 1] if rank >= 3 else list(range(rank))


def _norm(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "_", name).strip("_").lower()


def _match(names: list[str], wanted: list[str], what: str) -> dict[str, str]:
    """ONNX name -> signature name: exact, else equal after onnx2tf's character replacement, else by position."""
    found = {}
    left = list(names)
    for w in wanted:
        hit = w if w in left else next((n for n in left if _norm(n) == _norm(w)), None)
        if hit is not None:
            found[w] = hit
            left.remove(hit)
    rest = [w for w in wanted if w not in found]
    if rest and len(rest) == len(left):
        found.update(zip(rest, sorted(left), strict=True))
    if len(found) != len(wanted):
        raise ConvertctlError(f"the .tflite's signature {what} {sorted(names)} do not match the ONNX's {wanted}")
    return found


def _fits(shape, perm, target) -> bool:
    return len(shape) == len(target) and all(
        a is None or b is None or a == b for a, b in zip((shape[p] for p in perm), target, strict=True))


def _candidates(onnx_shape, tflite_shape) -> list[list[int]]:
    """Permutations p with onnx.transpose(p) shaped like the tflite tensor: identity and channels-last first."""
    rank = len(onnx_shape)
    if rank != len(tflite_shape):
        return []
    first = [list(range(rank)), channels_last(rank)]
    rest = [list(p) for p in itertools.permutations(range(rank)) if list(p) not in first] if rank <= 5 else []
    out = []
    for p in first + rest:
        if p not in out and _fits(onnx_shape, p, tflite_shape):
            out.append(p)
    return out


def describe(tflite: Path, onnx_path: Path, probe: dict[str, np.ndarray], num_threads: int | None) -> dict:
    """The signature.json content: per input and output the ONNX name, the .tflite's name, shape (-1 = dynamic),
    dtype, quantization, and `perm` (ONNX layout -> .tflite layout)."""
    from ai_edge_litert.interpreter import Interpreter

    from convertctl.onnx_session import run_session, session

    interp = Interpreter(model_path=str(tflite), num_threads=num_threads)
    keys = list(interp.get_signature_list())
    if len(keys) != 1:
        raise ConvertctlError(f"the .tflite has {len(keys)} signatures ({keys}); convertctl runs one")
    runner = interp.get_signature_runner(keys[0])
    ins, outs = runner.get_input_details(), runner.get_output_details()
    sess = session(onnx_path, level="extended")
    onnx_in = {i.name: [d if isinstance(d, int) else None for d in i.shape] for i in sess.get_inputs()}
    onnx_out = {o.name: [d if isinstance(d, int) else None for d in o.shape] for o in sess.get_outputs()}
    in_map = _match(list(ins), list(onnx_in), "inputs")
    out_map = _match(list(outs), list(onnx_out), "outputs")

    def entry(onnx_name, sig_name, det, onnx_shape, role):
        shape = [int(d) for d in det.get("shape_signature", det["shape"])]
        shape_sig = [None if d < 0 else d for d in shape]
        cands = _candidates([d for d in onnx_shape], shape_sig) or []
        if not cands:
            raise ConvertctlError(f"the .tflite's {role} {sig_name!r} has shape {shape}, which no transpose of the "
                                  f"ONNX {role} {onnx_name!r} {onnx_shape} gives")
        scale, zero = det.get("quantization", (0.0, 0))
        return {"onnx": onnx_name, "name": sig_name, "shape": shape, "dtype": np.dtype(det["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
                "perm": cands[0], "_candidates": cands}

    inputs = [entry(n, in_map[n], ins[in_map[n]], onnx_in[n], "input") for n in onnx_in]
    outputs = [entry(n, out_map[n], outs[out_map[n]], onnx_out[n], "output") for n in onnx_out]
    for item in inputs:  # onnx2tf's rule for inputs, where the shapes allow it
        if channels_last(len(item["perm"])) in item["_candidates"] and len(item["perm"]) in (4, 5):
            item["perm"] = channels_last(len(item["perm"]))
    if any(len(o["_candidates"]) > 1 for o in outputs) or any(len(i["_candidates"]) > 1 for i in inputs):
        _settle_by_numbers(inputs, outputs, runner, probe, sess, run_session)
    for item in (*inputs, *outputs):
        item.pop("_candidates")
    return {"signature": keys[0], "inputs": inputs, "outputs": outputs}


def _settle_by_numbers(inputs, outputs, runner, probe, sess, run_session) -> None:
    """Ambiguous transposes decided by one probe: ONNX Runtime's outputs against the interpreter's."""
    reference = dict(zip([o.name for o in sess.get_outputs()], run_session(sess, probe), strict=True))
    feeds = {i["name"]: to_tflite(probe[i["onnx"]], i) for i in inputs}
    got = runner(**feeds)
    for item in outputs:
        y = from_quantized(np.asarray(got[item["name"]]), item)
        ref = reference[item["onnx"]]
        errors = []
        for perm in item["_candidates"]:
            back = np.transpose(y, np.argsort(perm))
            errors.append(float(np.abs(back.astype(np.float64) - ref).max()) if back.shape == ref.shape else np.inf)
        item["perm"] = item["_candidates"][int(np.argmin(errors))]


def to_tflite(x: np.ndarray, item: dict) -> np.ndarray:
    """An ONNX-layout array as the .tflite input takes it: transposed, quantized for an int8 input."""
    x = np.transpose(x, item["perm"])
    q = item.get("quantization")
    if q and np.dtype(item["dtype"]).kind in "iu" and x.dtype.kind == "f":
        info = np.iinfo(np.dtype(item["dtype"]))
        x = np.clip(np.round(x / q["scale"]) + q["zero_point"], info.min, info.max)
    return np.ascontiguousarray(x.astype(item["dtype"]))


def from_quantized(y: np.ndarray, item: dict) -> np.ndarray:
    q = item.get("quantization")
    if q and np.dtype(item["dtype"]).kind in "iu":
        return ((y.astype(np.float32) - q["zero_point"]) * q["scale"]).astype(np.float32)
    return y


def to_onnx(y: np.ndarray, item: dict) -> np.ndarray:
    """A .tflite output in the ONNX layout (dequantized for an int8 output)."""
    return np.transpose(from_quantized(y, item), np.argsort(item["perm"]))
