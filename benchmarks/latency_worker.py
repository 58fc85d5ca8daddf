"""One latency measurement in its own process: load one variant, warm up, time N batch-1 runs, print JSON.

    python benchmarks/latency_worker.py VARIANT RUN_DIR [--runs N] [--warmup N] [--outputs FILE.npy]

RUN_DIR is a `convertctl run` output folder: its samples.npz holds the 16 preprocessed real images
(cycled through, one per run) and its targets/ the artifacts. The thread count and precision are
read back from the runtime after loading, not assumed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import FACTORY, THREADS, load_samples, median, percentile


def torch_fp32(run_dir: Path):
    import importlib.util

    import torch

    torch.set_num_threads(THREADS)
    spec = importlib.util.spec_from_file_location("factory", FACTORY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build().eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    return run, {
        "threads": torch.get_num_threads(),
        "precision": "/".join(dtypes),
        "torch": torch.__version__,
    }


def ort_fp32(run_dir: Path):
    import onnxruntime as ort

    folder = run_dir / "targets" / "onnxruntime_fp32"
    saved = json.loads((folder / "session.json").read_text())
    levels = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "all": "ORT_ENABLE_ALL",
    }
    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, levels[saved["graph_optimization_level"]]
    )
    opts.intra_op_num_threads = THREADS  # session.json's 0 means "ORT default"; the benchmark pins it
    sess = ort.InferenceSession(str(folder / "model.onnx"), sess_options=opts, providers=saved["providers"])
    name = sess.get_inputs()[0].name
    return (lambda x: sess.run(None, {name: x})[0]), {
        "threads": sess.get_session_options().intra_op_num_threads,
        "precision": "fp32 (ONNX graph)",
        "session_json": saved,
        "providers": sess.get_providers(),
        "onnxruntime": ort.__version__,
    }


def _openvino(folder: Path, use_hint: bool):
    import openvino as ov

    settings = json.loads((folder / "runtime.json").read_text())
    config = {"INFERENCE_NUM_THREADS": THREADS}
    if use_hint:
        config["INFERENCE_PRECISION_HINT"] = settings["INFERENCE_PRECISION_HINT"]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(folder / "model.xml")), settings["device"], config)
    request, out = compiled.create_infer_request(), compiled.output(0)
    return (lambda x: request.infer([x])[out]), {
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "runtime_json": settings,
        "hint_set": use_hint,
        "openvino": ov.__version__.split("-")[0],
    }


VARIANTS = {
    "torch_fp32": torch_fp32,
    "ort_fp32": ort_fp32,
    "ov_fp32": lambda d: _openvino(d / "targets" / "openvino_fp32", use_hint=True),
    "ov_fp16w": lambda d: _openvino(d / "targets" / "openvino_fp16", use_hint=True),
    "ov_fp32_default_hint": lambda d: _openvino(d / "targets" / "openvino_fp32", use_hint=False),
}


def measure(variant: str, run_dir: Path, runs: int, warmup: int, outputs: Path | None) -> dict:
    import numpy as np

    images = load_samples(run_dir)  # [16, 3, 224, 224] float32
    batches = [np.ascontiguousarray(images[i : i + 1]) for i in range(len(images))]
    t0 = time.perf_counter()
    run, info = VARIANTS[variant](run_dir)
    load_s = time.perf_counter() - t0
    logits = np.concatenate([np.asarray(run(x)) for x in batches])  # first pass: also warm-up
    if outputs is not None:
        np.save(outputs, logits)
    for i in range(warmup):
        run(batches[i % len(batches)])
    times = []
    for i in range(runs):
        x = batches[i % len(batches)]
        t = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "variant": variant,
        "runs": runs,
        "warmup": warmup + len(batches),
        "batch": 1,
        "load_s": round(load_s, 3),
        "median_ms": round(median(times), 3),
        "p90_ms": round(percentile(times, 90), 3),
        "min_ms": round(min(times), 3),
        "times_ms": [round(t, 4) for t in times],
        **info,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("variant", choices=sorted(VARIANTS))
    p.add_argument("run_dir", type=Path)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--outputs", type=Path)
    a = p.parse_args()
    print(json.dumps(measure(a.variant, a.run_dir, a.runs, a.warmup, a.outputs)))
