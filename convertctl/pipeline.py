"""The one place that orders the stages: export -> check -> optimize -> quantize -> build (+ verify) -> latency ->
manifest. Each stage is a plain function in convertctl/stages/ that takes the run's context and the model in
flight and returns its output and records; the stage cache (stages/cache.py) wraps any of them.

Before anything is written, the preflight checks every path the run needs and resolves the inputs and dims
(exit 2 on bad input). The stages' files land in the staging folder; the manifest is written last and the folder
is renamed into place only then (report/outdir.py). Reports are rendered from the manifest alone.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path

from convertctl.errors import ConvertctlError
from convertctl.report.manifest import ArtifactRecord, LatencyRecord, Manifest, StageRecord
from convertctl.report.outdir import OutputFolder


class Reporter:
    """Receives progress; the CLI renders it. The base class is silent (API use, tests)."""

    def start(self, stage: str, detail: str = "") -> None: ...

    def finish(self, record: StageRecord | ArtifactRecord) -> None: ...

    def measured(self, stage: str, record: LatencyRecord, seconds: float) -> None:
        """One latency measurement ended; `stage` is the name it was started with (`latency <what>`)."""


def run(recipe, recipe_sha: str, recipe_path: Path | None = None, output: Path | None = None, reporter=None
        ) -> Manifest:
    """Run `recipe` into `output` (default: the recipe's `output`, else out/NAME); the manifest it wrote."""
    from convertctl import supervisor
    from convertctl.processes import Interrupted
    from convertctl.stages.manifest import now

    started, t0 = now(), time.perf_counter()
    reporter = supervisor.Breadcrumbs(reporter or Reporter())  # each stage noted: a native crash names it
    resolved = _preflight(recipe, reporter)
    out = OutputFolder(output or recipe.output or Path("out") / recipe.name)
    folder = out.open(protected=_read_paths(recipe, recipe_path))
    supervisor.note(stage="start", staging=out.staging, output=out.final, protected=out.protected)
    try:
        manifest = _run(recipe, recipe_sha, recipe_path, folder, reporter, resolved, started, t0)
    except Interrupted:
        out.discard()  # the user stopped it: nothing to debug, nothing left behind
        raise
    except BaseException as exc:
        summary = exc.message if isinstance(exc, ConvertctlError) else f"{type(exc).__name__}: {exc}"
        where = out.abandon(summary + "\n\n" + traceback.format_exc())
        if isinstance(exc, ConvertctlError) and where is not None:
            # the staging folder is gone: point every path at the kept partial folder
            exc.message = exc.message.replace(str(out.staging), str(where))
            hint = (exc.hint or "").replace(str(out.staging), str(where))
            exc.hint = (hint + "; " if hint else "") + f"partial output kept in {where}"
        raise
    out.commit()
    from convertctl.ci.step_summary import append_step_summary

    append_step_summary(out.final / "summary.md")  # a CI job page, when GITHUB_STEP_SUMMARY is set
    return manifest


def _run(recipe, recipe_sha, recipe_path, folder: Path, reporter, resolved, started: str, t0: float) -> Manifest:
    """The stages, in order, over a context made once: the recipe with its inputs and dims resolved, the samples."""
    from convertctl.processes import raise_if_interrupted as checkpoint
    from convertctl.stages import build, check, export, optimize, quantize
    from convertctl.stages.cache import open_cache, run_stage
    from convertctl.stages.context import Records, RunContext
    from convertctl.stages.inputs import resolve_inputs
    from convertctl.stages.latency import latency, unrewarding
    from convertctl.stages.manifest import write_manifest
    from convertctl.stages.samples import make_samples

    recipe, inputs, notes = resolved or resolve_inputs(recipe, reporter, folder / "export")
    records = Records(messages=list(notes))
    cache = open_cache(records.messages)
    samples, notes = make_samples(recipe, inputs, folder)
    records.messages.extend(notes)
    ctx = RunContext(recipe=recipe, recipe_sha=recipe_sha, recipe_path=recipe_path, dir=folder, inputs=inputs,
                     samples=samples, reporter=reporter, records=records, versions=cache.versions, cache=cache)
    stages = recipe.stages
    checkpoint()
    model = run_stage(ctx, export.stage(ctx))
    exported = next(s for s in records.stages if s.name == "export")
    if exported.status == "failed":  # everything after depends on it: stop, but keep the record
        ctx.note("the exported ONNX does not match the source model: " + "; ".join(exported.verification[0].failures))
        return write_manifest(ctx, started, t0, None, gate_failed=True)
    unsupported: dict[str, str] = {}
    if "check" in stages:
        checkpoint()
        unsupported = run_stage(ctx, check.stage(ctx, model)).unsupported
        if unsupported and recipe.check.fail_fast:
            return _stopped_after_check(ctx, unsupported, started, t0)
    if "optimize" in stages:
        checkpoint()
        model = run_stage(ctx, optimize.stage(ctx, model))
    if "build" in stages:
        checkpoint()
        emissions = run_stage(ctx, quantize.stage(ctx, model, unsupported))
    _write_onnx_result(ctx, model)
    baseline = None
    if "build" in stages:
        for spec in recipe.targets:
            checkpoint()
            run_stage(ctx, build.stage(ctx, model, spec, unsupported, emissions))
        baseline = latency(ctx, model)
        ctx.note(*unrewarding(ctx, model, baseline))
    checkpoint()
    return write_manifest(ctx, started, t0, baseline)


def _stopped_after_check(ctx, unsupported: dict[str, str], started: str, t0: float) -> Manifest:
    """check.fail_fast: no target is built; each record says why."""
    from convertctl.stages.manifest import write_manifest

    for spec in ctx.recipe.targets:
        record = ArtifactRecord(id=spec.id, runtime=spec.runtime, precision=spec.precision, status="skipped",
                                reason="not built: check.fail_fast stopped the run after the check")
        if spec.runtime in unsupported:
            record.status, record.reason = "error", unsupported[spec.runtime]
        ctx.add(record)
    ctx.note("check.fail_fast: the run stopped after the check: " + "; ".join(unsupported.values()))
    return write_manifest(ctx, started, t0, None, unsupported=True)


def _preflight(recipe, reporter):
    """Cheap checks of every path the run needs, before anything is written. Returns the resolved (recipe, inputs,
    notes) when the inputs are known without a child process (an ONNX source, or a recipe that lists them)."""
    from convertctl.errors import UsageError
    from convertctl.frontends.registry import get
    from convertctl.stages.inputs import needs_signature, onnx_inputs, resolve_inputs

    src = recipe.source
    frontend = get(src.framework)
    frontend.preflight(recipe)  # a wrong folder, a missing weights file, a missing framework
    if "build" in recipe.stages:
        from convertctl.stages.build import usage_problems

        usage_problems(recipe)  # e.g. a converter that takes another framework's models
    if frontend.passthrough and "build" in recipe.stages:  # an ONNX source: its precisions can be judged now
        from convertctl.quantize.preflight import check_quantizable

        check_quantizable(src.path, {t.precision for t in recipe.targets})
    images = recipe.samples.images
    if images is not None and not images.is_dir():
        raise UsageError(f"image folder not found: {images}", hint="run `make data`, or fix samples.images")
    if needs_signature(recipe):
        return None  # read by a child process, into the output folder
    onnx_io = None
    if frontend.passthrough:
        try:
            onnx_io = onnx_inputs(src.path)
        except ConvertctlError:
            return None  # reading the inputs says what is wrong with the model, with the partial output kept
    if frontend.passthrough or recipe.inputs:  # dims without a size stop the run before anything is written
        return resolve_inputs(recipe, reporter, onnx_io=onnx_io)
    return None


def _read_paths(recipe, recipe_path: Path | None) -> list[Path]:
    """What this run reads, which its output folder may not be or contain: the model and its folder (the factory
    file and its folder), the data folders, the recipe's folder and the current directory."""
    from convertctl.frontends.registry import get

    paths = [Path.cwd(), *get(recipe.source.framework).read_paths(recipe), recipe.samples.images]
    if recipe.calibration is not None:
        paths += [recipe.calibration.data, recipe.calibration.labels]
    if recipe_path is not None:
        paths.append(Path(recipe_path).absolute().parent)
    return [p for p in paths if isinstance(p, Path)]


def _write_onnx_result(ctx, model) -> None:
    """The final ONNX (after optimize) as `model.onnx` at the top of the output folder."""
    from convertctl.model import copy_model

    copy_model(model.onnx, ctx.dir, Path(model.onnx).name)  # keeps external data in its sub-folders


def load_manifest(path: Path) -> Manifest:
    return Manifest.model_validate(json.loads(Path(path).read_text()))
