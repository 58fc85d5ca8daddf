"""One latency measurement, in a process of its own: `python -m convertctl.evaluate.latency_worker REQUEST.json`.

The request names what to time: an artifact (its runtime, folder, target options and settings), loaded
through the target's own `open()` (the runner the verification uses, with the artifact's session.json /
runtime.json, so what is timed is what ships); or the baseline, an ONNX model in ONNX Runtime with default
session options. A fixed batch is cut from the run's verification samples (`samples.npz`), the runner is
called `warmup` times, then `runs` times, each call timed with time.perf_counter.

Writes `<name>.result.json` beside the request, or `<name>.error.json` (`{"message": one line}`) when
anything raises. Paths in the request are relative to the request's folder (the child runs there).
Heavy imports (numpy, the runtimes) happen here only.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def fixed_batch(samples: Path, batch: int, batch_axes: dict | None = None) -> dict:
    """The first `batch` samples of every input (cycled when there are fewer), contiguous, cut along each input's
    batch axis (`batch_axes`: input -> axis, None = not batched, fed as stored; default axis 0)."""
    import numpy as np

    with np.load(samples) as data:
        feeds = {name: data[name] for name in data.files}
    if not feeds:
        raise ValueError(f"{samples} holds no arrays")
    axes = batch_axes or {}
    out = {}
    for name, array in feeds.items():
        axis = axes.get(name, 0)
        if axis is None or array.ndim <= axis:
            out[name] = np.asarray(array, order="C")  # ascontiguousarray makes a scalar 1-D
            continue
        if array.shape[axis] == 0:
            raise ValueError(f"{samples}: input {name!r} has no samples")
        rows = np.arange(batch) % array.shape[axis]
        out[name] = np.asarray(np.take(array, rows, axis=axis), order="C")
    return out


def _threads(effective: dict) -> int | None:
    """The thread count the runtime reported after loading (`intra_op_num_threads`, `num_threads`, ...)."""
    for key, value in effective.items():
        if key.endswith("num_threads") and isinstance(value, int):
            return value
    return None


def load(request: dict):
    """(run, threads) for what the request names."""
    if request.get("model"):  # the baseline: an ONNX model, ONNX Runtime with default session options
        from convertctl.onnx_session import run_session, session

        sess = session(Path(request["model"]))
        return (lambda feeds: run_session(sess, feeds)), sess.get_session_options().intra_op_num_threads
    from convertctl.targets import registry

    target = registry.get(request["runtime"])
    spec = target.options_model.model_validate(request["spec"])
    runner = target.open(Path(request["folder"]), spec, request.get("settings") or {})
    return runner.run, _threads(runner.effective)


def measure(request: dict) -> dict:
    import numpy as np

    batch, warmup, runs = int(request["batch"]), int(request["warmup"]), int(request["runs"])
    feeds = fixed_batch(Path(request["samples"]), batch, request.get("batch_axes"))
    t0 = time.perf_counter()
    run, threads = load(request)
    load_s = time.perf_counter() - t0
    for _ in range(warmup):
        run(feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - t) * 1000.0)
    ms = np.asarray(times, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    return {
        "batch": batch,
        "warmup": warmup,
        "runs": runs,
        "threads": threads,
        "load_s": round(load_s, 3),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "mean_ms": mean,
        "min_ms": float(ms.min()),
        "times_ms": [round(t, 5) for t in times],
    }


def _one_line(exc: BaseException) -> str:
    from convertctl.errors import ConvertctlError
    from convertctl.frontends.worker import first_line

    if isinstance(exc, ConvertctlError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return first_line(exc)


def main() -> None:
    req_path = Path(sys.argv[1])
    stem = req_path.name.removesuffix(".request.json")
    try:
        result = measure(json.loads(req_path.read_text()))
    except Exception as exc:  # every failure becomes one line in the parent's record
        traceback.print_exc()
        (req_path.parent / f"{stem}.error.json").write_text(json.dumps({"message": _one_line(exc)}, indent=2))
        sys.exit(3)
    (req_path.parent / f"{stem}.result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
