"""Runs model.tflite with ai-edge-litert's Interpreter through its signature, in the ONNX layout convertctl's
samples and references are in: inputs transposed (and quantized for an int8 input) as signature.json says,
outputs mapped back. A model with a static batch of 1 is fed a batch one sample at a time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from convertctl.errors import require
from convertctl.targets.base import Feeds, Runner
from convertctl.targets.litert.options import LiteRTOptions
from convertctl.targets.litert.signature import Invoker, to_onnx, to_tflite


def open_model(out_dir: Path, spec: LiteRTOptions, settings: dict) -> Runner:
    require("ai_edge_litert", "litert")
    sig = json.loads((out_dir / "signature.json").read_text())
    threads = spec.num_threads or len(os.sched_getaffinity(0))
    runner = Invoker(out_dir / "model.tflite", threads)
    inputs, outputs = sig["inputs"], sig["outputs"]
    # each input's batch axis in the ONNX layout (None: not batched, e.g. a scalar); older artifacts: axis 0
    axes = {i["onnx"]: i.get("batch_axis", 0) if i["shape"] else None for i in inputs}
    batched = [i for i in inputs if axes[i["onnx"]] is not None and axes[i["onnx"]] < len(i["shape"])]
    # a static batch of 1 on the batch axis, wherever the perm puts it
    single = all(i["shape"][i["perm"].index(axes[i["onnx"]])] == 1 for i in batched)

    def once(feeds: Feeds) -> list[np.ndarray]:
        got = runner(**{i["name"]: to_tflite(np.asarray(feeds[i["onnx"]]), i) for i in inputs})
        return [to_onnx(np.asarray(got[o["name"]]), o) for o in outputs]

    def run(feeds: Feeds) -> list[np.ndarray]:
        batch = {int(np.asarray(feeds[i["onnx"]]).shape[axes[i["onnx"]]]) for i in batched}
        n = batch.pop() if len(batch) == 1 else 1
        if not single or n == 1:
            return once(feeds)

        def sample(b: int) -> Feeds:  # sample b of every batched input, along its own batch axis
            return {k: (np.take(np.asarray(v), [b], axis=axes[k]) if axes.get(k) is not None else v)
                    for k, v in feeds.items()}

        parts = [once(sample(b)) for b in range(n)]
        return [np.concatenate(col, axis=0) for col in zip(*parts, strict=True)]  # outputs batch on axis 0

    import importlib.metadata

    return Runner(run=run, output_names=[o["onnx"] for o in outputs], effective={
        "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
        "num_threads": threads,
        "signature": sig["signature"] or "none (input and output tensors)",
        "input_layout": {i["onnx"]: i["perm"] for i in inputs},
        "io_dtypes": sorted({x["dtype"] for x in (*inputs, *outputs)}),
        "batch": "one sample per invoke (static batch 1)" if single else "resized per run",
    })
