"""latency: the baseline (the final FP32 ONNX in ONNX Runtime, default session options), then every artifact that
ran (ok, or failed its gate), sequentially, each in a process of its own. It never changes a status; afterwards
the artifacts that do not pay off (slower or larger than FP32, a failed NNCF INT8 next to a passing Q/DQ one)
are named."""

from __future__ import annotations

import time
from pathlib import Path

from convertctl.model import ModelInFlight
from convertctl.report.manifest import LatencyRecord
from convertctl.stages.context import RunContext


def latency(ctx: RunContext, model: ModelInFlight) -> LatencyRecord | None:
    """The baseline's record (None when nothing was timed); each timed artifact gets its own `latency`."""
    from convertctl.evaluate.latency import BASELINE

    cfg = ctx.recipe.verify.latency
    todo = [a for a in ctx.records.artifacts if a.status in ("ok", "failed")]
    if not cfg.enabled or not todo:
        return None
    baseline = None
    try:
        batch, problem = _batch(ctx, cfg.batch)
        if problem:  # nothing can be timed with this batch: say so in every record
            for a in todo:
                a.latency = LatencyRecord(status="error", reason=problem, of=a.id, batch=batch)
            return LatencyRecord(status="error", reason=problem, of=BASELINE, batch=batch)
        specs = {spec.id: spec for spec in ctx.recipe.targets}
        common = {"samples": ctx.samples.path, "workdir": ctx.dir / "latency", "batch": batch,
                  "warmup": cfg.warmup, "runs": cfg.runs, "timeout_s": cfg.timeout_s,
                  "batch_axes": {spec.name: spec.batch_axis for spec in ctx.inputs}}
        # `_baseline` cannot be a target id (ids start with a letter or digit): no clash of file names
        baseline = _time(ctx, None, "baseline", BASELINE, name="_baseline", model=ctx.dir / Path(model.onnx).name,
                         **common)
        for a in todo:
            a.latency = _time(ctx, baseline, a.id, a.id, name=a.id, runtime=a.runtime,
                              folder=ctx.dir / "targets" / a.id, spec=specs[a.id].model_dump(mode="json"),
                              settings=a.settings, **common)
    except Exception as exc:  # a latency problem must never cost the run its result
        ctx.note(f"latency: {type(exc).__name__}: {exc}".strip()[:500])
    return baseline


def _time(ctx: RunContext, baseline, label: str, of: str, **kwargs) -> LatencyRecord:
    from convertctl.evaluate.latency import measure_latency, with_speedup

    stage = f"latency {label}"
    ctx.reporter.start(stage, f"{of}, batch {kwargs['batch']}, {kwargs['warmup']} warm-up + {kwargs['runs']} "
                              "timed runs, own process")
    t0 = time.perf_counter()
    record = with_speedup(measure_latency(of, **kwargs), baseline)
    ctx.reporter.measured(stage, record, round(time.perf_counter() - t0, 3))
    return record


def _batch(ctx: RunContext, batch: int) -> tuple[int, str | None]:
    """The batch to time (a fixed first dim wins over `verify.latency.batch`) and why it cannot fit, if so."""
    from convertctl.data.dims import fixed_batch_sizes
    from convertctl.recipe import latency_batch_problem

    inputs, dims = list(ctx.inputs), ctx.recipe.dims
    if all(spec.batch_axis is None for spec in inputs):
        return 1, None  # nothing is batched: every call gets the inputs as given
    fixed = fixed_batch_sizes(inputs, dims)
    if len(set(fixed.values())) > 1:
        return batch, f"the inputs have different fixed batch dims ({fixed}): no batch fits them all"
    if fixed and batch not in fixed.values():
        name, first = next(iter(fixed.items()))
        spec = next(s for s in inputs if s.name == name)
        what = "first dim" if spec.batch_axis == 0 else f"batch dim (axis {spec.batch_axis})"
        ctx.note(f"verify.latency.batch {batch} changed to {first}: input {name!r} has a fixed {what} of {first}")
        batch = first
    return batch, latency_batch_problem(inputs, dims, batch)


def unrewarding(ctx: RunContext, model: ModelInFlight, baseline: LatencyRecord | None) -> list[str]:
    """INT8/FP16 artifacts slower or larger than their FP32 counterpart, and a target's own INT8 that failed where
    the Q/DQ model passed."""
    from convertctl.evaluate.int8_methods import int8_method_advice
    from convertctl.evaluate.worth import worth_findings

    onnx = ctx.dir / Path(model.onnx).name
    size = sum(f.stat().st_size for f in [onnx, *onnx.parent.glob(onnx.name + ".data")] if f.is_file())
    return worth_findings(ctx.records.artifacts, baseline, size or None) + int8_method_advice(ctx.records.artifacts)
