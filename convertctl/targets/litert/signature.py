"""What a built model.tflite takes and gives, against the ONNX it was converted from: `signature.json`.

onnx2tf renames nothing in the signature (serving_default keeps the ONNX input/output names, with characters a
SavedModel cannot hold replaced), but it changes layouts: a 4-D/5-D input becomes channels-last, and so may any
output. The transposes that map the ONNX layout onto the .tflite's are found from the shapes, and where a shape
alone is ambiguous (a square feature map, C == H) from numbers: one probe input through ONNX Runtime and the
interpreter, the candidate that reproduces ONNX Runtime's output wins. The runner applies exactly these."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError


class Invoker:
    """A .tflite run by its signature, or, when it has none (onnx2tf converts some models through the Keras model,
    which writes no SignatureDef), by its input and output tensors, resized to each feed's shape."""

    def __init__(self, path: Path, num_threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        # the XNNPACK delegate is applied at the first allocation, which logs "INFO: Created TensorFlow Lite XNNPACK
        # delegate for CPU." natively: for a model whose inputs are all static it is made here, with that line kept
        # off stderr (one with dynamic dims is allocated at its first run's shapes, where the line still shows: its
        # default shape may not allocate at all, and a first run can take long, too long to hold stderr back)
        with quiet_native_stderr():
            self.interp = Interpreter(model_path=str(path), num_threads=num_threads)
            if all(int(d) >= 0 for det in self.interp.get_input_details()
                   for d in det.get("shape_signature", det["shape"])):
                self.interp.allocate_tensors()
        keys = list(self.interp.get_signature_list())
        if len(keys) > 1:
            raise ConvertctlError(f"the .tflite has {len(keys)} signatures ({keys}); convertctl runs one")
        self.signature = keys[0] if keys else None
        if self.signature:
            self._runner = self.interp.get_signature_runner(self.signature)
            self.inputs, self.outputs = self._runner.get_input_details(), self._runner.get_output_details()
        else:
            self.inputs = {d["name"]: d for d in self.interp.get_input_details()}
            self.outputs = {d["name"]: d for d in self.interp.get_output_details()}
            self._shapes = None

    def __call__(self, **feeds) -> dict[str, np.ndarray]:
        if self.signature:
            return self._runner(**feeds)
        shapes = {name: tuple(x.shape) for name, x in feeds.items()}
        if shapes != self._shapes:
            for name, shape in shapes.items():
                self.interp.resize_tensor_input(self.inputs[name]["index"], list(shape), strict=False)
            self.interp.allocate_tensors()
            self._shapes = shapes
        for name, x in feeds.items():
            self.interp.set_tensor(self.inputs[name]["index"], x)
        self.interp.invoke()
        return {name: self.interp.get_tensor(d["index"]).copy() for name, d in self.outputs.items()}


_NOISE = re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.\s*$")


@contextlib.contextmanager
def quiet_native_stderr():
    """File descriptor 2 sent to a temporary file for the block (native code writes there, not to sys.stderr), then
    restored; every line it got but the interpreter's XNNPACK INFO line is written to stderr after, errors included.
    A no-op when fd 2 cannot be duplicated (closed)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if not _NOISE.match(ln)]
            if kept:
                os.write(2, b"".join(kept))


def channels_last(rank: int) -> list[int]:
    """NCHW -> NHWC (and NCW, NCDHW likewise): the permutation onnx2tf applies to an input."""
    return [0, *range(2, rank), 1] if rank >= 3 else list(range(rank))


def _norm(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "_", name).strip("_").lower()


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _match(names: list[str], wanted: list[str], what: str) -> tuple[dict[str, str], bool]:
    """(ONNX name -> .tflite name, whether any was matched by position only): exact, else equal after onnx2tf's
    character replacement, else by position (Identity, Identity_1, ... of a model without a signature)."""
    found = {}
    left = list(names)
    for w in wanted:
        hit = w if w in left else next((n for n in left if _norm(n) == _norm(w)), None)
        if hit is not None:
            found[w] = hit
            left.remove(hit)
    rest = [w for w in wanted if w not in found]
    if rest and len(rest) == len(left):
        found.update(zip(rest, sorted(left, key=_natural), strict=True))
    if len(found) != len(wanted):
        raise ConvertctlError(f"the .tflite's {what} {sorted(names)} do not match the ONNX's {wanted}")
    return found, bool(rest)


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


def describe(tflite: Path, onnx_path: Path, probe: dict[str, np.ndarray], num_threads: int | None,
             channels_last_inputs: bool = True) -> dict:
    """The signature.json content: per input and output the ONNX name, the .tflite's name, shape (-1 = dynamic),
    dtype, quantization, and `perm` (ONNX layout -> .tflite layout). `channels_last_inputs`: onnx2tf's rule, a 4-D
    or 5-D input is NHWC where the shapes allow it; False (TFLiteConverter on a TensorFlow source, whose ONNX has
    the source's layout): an input keeps its layout where the shapes allow it."""
    from convertctl.onnx_session import run_session, session

    runner = Invoker(tflite, num_threads)
    ins, outs = runner.inputs, runner.outputs
    sess = session(onnx_path, level="extended")
    # a dim_value <= 0 (Paddle2ONNX's dynamic batch -1) is as dynamic as a named one
    onnx_in = {i.name: [d if isinstance(d, int) and d > 0 else None for d in i.shape] for i in sess.get_inputs()}
    onnx_out = {o.name: [d if isinstance(d, int) and d > 0 else None for d in o.shape] for o in sess.get_outputs()}
    in_map, _ = _match(list(ins), list(onnx_in), "inputs")
    out_map, guessed = _match(list(outs), list(onnx_out), "outputs")

    def entry(onnx_name, sig_name, det, onnx_shape, role):
        shape = [int(d) for d in det.get("shape_signature", det["shape"])]
        shape_sig = [None if d < 0 else d for d in shape]
        cands = _candidates([d for d in onnx_shape], shape_sig) or []
        if not cands and role == "output" and guessed:  # matched by position: the probe decides (below)
            cands = [list(range(len(onnx_shape)))]
        if not cands:
            raise ConvertctlError(f"the .tflite's {role} {sig_name!r} has shape {shape}, which no transpose of the "
                                  f"ONNX {role} {onnx_name!r} {onnx_shape} gives")
        scale, zero = det.get("quantization", (0.0, 0))
        return {"onnx": onnx_name, "name": sig_name, "shape": shape, "dtype": np.dtype(det["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
                "perm": cands[0], "_candidates": cands}

    inputs = [entry(n, in_map[n], ins[in_map[n]], onnx_in[n], "input") for n in onnx_in]
    outputs = [entry(n, out_map[n], outs[out_map[n]], onnx_out[n], "output") for n in onnx_out]
    for item in inputs if channels_last_inputs else ():  # onnx2tf's rule for inputs, where the shapes allow it
        if channels_last(len(item["perm"])) in item["_candidates"] and len(item["perm"]) in (4, 5):
            item["perm"] = channels_last(len(item["perm"]))
    if guessed or any(len(o["_candidates"]) > 1 for o in outputs):
        _settle_by_numbers(inputs, outputs, runner, probe, sess, run_session, outs)
    for item in (*inputs, *outputs):
        item.pop("_candidates")
    return {"signature": runner.signature, "inputs": inputs, "outputs": outputs}


def _settle_by_numbers(inputs, outputs, runner, probe, sess, run_session, details) -> None:
    """Which .tflite output is which ONNX output, in which layout, where names or shapes leave it open: one probe
    through ONNX Runtime and the interpreter, each ONNX output takes the output and transpose closest to it."""
    reference = dict(zip([o.name for o in sess.get_outputs()], run_session(sess, probe), strict=True))
    got = runner(**{i["name"]: to_tflite(probe[i["onnx"]], i) for i in inputs})
    free = set(got)
    for item in outputs:
        ref = reference[item["onnx"]]
        best = (np.inf, item["name"], item["perm"], item["_candidates"])
        for name in sorted(free):
            det = details[name]
            shape = [None if d < 0 else int(d) for d in det.get("shape_signature", det["shape"])]
            trial = {**item, "dtype": np.dtype(det["dtype"]).name}
            for perm in _candidates(list(ref.shape), shape):
                back = to_onnx(np.asarray(got[name]), {**trial, "perm": perm})
                if back.shape == ref.shape:
                    err = float(np.abs(back.astype(np.float64) - ref).max())
                    if err < best[0]:
                        best = (err, name, perm, item["_candidates"])
        _, item["name"], item["perm"], _ = best
        free.discard(item["name"])


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
