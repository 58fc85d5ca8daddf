"""Run a built ncnn model: ncnn.Net with the options in kit.json, one sample at a time.

An ncnn Mat is one sample (w, h, d, c: no batch dim), so a batch is run as a loop over its samples, each through
its own Extractor, and the outputs are stacked back along axis 0. The ONNX inputs and outputs map to pnnx's blob
names by position (`in0`.. in the ONNX graph's input order, `out0`.. in its output order; kit.json `blobs`), and
each sample's output is reshaped to the ONNX output's shape without its batch dim (ncnn may drop unit dims).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convertctl.errors import require

KIT = "kit.json"


def net_options(net, kit: dict) -> None:
    """Set the net's options as the kit says, before load_param (ncnn reads them while loading). Every FP16/BF16
    option is set explicitly: ncnn's own defaults turn FP16 storage and arithmetic on."""
    opt = net.opt
    fp16 = kit["precision"] == "fp16"
    opt.use_fp16_storage = fp16
    opt.use_fp16_packed = fp16
    opt.use_fp16_arithmetic = fp16 and kit.get("fp16_arithmetic", True)
    opt.use_bf16_storage = False
    opt.use_vulkan_compute = False
    if kit.get("num_threads"):
        opt.num_threads = int(kit["num_threads"])


def load_net(folder: Path, kit: dict):
    ncnn = require("ncnn", "ncnn")
    net = ncnn.Net()
    net_options(net, kit)
    if net.load_param(str(folder / kit["files"]["param"])) != 0:
        raise RuntimeError(f"ncnn cannot load {kit['files']['param']} (a layer type it does not have?)")
    if net.load_model(str(folder / kit["files"]["bin"])) != 0:
        raise RuntimeError(f"ncnn cannot load the weights {kit['files']['bin']}")
    return net


def per_sample(feeds: dict[str, np.ndarray], inputs: list[dict]):
    """Yield one sample's inputs at a time: batched inputs cut along their batch axis (the axis dropped),
    the others passed whole."""
    batched = [i for i in inputs if i["batch_axis"] is not None and i["onnx"] in feeds]
    n = feeds[batched[0]["onnx"]].shape[batched[0]["batch_axis"]] if batched else 1
    for k in range(n):
        sample = {}
        for i in inputs:
            arr = feeds[i["onnx"]]
            sample[i["blob"]] = np.take(arr, k, axis=i["batch_axis"]) if i["batch_axis"] is not None else arr
        yield sample


def to_onnx_shape(arr: np.ndarray, shape: list | None, name: str) -> np.ndarray:
    """One sample's ncnn output with its ONNX shape (batch dim included, as 1). `shape`: the ONNX output's dims
    (None = unknown), or None when its rank is unknown."""
    if shape is None:
        return arr[None]
    rest = shape[1:]
    if len(rest) == arr.ndim and all(d is None or d == a for d, a in zip(rest, arr.shape, strict=True)):
        return arr[None]
    unknown = sum(d is None for d in rest)
    if unknown <= 1:
        return arr.reshape([1] + [-1 if d is None else d for d in rest])
    squeezed = [d for d in arr.shape if d != 1]  # ncnn dropped unit dims: put them back where ONNX has them
    fixed = [d for d in rest if d != 1]
    if len(squeezed) == len(fixed):
        it = iter(squeezed)
        return arr.reshape([1] + [1 if d == 1 else next(it) for d in rest])
    raise RuntimeError(f"ncnn's output for {name} has shape {list(arr.shape)}, which does not fit the ONNX "
                       f"output's {shape}")


def open_net(folder: Path):
    """(run, output names, effective settings) of the model in `folder`."""
    ncnn = require("ncnn", "ncnn")
    kit = json.loads((folder / KIT).read_text())
    net = load_net(folder, kit)
    inputs, outputs = kit["blobs"]["inputs"], kit["blobs"]["outputs"]

    def run(feeds):
        per_output: list[list[np.ndarray]] = [[] for _ in outputs]
        for sample in per_sample(feeds, inputs):
            ex = net.create_extractor()
            keep = []  # an ncnn.Mat made from an array may share its memory: the arrays live until extracted
            for blob, arr in sample.items():
                arr = np.ascontiguousarray(arr, dtype=np.float32)
                keep.append(arr)
                ex.input(blob, ncnn.Mat(arr))
            for j, o in enumerate(outputs):
                ret, mat = ex.extract(o["blob"])
                if ret != 0:
                    raise RuntimeError(f"ncnn could not compute {o['blob']} ({o['onnx']}): extract returned {ret}")
                per_output[j].append(to_onnx_shape(np.array(mat, copy=True), o["shape"], o["onnx"]))
            ex.clear()
        return [np.concatenate(chunks, axis=0) for chunks in per_output]

    effective = {
        "ncnn": _version(),
        "num_threads": int(net.opt.num_threads),
        "batch": "loop over single samples",
        # read back from the net: ncnn's own defaults turn the FP16 ones on
        "options_on": [k for k in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage")
                       if getattr(net.opt, k)] or "no fp16/bf16 option",
    }
    if kit["precision"] == "fp16":
        effective["fp16_here"] = fp16_effect(ncnn, net)
    return run, [o["onnx"] for o in outputs], effective


def fp16_effect(ncnn, net) -> str:
    """What FP16 means on this CPU, from ncnn's own CPU queries: honest, never assumed. ncnn casts activations to
    FP16 (net.cpp convert_layout) only on ARM CPUs with FP16 vector arithmetic (asimdhp); elsewhere FP16 is the
    weights' storage only."""
    if ncnn.cpu_support_arm_asimdhp():
        kinds = sorted({layer.type for layer in net.layers() if layer.support_fp16_storage} - _LAYOUT_ONLY)
        return ("FP16 activations and weights" + (" with FP16 arithmetic" if net.opt.use_fp16_arithmetic else "")
                + f" in {', '.join(kinds) or 'no layer'} (ARM asimdhp)")
    from convertctl.cpu import cpu_flags

    ip = sum(layer.type == "InnerProduct" for layer in net.layers())
    kept = (f", except in the InnerProduct layers ({ip}), which keep them in FP16 (F16C) and convert them as they compute"
            if ip and "f16c" in cpu_flags() and ncnn.cpu_support_x86_avx() else "")
    return (f"FP16 weights in the .bin, widened to FP32 when loaded{kept}; activations and arithmetic stay FP32 "
            "(ncnn casts activations to FP16 only on ARM CPUs with asimdhp)")


# Layers that only move data: their FP16 support says nothing about the arithmetic
_LAYOUT_ONLY = {"Input", "Reshape", "Flatten", "Split", "Concat", "Slice", "Crop", "Permute", "Squeeze",
                "ExpandDims", "Noop", "Packing", "Cast"}


def _version() -> str:
    import importlib.metadata

    return importlib.metadata.version("ncnn")
