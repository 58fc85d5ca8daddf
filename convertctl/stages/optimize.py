"""optimize: the recipe's simplifier as a guarded pass (passes/guard.py): kept only when its outputs still match
the model in flight; otherwise rolled back, and the model in flight stays what it was."""

from __future__ import annotations

import dataclasses
import time

from convertctl.model import ModelInFlight
from convertctl.report.manifest import StageRecord
from convertctl.stages.cache import Stage
from convertctl.stages.context import RunContext
from convertctl.stages.keys import data_key, model_sha, sections


def stage(ctx: RunContext, model: ModelInFlight) -> Stage:
    return Stage("optimize", lambda: key(ctx, model), lambda: optimize(ctx, model), ("optimize",), ModelInFlight)


def key(ctx: RunContext, model: ModelInFlight) -> dict:
    # the model in flight's reference and label are carried over unchanged: its file's hash says it all
    return {"onnx": model_sha(model.onnx), **sections(ctx, "optimize"), **data_key(ctx)}


def optimize(ctx: RunContext, model: ModelInFlight) -> tuple[ModelInFlight, list[StageRecord]]:
    from functools import partial

    from convertctl.passes.guard import guarded_pass
    from convertctl.passes.simplify import simplify

    tool = ctx.recipe.optimize.simplifier
    if tool == "none":
        return model, [StageRecord(name="optimize", status="skipped", seconds=0.0,
                                   findings=["optimize.simplifier is 'none'"])]
    ctx.reporter.start("optimize", tool)
    t0 = time.perf_counter()
    dst = ctx.dir / "optimize" / "model.onnx"
    dst.parent.mkdir()
    result = guarded_pass(tool, partial(simplify, tool=tool), model.onnx, dst, ctx.samples.feeds,
                          list(model.output_names), ctx.tolerance("fp32"), before=list(model.outputs),
                          chunk=ctx.samples.chunk)
    findings = result.findings
    if result.status == "ok":
        findings = [f"{tool}: {result.details['nodes_before']} -> {result.details['nodes_after']} nodes"]
    record = StageRecord(
        name="optimize", status=result.status, seconds=round(time.perf_counter() - t0, 3),
        inputs=ctx.files([model.onnx]), outputs=ctx.files(sorted(dst.parent.iterdir())), findings=findings,
        details=result.details, verification=result.verification)
    after = dataclasses.replace(model, onnx=result.model, outputs=tuple(result.outputs),
                                label="optimized" if result.status == "ok" else model.label)
    return after, [record]
