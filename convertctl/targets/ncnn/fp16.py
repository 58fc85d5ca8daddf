"""FP16 weights for an ncnn model, written by convertctl from pnnx's FP32 `.bin` rather than by pnnx (`fp16=1`).

pnnx 20261020's float32 -> float16 (`float32_to_float16` in tools/pnnx/src/utils.cpp) truncates the mantissa and
writes 0 for every value below 2^-14 (6.1e-5, FP16's smallest normal): FP16's subnormals are never used. A
BatchNorm with a large running variance folded into its convolution makes such weights: in PP-OCRv4 det's DB head
(var 1e7..1e8, so the conv is scaled by ~1e-4) 19668 of the 20736 weights of `convrelu_0` fall below it and
became 0 (relative error 0.76, output cosine 0.03). Rounded to nearest with subnormals kept (numpy), the same
weights have relative error 5.7e-4 and the whole model cosine 0.999996.

The `.bin` is a sequence of each layer's weight blobs in .param order, each either *tagged* (4-byte tag, then
the data: tag 0 = FP32, 0x01306B47 = FP16) or raw FP32 (biases and the like, which ncnn always reads as FP32).
Which blob is which is known only to each layer's `load_model`, so the layout is read from ncnn itself: every
layer of the loaded .param is asked to load from a ModelBin that records the (size, type) it asks for.

A tagged blob FP16 cannot hold (a value above 65504, or a relative error above FP16_MAX_REL_ERROR: most of it
below FP16's normal range) stays FP32 in the .bin, and its layer gets featmask 31=3 in the .param (ncnn's
per-layer switch, net.cpp get_masked_option: bit 0 no FP16 arithmetic, bit 1 no FP16 storage), so that a CPU
that does cast to FP16 at run time (ARM asimdhp) keeps that layer in FP32 too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.errors import require

FP16_TAG = 0x01306B47  # ncnn modelbin.cpp: the blob that follows is FP16
# FP16 rounds a normal value with relative error <= 2^-11 (4.9e-4; ~1.5e-4 over a blob): 1e-3 over a whole blob
# means much of it is subnormal or overflows. PP-OCRv4 det's worst blob, rounded correctly, is 5.7e-4.
FP16_MAX_REL_ERROR = 1e-3
FEATMASK_NO_FP16 = 3  # ncnn param key 31 (featmask): bit 0 fp16 arithmetic off, bit 1 fp16 storage/packed off


def blob_layout(param: Path) -> list[tuple[str, int, int]]:
    """(layer name, element count, type) of every blob in the .bin, in file order; type 0 = tagged, 1 = raw FP32."""
    ncnn = require("ncnn", "ncnn")

    class Recorder(ncnn.ModelBin):
        def __init__(self):
            super().__init__()
            self.loads: list[tuple[int, int]] = []

        def load(self, w, type):  # noqa: A002 - ncnn's own argument name
            self.loads.append((w, type))
            return ncnn.Mat(w)  # a layer only checks it got a Mat of that size

    net = ncnn.Net()
    if net.load_param(str(param)) != 0:
        raise RuntimeError(f"ncnn cannot load {param.name}")
    layout = []
    for layer in net.layers():
        rec = Recorder()
        if layer.load_model(rec) != 0:
            raise RuntimeError(f"ncnn layer {layer.name} ({layer.type}) did not load its weights")
        layout += [(layer.name, w, t) for w, t in rec.loads]
    return layout


def to_fp16(folder: Path, param_name: str, bin_name: str) -> dict[str, float]:
    """Rewrite the FP32 weights pnnx wrote (`fp16=0`) in `folder` as FP16, rounded to nearest with subnormals;
    returns {layer: relative error FP16 would have had} for the layers kept in FP32 (and marked so in the .param)."""
    param, binary = folder / param_name, folder / bin_name
    data = binary.read_bytes()
    out, kept, at = [], {}, 0
    for layer, count, kind in blob_layout(param):
        if kind == 1:  # raw: ncnn reads it as FP32 whatever the model's precision
            out.append(data[at:at + 4 * count])
            at += 4 * count
            continue
        tag = int.from_bytes(data[at:at + 4], "little")
        if tag != 0:
            raise RuntimeError(f"{bin_name}: blob of layer {layer} has tag {tag:#x}, not FP32 (0)")
        w32 = np.frombuffer(data, np.float32, count, at + 4)
        at += 4 + 4 * count
        with np.errstate(over="ignore", invalid="ignore"):  # a value above 65504 becomes inf: judged below
            w16 = w32.astype(np.float16)  # IEEE round to nearest even, subnormals kept
            err = float(np.linalg.norm(w16.astype(np.float32) - w32) / (np.linalg.norm(w32) or 1.0))
        if not np.isfinite(w16).all() or not err <= FP16_MAX_REL_ERROR:
            kept[layer] = max(kept.get(layer, 0.0), err if np.isfinite(err) else float("inf"))
            out += [bytes(4), w32.tobytes()]
        else:
            raw = w16.tobytes()
            # ncnn aligns an FP16 blob to 4 bytes; pad as pnnx does (0x2283) so equal weights give equal files
            out += [FP16_TAG.to_bytes(4, "little"), raw + (b"\x83\x22" if count % 2 else b"")]
    if at != len(data):
        raise RuntimeError(f"{bin_name}: ncnn's layers read {at} of its {len(data)} bytes")
    binary.write_bytes(b"".join(out))
    if kept:
        param.write_text(_mark_fp32(param.read_text(), set(kept)))
    return kept


def _mark_fp32(text: str, layers: set[str]) -> str:
    """The .param with featmask 31=3 on `layers` (a line is: type name #in #out blobs... key=value...)."""
    lines = text.splitlines()
    for i, line in enumerate(lines[2:], start=2):
        parts = line.split()
        if len(parts) > 1 and parts[1] in layers:
            lines[i] = " ".join(p for p in parts if not p.startswith("31=")) + f" 31={FEATMASK_NO_FP16}"
    return "\n".join(lines) + "\n"
