"""Benchmark 6: TensorRT engines of the demo model (EfficientNet-Lite0) in FP32, FP16 and INT8.

    .venv/bin/python benchmarks/bench_tensorrt.py [--output benchmarks/results/tensorrt.json]

Runs `convertctl run` on the demo recipe with its targets replaced by tensorrt fp32/fp16/int8, with
latency on: each engine is timed in a process of its own, against the FP32 ONNX in ONNX Runtime timed in
the same run, and FP16/INT8 against the FP32 engine. Where TensorRT is not installed (every machine of
this project) the engines are `skipped` and nothing is timed: the JSON says so and records the kits.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import CLI, RECIPE, RESULTS, ROOT, WORK, machine, source_state

TARGETS = [{"runtime": "tensorrt", "precision": p} for p in ("fp32", "fp16", "int8")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "tensorrt.json")
    args = parser.parse_args()
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["targets"] = TARGETS
    recipe["verify"] = {**recipe.get("verify", {}), "latency": {"enabled": True, "runs": 100, "warmup": 20}}
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / "efficientnet_lite0_tensorrt.yaml"
    # paths in the demo recipe are relative to recipes/: keep them valid from the work folder
    recipe["source"]["factory"] = str((RECIPE.parent / recipe["source"]["factory"]).resolve())
    recipe["samples"]["images"] = str((RECIPE.parent / recipe["samples"]["images"]).resolve())
    recipe["calibration"]["data"] = str((RECIPE.parent / recipe["calibration"]["data"]).resolve())
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    t0 = time.perf_counter()
    proc = subprocess.run([CLI, "run", str(path), "-o", str(WORK / "tensorrt"), "--json"], capture_output=True,
                          text=True, timeout=3600, cwd=ROOT)
    if not proc.stdout.strip():
        raise RuntimeError(f"convertctl run exited {proc.returncode} without a manifest:\n{proc.stderr[-3000:]}")
    manifest = json.loads(proc.stdout)
    seconds = round(time.perf_counter() - t0, 1)
    base = (manifest.get("latency_baseline") or {}).get("p50_ms")
    artifacts = {a["id"]: a for a in manifest.get("artifacts", [])}
    fp32 = ((artifacts.get("tensorrt_fp32") or {}).get("latency") or {}).get("p50_ms")
    rows = []
    for a in artifacts.values():
        p50 = (a.get("latency") or {}).get("p50_ms")
        rows.append({"id": a["id"], "status": a["status"], "reason": a.get("reason"),
                     "graph_precision": (a.get("settings") or {}).get("graph_precision"),
                     "p50_ms": p50, "vs_onnxruntime_fp32_cpu": round(base / p50, 2) if base and p50 else None,
                     "vs_tensorrt_fp32": round(fp32 / p50, 2) if fp32 and p50 else None,
                     "cosine": next(iter(((a.get("verification") or [{}])[0].get("outputs") or {"": {}}).values())).get("cosine"),
                     "files": sorted(Path(f["path"]).name for f in a.get("files", []))})
    result = {"benchmark": "tensorrt", "machine": machine(), "source": source_state(),
              "tensorrt_installed": importlib.util.find_spec("tensorrt") is not None,
              "run_status": manifest.get("status"), "exit_code": manifest.get("exit_code"),
              "seconds": seconds, "baseline_p50_ms": base, "artifacts": rows,
              "measured": any(r["p50_ms"] for r in rows)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        timing = f"p50 {r['p50_ms']} ms, x{r['vs_tensorrt_fp32']} vs the FP32 engine" if r["p50_ms"] else "not timed"
        print(f"{r['id']:16} {r['status']:8} {timing}  {r['reason'] or ''}")
    print(f"run {result['run_status']} in {seconds} s -> {args.output}")
    return 0 if result["run_status"] in ("ok", "partial") else 1


if __name__ == "__main__":
    sys.exit(main())
