"""One calibration in its own process: time and memory of convertctl's calibration over one data set.

    python benchmarks/calib_worker.py MODEL.onnx DATA NUM_SAMPLES HOLDOUT CACHE_DIR

Builds convertctl.quantize.calib_data.CalibrationData over DATA with the demo recipe's inputs, dims and
preprocessing (construction reads every file once: hash and checks), then runs
convertctl.quantize.table.calibrate (minmax, a fresh cache, so nothing is reused). Peak RSS is read per
phase (VmHWM, reset between phases through /proc/self/clear_refs) and RSS is sampled every 16 samples
during calibration, to show whether memory grows with the number of samples. Prints one JSON line.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from common import RECIPE


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(model: Path, data: Path, num_samples: int, holdout: float, cache: Path) -> dict:
    import numpy as np  # noqa: F401  (imports first: the baseline includes the libraries)
    import onnxruntime  # noqa: F401
    import onnxruntime.quantization.calibrate  # noqa: F401

    from convertctl.quantize.calib_data import CalibrationData
    from convertctl.quantize.spec import CalibrationSpec
    from convertctl.quantize.table import calibrate
    from convertctl.recipe import load_recipe

    recipe, _ = load_recipe(RECIPE)
    spec = CalibrationSpec(data=data, num_samples=num_samples, holdout=holdout, seed=0, method="minmax")
    shutil.rmtree(cache, ignore_errors=True)
    out = {"rss_after_imports_mb": _status_mb("VmRSS")}
    peak_reset = _reset_peak()

    t0 = time.perf_counter()
    calib = CalibrationData(spec, recipe.inputs, recipe.dims, recipe.samples.preprocess)
    out["scan_s"] = round(time.perf_counter() - t0, 3)
    out["scan_peak_rss_mb"] = _status_mb("VmHWM")
    out["rss_after_scan_mb"] = _status_mb("VmRSS")
    _reset_peak()

    trace = []

    def samples():
        for i, s in enumerate(calib.calibration()):
            if i % 16 == 0:
                trace.append((i, _status_mb("VmRSS")))
            yield s.feeds

    t0 = time.perf_counter()
    table = calibrate(model, samples, calib.sha256, "minmax", 99.999, cache, "bench")
    out["calibrate_s"] = round(time.perf_counter() - t0, 3)
    out["calibrate_peak_rss_mb"] = _status_mb("VmHWM")
    out["rss_after_calibrate_mb"] = _status_mb("VmRSS")
    import resource

    return {
        "data": str(data),
        "kind": calib.kind,
        "num_calibration": calib.num_calibration,
        "num_evaluation": calib.num_evaluation,
        "samples_calibrated": table.meta["num_samples"],
        "tensors": table.meta["tensors"],
        "reused": table.reused,
        **out,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_reset_per_phase": peak_reset,
        "rss_trace_mb": trace,  # (samples fed so far, RSS) every 16 samples
        "notes": calib.notes,
    }


if __name__ == "__main__":
    m, d, n, h, c = sys.argv[1:6]
    print(json.dumps(main(Path(m), Path(d), int(n), float(h), Path(c))))
