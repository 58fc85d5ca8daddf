"""Benchmark 3: batch-1 latency of each artifact `convertctl run` produced, against PyTorch eager FP32.

One model per call (`model`, a key of common.MODELS): its artifacts come from its own `convertctl run`
(`run_dir`), and its baseline is the same model in PyTorch eager FP32, built by the model's factory and
measured in the same rounds. Every variant runs in its own process (latency_worker.py); several runtimes
in one process skew each other. The variants run in `rounds` short rounds, in a rotated order, so slow
phases of the (virtual) machine hit all of them alike; the median and p90 are over all timed runs of the
rounds no other process disturbed.
"""

from __future__ import annotations

import json
from functools import partial

from common import (
    BENCH,
    GATE,
    MODELS,
    PYTHON,
    ROOT,
    THREADS,
    WORK,
    compare,
    load_samples,
    median,
    percentile,
    run_json,
)

VARIANTS = {
    "torch_fp32": "PyTorch eager FP32",
    "ort_fp32": "ONNX Runtime FP32 (session.json options)",
    "ov_fp32": "OpenVINO FP32 IR, hint f32 (runtime.json)",
    "ov_fp16w": "OpenVINO FP16-compressed IR, hint f32 (runtime.json)",
    "ov_fp32_default_hint": "info only: OpenVINO FP32 IR, CPU default hint (not what convertctl ships)",
    "ort_int8": "ONNX Runtime INT8, U8S8 Q/DQ (session.json options)",
    "ov_int8": "OpenVINO INT8 IR (NNCF), hint f32 (runtime.json)",
    "ort_qdq_s8": "info only: ONNX Runtime on the S8S8 Q/DQ ONNX (quantize/model.qdq_s8.onnx)",
    "ov_qdq_s8": "info only: OpenVINO reading the S8 Q/DQ ONNX directly (convert_model), hint f32",
}
GOALS = {"ov_int8": 10.0, "ort_int8": 4.0}  # the issue: INT8 speed vs PyTorch eager FP32, at least


def ensure_qdq_s8(run_dir) -> dict:
    """The S8 Q/DQ model of the run: the quantize stage's, or emitted by emit_qdq_s8.py from its table."""
    if (run_dir / "quantize" / "model.qdq_s8.onnx").exists():
        return {"source": "written by convertctl's quantize stage"}
    info = run_json([PYTHON, str(BENCH / "emit_qdq_s8.py"), str(run_dir)])
    return {"source": "emitted by benchmarks/emit_qdq_s8.py (convertctl.quantize.emit.emit_qdq, the run's "
            "calibration table and optimized ONNX)", **info}


def check_source(run_dir, model: str) -> dict:
    """The run folder must hold a conversion of `model`: its manifest's factory is the model's factory."""
    from pathlib import Path

    factory = Path(MODELS[model]["factory"]).resolve()
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        src = manifest["recipe"]["content"]["source"]
        converted, recipe = src["factory"], manifest["recipe"].get("path")
        extras = {k: src[k] for k in ("path", "factory_args") if src.get(k)}
    except (OSError, KeyError, TypeError, ValueError) as exc:  # the manifest's layout is not ours to rely on
        return {"factory": str(factory), "run_factory": None, "checked": f"not checked: {exc!r}"}
    if extras:  # the worker calls build() alone: weights or arguments of the run would make another model
        raise RuntimeError(f"{run_dir}: the run's source also has {extras}; the PyTorch baseline would not be "
                           "the converted model")
    if not converted or Path(converted.rsplit(":", 1)[0]).resolve() != factory:
        raise RuntimeError(f"{run_dir} is a conversion of {converted!r}, not of the {model} model ({factory}): "
                         f"give --artifacts {model}=DIR a run of {MODELS[model]['recipe'].relative_to(ROOT)}")
    return {"factory": str(factory), "run_factory": converted, "run_recipe": recipe, "checked": "same factory"}


def bench(run_dir, rounds: int = 10, runs: int = 50, warmup: int = 20, model: str = "efficientnet_lite0") -> dict:
    import numpy as np

    source = check_source(run_dir, model)
    out_dir = WORK / "latency" / model
    out_dir.mkdir(parents=True, exist_ok=True)
    qdq_s8 = ensure_qdq_s8(run_dir)
    names = list(VARIANTS)
    raw: dict[str, list[dict]] = {v: [] for v in names}
    for r in range(rounds):
        for v in names[r % len(names) :] + names[: r % len(names)]:
            worker = [PYTHON, str(BENCH / "latency_worker.py"), v, str(run_dir), "--runs", str(runs)]
            cmd = [*worker, "--warmup", str(warmup), "--outputs", str(out_dir / f"{v}.npy")]
            cmd += ["--factory", source["factory"]]
            result, share = GATE.run(partial(run_json, cmd))
            raw[v].append({**result, "foreign_cpu_share": share})
    ref = np.load(out_dir / "torch_fp32.npy")
    results = {}
    for v in names:
        # Rounds that other processes disturbed (the quiet budget ran out) count only if no round was clean.
        clean = [res for res in raw[v] if res["foreign_cpu_share"] < GATE.threshold] or raw[v]
        times = [t for res in clean for t in res["times_ms"]]
        for res in raw[v]:
            del res["times_ms"]
        first = raw[v][0]
        results[v] = {
            "label": VARIANTS[v],
            "median_ms": round(median(times), 3),
            "p90_ms": round(percentile(times, 90), 3),
            "round_medians_ms": [res["median_ms"] for res in raw[v]],
            "round_foreign_cpu_share": [res["foreign_cpu_share"] for res in raw[v]],
            "rounds_used": len(clean),
            "timed_runs": len(times),
            "threads": sorted({res["threads"] for res in raw[v]}),
            "precision": first["precision"],
            "vs_torch": compare(ref, np.load(out_dir / f"{v}.npy")),
            "details": {
                k: val
                for k, val in first.items()
                if k not in ("variant", "median_ms", "p90_ms", "min_ms", "threads", "precision")
            },
        }
    base = results["torch_fp32"]["median_ms"]
    for res in results.values():
        res["speedup_vs_torch"] = round(base / res["median_ms"], 2)
    goals = {
        v: {"goal_speedup": g, "speedup": results[v]["speedup_vs_torch"], "met": results[v]["speedup_vs_torch"] >= g}
        for v, g in GOALS.items()
    }
    n = len(load_samples(run_dir))
    return {
        "model": model,
        "model_label": MODELS[model]["label"],
        "recipe": str(MODELS[model]["recipe"].relative_to(ROOT)),
        "source_check": source,
        "threads_requested": THREADS,
        "batch": 1,
        "rounds": rounds,
        "runs_per_round": runs,
        "warmup": warmup,
        "input": f"the {n} preprocessed real images of the run's samples.npz, cycled, batch 1",
        "artifacts": str(run_dir),
        "qdq_s8": qdq_s8,
        "goals": goals,
        "foreign_cpu_share_max": max(res["foreign_cpu_share"] for rs in raw.values() for res in rs),
        "variants": results,
    }


if __name__ == "__main__":
    import sys
    from pathlib import Path

    # bench_latency.py RUN_DIR [MODEL]
    print(json.dumps(bench(Path(sys.argv[1]), model=sys.argv[2] if len(sys.argv) > 2 else "efficientnet_lite0"),
                     indent=2))
