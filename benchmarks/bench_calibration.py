"""Benchmark 4: time and peak memory of calibration, and whether memory stays flat as samples grow.

Each case runs calib_worker.py in its own process: convertctl's CalibrationData over the data, then
convertctl.quantize.table.calibrate (minmax, fresh cache) on the run's optimized FP32 ONNX. Cases: the
demo's real images (num_samples 100, holdout 0.3, as the recipe), and folders of 300 and 1000 synthetic
.npy samples [3, 224, 224] float32 (all used: holdout 0), written once into benchmarks/_work.
"""

from __future__ import annotations

import json
from functools import partial

from common import BENCH, GATE, PYTHON, ROOT, WORK, load_samples, run_json

TENSOR_COUNTS = (300, 1000)


def tensor_folder(run_dir, count: int):
    """`count` .npy samples: the run's real preprocessed images, each shifted and with seeded noise."""
    import numpy as np

    folder = WORK / f"calib_tensors_{count}"
    done = folder / ".complete"  # hidden: CalibrationData skips it
    if done.exists() and done.read_text() == str(count):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npy"):
        old.unlink()
    images = load_samples(run_dir)
    rng = np.random.default_rng(count)
    for i in range(count):
        x = np.roll(images[i % len(images)], int(rng.integers(-16, 17)), axis=2)
        x = np.clip(x + rng.normal(0, 0.05, x.shape), -1, 1).astype(np.float32)
        np.save(folder / f"{i:05d}.npy", x)
    done.write_text(str(count))
    return folder


def bench(run_dir) -> dict:
    model = run_dir / "optimize" / "model.onnx"
    cases = {"images_100": (ROOT / "calib_data" / "images", 100, 0.3)}
    for n in TENSOR_COUNTS:
        cases[f"tensors_{n}"] = (tensor_folder(run_dir, n), n, 0.0)
    results = {}
    for name, (data, num, holdout) in cases.items():
        cmd = [PYTHON, str(BENCH / "calib_worker.py"), str(model), str(data), str(num), str(holdout),
               str(WORK / "calib_cache" / name)]
        result, share = GATE.run(partial(run_json, cmd))
        trace = [mb for _, mb in result["rss_trace_mb"]]
        result["rss_trace_after_first_chunk_mb"] = [min(trace[1:], default=None), max(trace[1:], default=None)]
        results[name] = {**result, "foreign_cpu_share": share}
    return {
        "model": str(model),
        "method": "minmax",
        "chunk": 16,
        "cases": results,
    }


if __name__ == "__main__":
    import sys
    from pathlib import Path

    print(json.dumps(bench(Path(sys.argv[1])), indent=2))
