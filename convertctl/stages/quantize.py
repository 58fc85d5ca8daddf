"""quantize: calibrate once and emit every ONNX form the buildable targets start from (quantize/stage.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convertctl.model import ModelInFlight
from convertctl.report.manifest import StageRecord
from convertctl.stages.cache import Stage
from convertctl.stages.context import RunContext
from convertctl.stages.keys import data_key, model_sha, sections


@dataclass(frozen=True)
class Emissions:
    paths: dict[str, Path]  # emission ("fp32", "qdq_u8s8", "fp16", ...) -> its ONNX in the output folder
    errors: dict[str, str]  # emission -> why it could not be made (the targets built from it are errors)


def stage(ctx: RunContext, model: ModelInFlight, unsupported: dict[str, str]) -> Stage:
    return Stage("quantize", lambda: key(ctx, model, unsupported), lambda: quantize(ctx, model, unsupported),
                 ("quantize",), Emissions)


def buildable(ctx: RunContext, unsupported: dict[str, str]) -> list:
    return [t for t in ctx.recipe.targets if t.runtime not in unsupported]


def key(ctx: RunContext, model: ModelInFlight, unsupported: dict[str, str]) -> dict:
    from convertctl.quantize.stage import quantize_cpu_key

    calib = ctx.recipe.model_dump(mode="json").get("calibration") or {}
    for part in ("data", "cache"):
        calib.pop(part, None)  # the data's content is in its hash
    data = ctx.samples.calib.sha256 if ctx.samples.calib else None
    return {"onnx": model_sha(model.onnx), "calibration": calib, "data": data,
            "targets": [t.model_dump(mode="json") for t in buildable(ctx, unsupported)],
            **sections(ctx, "quantize"), **data_key(ctx), **quantize_cpu_key()}


def quantize(ctx: RunContext, model: ModelInFlight, unsupported: dict[str, str]
             ) -> tuple[Emissions, list[StageRecord]]:
    from convertctl.paths import default_cache_dir
    from convertctl.quantize.preflight import check_quantizable
    from convertctl.quantize.stage import run_quantize
    from convertctl.targets import registry

    targets = buildable(ctx, unsupported)
    check_quantizable(model.onnx, {t.precision for t in targets})
    needed = {registry.get(t.runtime).emission(t) for t in targets}
    if not needed - {"fp32"}:
        return Emissions({"fp32": model.onnx}, {}), []
    ctx.reporter.start("quantize", ", ".join(sorted(needed - {"fp32"})))
    calibration = ctx.recipe.calibration
    cache = calibration.cache if calibration and calibration.cache else default_cache_dir() / "calibration"
    result = run_quantize(model.onnx, needed, ctx.samples.calib, ctx.recipe, ctx.dir / "quantize", cache,
                          ctx.samples.feeds, list(model.output_names), list(model.outputs), ctx.samples.chunk)
    record = StageRecord(name="quantize", status="error" if result.failed else "ok", seconds=result.seconds,
                         inputs=ctx.files([model.onnx]), outputs=ctx.files(result.outputs), findings=result.findings,
                         details=result.details, verification=result.verification)
    return Emissions(dict(result.emissions), dict(result.failed)), [record]
