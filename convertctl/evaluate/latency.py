"""Latency of one artifact, measured in a child process of its own (convertctl/evaluate/latency_worker.py).

Why a child per measurement: runtimes in one process skew each other (thread pools, caches, allocator
state), and a runtime that crashes natively or hangs must not take the run with it. The child gets a
JSON request and writes a result (or a one-line error) beside it; its stdout/stderr go to a log file.
Nothing here raises: a crash, a timeout or an error becomes a `LatencyRecord` with status "error" and a
one-line reason; a runtime that is not installed gives status "skipped".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from convertctl import processes
from convertctl.errors import install_hint
from convertctl.frontends.child import exit_description
from convertctl.report.manifest import LatencyRecord

BASELINE = "onnx fp32 (onnxruntime)"  # `of` of the baseline measurement: the final FP32 ONNX, ONNX Runtime defaults
WORKER = "convertctl.evaluate.latency_worker"


def _rel(path: Path, start: Path) -> str:
    """`path` relative to `start` (the child's folder), so the request stays true when the output folder moves."""
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _shown(log: Path) -> str:
    """The log as the user finds it: `latency/<name>.log` (relative to the output folder)."""
    return f"{log.parent.name}/{log.name}"


def measure_latency(
    of: str,
    *,
    samples: Path,
    workdir: Path,
    name: str | None = None,
    runtime: str = "onnxruntime",
    folder: Path | None = None,
    spec: dict | None = None,
    settings: dict | None = None,
    model: Path | None = None,
    batch: int = 1,
    warmup: int = 10,
    runs: int = 50,
    timeout_s: float = 120.0,
    batch_axes: dict[str, int | None] | None = None,
) -> LatencyRecord:
    """Time one thing in a child process and return its record; never raises for a failed measurement.

    Either an artifact (`runtime`, its `folder`, its target options `spec` as a dict and its `settings`),
    loaded through the target's `open()`; or, with `model`, that ONNX file in ONNX Runtime with default
    session options (the baseline). `samples` is the run's samples.npz; the first `batch` samples (cycled
    if fewer) are fed `warmup` times, then `runs` timed times. Request, result and log files go to
    `workdir` as `<name>.request.json`, `<name>.result.json` / `<name>.error.json`, `<name>.log`.
    The batch is cut along each input's batch axis (`batch_axes`: input -> axis, None = fed as given; default 0).
    """
    from convertctl.targets import registry

    record = LatencyRecord(status="error", of=of, batch=batch)
    runtime = "onnxruntime" if model is not None else runtime
    try:
        target = registry.get(runtime)
    except Exception as exc:  # an unknown runtime name: a record, not an exception
        record.reason = getattr(exc, "message", None) or str(exc)
        return record
    if not target.installed():
        record.status = "skipped"
        record.reason = f"skipped: {target.name} not installed ({install_hint(target.extra)})"
        return record

    name = name or of
    workdir = Path(workdir)
    request = {"of": of, "samples": _rel(samples, workdir), "batch": batch, "warmup": warmup, "runs": runs}
    if batch_axes and any(axis != 0 for axis in batch_axes.values()):
        request["batch_axes"] = batch_axes
    if model is not None:
        request["model"] = _rel(model, workdir)
    else:
        request.update(runtime=runtime, folder=_rel(folder, workdir), spec=spec or {"runtime": runtime},
                       settings=settings or {})
    req = workdir / f"{name}.request.json"
    result_path, error_path, log = (workdir / f"{name}.result.json", workdir / f"{name}.error.json",
                                    workdir / f"{name}.log")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        for p in (result_path, error_path):
            p.unlink(missing_ok=True)
        req.write_text(json.dumps(request, indent=2))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            proc = processes.run([sys.executable, "-m", WORKER, req.name], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=workdir, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        record.reason = f"timed out after {timeout_s:g} s (verify.latency.timeout_s); log: {_shown(log)}"
        return record
    except OSError as exc:
        record.reason = f"could not start the latency process: {exc}"
        return record

    if error_path.exists():
        try:
            message = json.loads(error_path.read_text())["message"]
        except (OSError, ValueError, KeyError):
            message = "the latency process failed"
        record.reason = " ".join(str(message).split())[:500]
        return record
    if proc.returncode != 0 or not result_path.exists():
        how = exit_description(proc.returncode)
        last = _last_line(log)
        record.reason = f"the latency process {how} without a result" + (f": {last}" if last else "") + \
            f" (log: {_shown(log)})"
        return record
    try:
        res = json.loads(result_path.read_text())
        p50 = round(res["p50_ms"], 4)
        mean = round(res["mean_ms"], 4)
        return LatencyRecord(
            status="measured", of=of, batch=res["batch"], threads=res["threads"], warmup=res["warmup"],
            runs=res["runs"], p50_ms=p50, p90_ms=round(res["p90_ms"], 4), p99_ms=round(res["p99_ms"], 4),
            mean_ms=mean, min_ms=round(res["min_ms"], 4),
            throughput_per_s=round(res["batch"] * 1000.0 / mean, 3) if mean > 0 else None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        record.reason = f"unreadable latency result {result_path.name}: {exc}"
        return record


def with_speedup(record: LatencyRecord, baseline: LatencyRecord | None) -> LatencyRecord:
    """Set `speedup` (baseline p50 / this p50) and `baseline` (its `of`) when both were measured."""
    if (baseline is not None and record.status == "measured" and baseline.status == "measured" and record.p50_ms
            and baseline.p50_ms):
        record.speedup = round(baseline.p50_ms / record.p50_ms, 3)
        record.baseline = baseline.of
    return record
