"""export: the source model to ONNX through its framework's front end (frontends/), verified against the framework's
own outputs in ONNX Runtime. Its output is the first model in flight."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from convertctl.model import ModelInFlight
from convertctl.report.manifest import StageRecord
from convertctl.stages.cache import Stage
from convertctl.stages.context import RunContext
from convertctl.stages.keys import data_key, sections


def stage(ctx: RunContext) -> Stage:
    return Stage("export", lambda: key(ctx), lambda: export(ctx), ("export",), ModelInFlight)


def source_files(ctx: RunContext) -> list[Path]:
    """The files the source model is made of, hashed into the export stage's inputs and key."""
    from convertctl.frontends.registry import get

    return get(ctx.recipe.source.framework).source_files(ctx.recipe)


def key(ctx: RunContext) -> dict:
    src = ctx.recipe.model_dump(mode="json")["source"]
    src.pop("path", None)  # where the model is does not matter, its bytes do
    factory = src.get("factory") or ""
    if factory.rpartition(":")[0].endswith(".py"):
        src["factory"] = Path(factory.rpartition(":")[0]).name + ":" + factory.rpartition(":")[2]
    files = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in source_files(ctx) if Path(f).is_file())
    return {"source": src, "files": files, **sections(ctx, "inputs", "dims", "export"), **data_key(ctx)}


def export(ctx: RunContext) -> tuple[ModelInFlight, list[StageRecord]]:
    from convertctl.evaluate.compare import compare
    from convertctl.frontends.interpreters import onnx_pin_problem
    from convertctl.frontends.registry import get
    from convertctl.model import companion_files, describe
    from convertctl.onnx_session import run_session, session

    recipe, samples = ctx.recipe, ctx.samples
    ctx.reporter.start("export", f"{recipe.source.framework} -> ONNX")
    t0 = time.perf_counter()
    work = ctx.dir / "export"
    work.mkdir(exist_ok=True)  # a Paddle/TF model's inputs may have been read into it already
    result = get(recipe.source.framework).export(recipe, samples.path, work, samples.chunk)
    ctx.note(*result.warnings)
    output_names = tuple(o.name for o in describe(result.onnx).outputs)
    verification, status = [], "ok"
    outputs = result.reference  # ONNX Runtime's outputs of the model in flight: the parity baseline of every later step
    if result.verify_export:
        outputs = run_session(session(result.onnx), samples.feeds, samples.chunk)
        cmp = compare(result.reference_name, list(output_names), result.reference, outputs, ctx.tolerance("fp32"))
        verification.append(cmp)
        if cmp.passed is False:
            status = "failed"
    pinned = onnx_pin_problem()
    if pinned:  # loud, never silent: the whole tool would run on the older onnx
        ctx.note(pinned)
    record = StageRecord(
        name="export", status=status, seconds=round(time.perf_counter() - t0, 3),
        inputs=ctx.files(source_files(ctx)), outputs=ctx.files(companion_files(result.onnx) + result.logs),
        findings=result.findings, details=result.details, verification=verification)
    model = ModelInFlight(onnx=result.onnx, label="exported", outputs=tuple(outputs), output_names=output_names,
                          reference=tuple(result.reference), reference_name=result.reference_name)
    return model, [record]
