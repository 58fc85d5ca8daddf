"""Simplifier choice for the optimize stage: onnxsim vs onnxslim on the exported EfficientNet-Lite0.

Two inputs: the ONNX that `convertctl run` exported (dynamo exporter, its own optimizer on), and, for
information, a raw dynamo export (`optimize=False`), where a simplifier has more left to do.
Each tool runs in its own process: node counts, import and simplify time, parity (ONNX Runtime,
16 real images, simplified vs input model).
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

from common import BENCH, FACTORY, GATE, PYTHON, WORK, compare, load_samples, median, run_json

TOOLS = ("onnxslim", "onnxsim")


def _ops(model) -> dict:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def worker(tool: str, model_path: Path, run_dir: Path) -> dict:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    t0 = time.perf_counter()
    simplify = __import__(tool)
    import_s = time.perf_counter() - t0
    times, out = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        out = simplify.slim(model) if tool == "onnxslim" else simplify.simplify(model)[0]
        times.append(time.perf_counter() - t0)
    x = load_samples(run_dir)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )  # compare the graphs as written
    before, after = (
        ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]
        for m in (model, out)
    )
    return {
        "tool": tool,
        "nodes_before": len(model.graph.node),
        "nodes_after": len(out.graph.node),
        "ops_after": _ops(out),
        "import_s": round(import_s, 3),
        "first_call_s": round(times[0], 3),
        "median_call_s": round(median(times), 3),
        "parity": compare(before, after),
    }


def export_raw(out: Path) -> None:
    """Dynamo export without the exporter's own optimizer (constant folding, BN folding ...)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("factory", FACTORY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.randn(2, 3, 224, 224)
    torch.onnx.export(
        module.build().eval(),
        (x,),
        str(out),
        dynamo=True,
        opset_version=18,
        optimize=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=16)},),
        external_data=False,
    )
    print(json.dumps({"ok": True}))


def bench(run_dir: Path) -> dict:
    raw = WORK / "simplify" / "model.raw.onnx"
    raw.parent.mkdir(parents=True, exist_ok=True)
    run_json([PYTHON, str(BENCH / "bench_simplify.py"), "--export-raw", str(raw)])
    inputs = {
        "convertctl export (dynamo, optimized)": run_dir / "export" / "model.onnx",
        "raw dynamo export (optimize=False), info": raw,
    }
    worker = [PYTHON, str(BENCH / "bench_simplify.py"), "--worker"]
    return {
        "inputs": {
            label: {
                tool: GATE.run(partial(run_json, [*worker, tool, str(path), str(run_dir)]))[0]
                for tool in TOOLS
            }
            for label, path in inputs.items()
        }
    }


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    elif sys.argv[1] == "--export-raw":
        export_raw(Path(sys.argv[2]))
    else:
        print(json.dumps(bench(Path(sys.argv[1])), indent=2))
