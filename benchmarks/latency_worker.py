"""One latency measurement in its own process: load one variant, warm up, time N batch-1 runs, print JSON.

    python benchmarks/latency_worker.py VARIANT RUN_DIR [--runs N] [--warmup N] [--outputs FILE.npy]
                                        [--factory MODEL.py]

RUN_DIR is a `convertctl run` output folder: its samples.npz holds the preprocessed real images
(cycled through, one per run) and its targets/ the artifacts. `--factory` is the file whose `build()`
gives the PyTorch model of the `torch_fp32` variant (default: the demo's EfficientNet-Lite0); it must be
the model RUN_DIR was converted from. The thread count and precision are read back from the runtime
after loading, not assumed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import FACTORY, THREADS, load_samples, median, percentile


def torch_fp32(run_dir: Path, factory: Path = FACTORY):
    import importlib.util

    import torch

    torch.set_num_threads(THREADS)
    spec = importlib.util.spec_from_file_location("factory", factory)
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
        "factory": str(factory),
        "torch": torch.__version__,
    }


def _ort(folder: Path, model: Path, precision: str):
    import onnxruntime as ort

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
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=saved["providers"])
    name = sess.get_inputs()[0].name
    return (lambda x: sess.run(None, {name: x})[0]), {
        "threads": sess.get_session_options().intra_op_num_threads,
        "precision": precision,
        "model": str(model.relative_to(folder.parents[1])),
        "session_json": saved,
        "providers": sess.get_providers(),
        **_qdq_types(model),
        "onnxruntime": ort.__version__,
    }


def _qdq_types(model: Path) -> dict:
    """Element types of the Q/DQ pairs (activations and weights) of a quantized ONNX model, for the record."""
    import onnx

    m = onnx.load(str(model), load_external_data=False)
    types = {}
    inits = {i.name: i.data_type for i in m.graph.initializer}
    for node in m.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            types.setdefault("activation_q", set()).add(onnx.TensorProto.DataType.Name(inits[node.input[2]]))
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            types.setdefault("weight_dq", set()).add(onnx.TensorProto.DataType.Name(inits[node.input[0]]))
    return {"qdq_types": {k: sorted(v) for k, v in types.items()}} if types else {}


def _openvino(folder: Path, use_hint: bool, onnx: Path | None = None):
    """An OpenVINO IR with its runtime.json; or, with `onnx`, that ONNX read by ov.convert_model instead of
    the IR (still with the folder's runtime.json settings)."""
    import openvino as ov

    settings = json.loads((folder / "runtime.json").read_text())
    config = {"INFERENCE_NUM_THREADS": THREADS}
    if use_hint:
        config["INFERENCE_PRECISION_HINT"] = settings["INFERENCE_PRECISION_HINT"]
    core = ov.Core()
    model = ov.convert_model(str(onnx)) if onnx else core.read_model(str(folder / "model.xml"))
    compiled = core.compile_model(model, settings["device"], config)
    request, out = compiled.create_infer_request(), compiled.output(0)
    exec_types = {}  # what the CPU plugin actually runs Conv / FC in: {"Convolution u8": 49, ...}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer in ("Convolution", "FullyConnected", "MatMul"):
            key = f"{layer} {info['runtimePrecision'].astype(str)}"
            exec_types[key] = exec_types.get(key, 0) + 1
    return (lambda x: request.infer([x])[out]), {
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "conv_fc_runtime_precisions": dict(sorted(exec_types.items())),
        "model": str(onnx.relative_to(folder.parents[1])) if onnx else str(folder.relative_to(folder.parents[1])),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "runtime_json": settings,
        "hint_set": use_hint,
        "openvino": ov.__version__.split("-")[0],
    }


def ort_fp32(run_dir: Path):
    folder = run_dir / "targets" / "onnxruntime_fp32"
    return _ort(folder, folder / "model.onnx", "fp32 (ONNX graph)")


def ort_int8(run_dir: Path):
    folder = run_dir / "targets" / "onnxruntime_int8"
    return _ort(folder, folder / "model.onnx", "int8 U8S8 Q/DQ")


def ort_qdq_s8(run_dir: Path):
    # The S8S8 (TensorRT-form) Q/DQ model with the INT8 target's session options.
    return _ort(run_dir / "targets" / "onnxruntime_int8", run_dir / "quantize" / "model.qdq_s8.onnx",
                "int8 S8S8 Q/DQ")


VARIANTS = {
    "torch_fp32": torch_fp32,
    "ort_fp32": ort_fp32,
    "ov_fp32": lambda d: _openvino(d / "targets" / "openvino_fp32", use_hint=True),
    "ov_fp16w": lambda d: _openvino(d / "targets" / "openvino_fp16", use_hint=True),
    "ov_fp32_default_hint": lambda d: _openvino(d / "targets" / "openvino_fp32", use_hint=False),
    "ort_int8": ort_int8,
    "ov_int8": lambda d: _openvino(d / "targets" / "openvino_int8", use_hint=True),
    "ort_qdq_s8": ort_qdq_s8,
    "ov_qdq_s8": lambda d: _openvino(
        d / "targets" / "openvino_int8", use_hint=True, onnx=d / "quantize" / "model.qdq_s8.onnx"
    ),
}


def measure(variant: str, run_dir: Path, runs: int, warmup: int, outputs: Path | None,
            factory: Path = FACTORY) -> dict:
    import numpy as np

    images = load_samples(run_dir)  # [N, 3, 224, 224] float32
    batches = [np.ascontiguousarray(images[i : i + 1]) for i in range(len(images))]
    t0 = time.perf_counter()
    run, info = torch_fp32(run_dir, factory) if variant == "torch_fp32" else VARIANTS[variant](run_dir)
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
    p.add_argument("--factory", type=Path, default=FACTORY, help="model file of torch_fp32 (its build())")
    a = p.parse_args()
    print(json.dumps(measure(a.variant, a.run_dir, a.runs, a.warmup, a.outputs, a.factory.resolve())))
