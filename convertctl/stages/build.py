"""build: one target's artifact from its emission, loaded back from disk and verified against the source model under
its precision's gate. A runtime that is not installed leaves its kit (stages/kit.py) or a skipped record; a
runtime the check refused, an emission that could not be made, or a native crash of an earlier attempt make the
artifact an error without a build."""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from pathlib import Path

from convertctl.errors import ConvertctlError
from convertctl.model import ModelInFlight
from convertctl.report.manifest import ArtifactRecord
from convertctl.stages.cache import Stage
from convertctl.stages.context import RunContext
from convertctl.stages.keys import arrays_sha, data_key, model_sha, sections
from convertctl.stages.quantize import Emissions


def stage(ctx: RunContext, model: ModelInFlight, spec, unsupported: dict[str, str], emissions: Emissions) -> Stage:
    return Stage(f"build/{spec.id}", lambda: key(ctx, model, spec, unsupported, emissions),
                 lambda: (None, [build(ctx, model, spec, unsupported, emissions)]), (f"targets/{spec.id}",))


def key(ctx: RunContext, model: ModelInFlight, spec, unsupported: dict[str, str], emissions: Emissions) -> dict:
    from convertctl.quantize.stage import quantize_cpu_key
    from convertctl.targets import registry

    target = registry.get(spec.runtime)
    emission = emissions.paths.get(target.emission(spec))
    calib = ctx.samples.calib
    # a target that builds where it cannot run: whether it runs here decides the record (skipped or verified)
    runs_here = {"runs_here": target.can_run(spec)} if target.can_run is not None and target.installed() else {}
    # a kit test-built by a sibling builder (stages/kit.py): which one, and its version, decide the record
    testers = {t.name: t.version() for t in registry.all_targets() if spec.runtime in t.test_builds_kits_of}
    kit_test = {"kit_testers": testers} if testers and not target.installed() else {}
    # a target that may convert the source itself: its bytes decide the artifact, not only the ONNX's
    source = {"source": _source_key(ctx)} if target.reads_source else {}
    return {"target": spec.model_dump(mode="json"), "emission": model_sha(emission) if emission else None,
            "unsupported": unsupported.get(spec.runtime), "reference": arrays_sha(model.reference),
            "calibration": calib.sha256 if calib else None, **sections(ctx, "quantize", "dims"), **data_key(ctx),
            **(quantize_cpu_key() if spec.precision == "int8" else {}), **runs_here, **kit_test, **source}


def _source_key(ctx: RunContext) -> dict:
    """The source's framework and its files' hashes (where the model lives does not matter, its bytes do)."""
    from convertctl.stages.export import source_files

    files = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in source_files(ctx) if Path(f).is_file())
    return {"framework": ctx.recipe.source.framework, "files": files}


def build(ctx: RunContext, model: ModelInFlight, spec, unsupported: dict[str, str], emissions: Emissions
          ) -> ArtifactRecord:
    from convertctl.supervisor import crashed_targets
    from convertctl.targets import registry

    target = registry.get(spec.runtime)
    record = ArtifactRecord(id=spec.id, runtime=spec.runtime, precision=spec.precision, status="ok")
    if spec.runtime in unsupported:  # the check found an operator this runtime cannot convert or run
        record.status, record.reason = "error", unsupported[spec.runtime]
        return record
    folder = ctx.dir / "targets" / spec.id
    record.built_from = target.emission(spec)
    if record.built_from in emissions.errors:  # e.g. INT8 of a model whose layers all sit inside an If
        record.status = "error"
        record.reason = f"not built: its {record.built_from} model could not be made: " + \
            emissions.errors[record.built_from]
        return record
    crash = crashed_targets().get(spec.id)
    if crash:  # an earlier attempt of this command died natively in this target (supervisor.py)
        record.status, record.reason = "error", crash + target.crash_hint
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ERROR.txt").write_text(record.reason + "\n")
        record.files = ctx.files([folder / "ERROR.txt"])
        return record
    tolerance = ctx.tolerance(spec.precision, spec.tolerance)
    build_context = context_for(ctx, tolerance)
    if not target.installed():
        from convertctl.stages.kit import not_installed

        return not_installed(ctx, model, target, spec, record, folder, build_context, emissions)
    ctx.reporter.start(f"build {spec.id}", target.summary)
    t0 = time.perf_counter()
    try:
        built = target.build(emissions.paths[record.built_from], spec, folder, build_context)
        record.settings = built.settings
        record.files = ctx.files(folder / f for f in built.files)
        why_not = target.can_run(spec) if target.can_run is not None else None
        if why_not:  # built, but nothing here can load it: never "ok"; a reduced-precision ONNX still meets its gate
            from convertctl.stages.kit import judge_emission

            record.status, record.reason = "skipped", f"built; not run: {why_not}"
            if record.built_from != "fp32":
                judge_emission(ctx, model, record, spec, emissions.paths[record.built_from], "engine",
                               "built, not run")
        else:
            runner = target.open(folder, spec, built.settings)  # load back from disk: verify what ships
            record.effective = runner.effective
            _verify(ctx, model, record, runner, tolerance)
    except ConvertctlError as exc:
        # paths inside the output folder relative to it: the staging folder they point into is renamed at the end
        reason = exc.message + (f" ({exc.hint})" if exc.hint else "")
        record.status, record.reason = "error", reason.replace(f"{ctx.dir}{os.sep}", "")
    except Exception as exc:  # one target's failure must not hide the others' results
        record.status, record.reason = "error", f"{type(exc).__name__}: {exc}".strip()[:500]
        ctx.note(f"{spec.id}: " + traceback.format_exc(limit=3).strip().splitlines()[-1])
    record.seconds = round(time.perf_counter() - t0, 3)
    return record


def _verify(ctx: RunContext, model: ModelInFlight, record: ArtifactRecord, runner, tolerance) -> None:
    """The artifact's outputs on the samples against the source model (the gate) and the model in flight."""
    from convertctl.data.batching import run_in_chunks
    from convertctl.evaluate.accuracy import accuracy_record
    from convertctl.evaluate.compare import compare

    names, reference = list(model.output_names), list(model.reference)
    actual = run_in_chunks(runner.run, ctx.samples.feeds, ctx.samples.chunk)
    gate = compare(model.reference_name, names, reference, actual, tolerance)
    record.accuracy, failures = accuracy_record(reference, actual, ctx.samples.labels, tolerance)
    if failures:
        gate.failures += failures
        gate.passed = False
    record.verification = [gate, compare(f"onnx ({model.label})", names, list(model.outputs), actual)]
    if gate.passed is False:
        record.status = "failed"
        record.reason = "accuracy gate failed: " + "; ".join(gate.failures)


def context_for(ctx: RunContext, tolerance):
    """What a target's build may need beyond its ONNX (targets/base.BuildContext)."""
    from convertctl.paths import default_cache_dir
    from convertctl.recipe import explicit_dim_ranges
    from convertctl.targets.base import BuildContext

    recipe, calib = ctx.recipe, ctx.samples.calib
    return BuildContext(
        calibration=(lambda: (s.feeds for s in calib.calibration())) if calib else None,
        num_calibration=calib.num_calibration if calib else 0,
        exclude_ops=recipe.quantize.exclude_ops, exclude_nodes=recipe.quantize.exclude_nodes,
        inputs=list(ctx.inputs), dims={n: (r.min, r.opt if r.opt is not None else r.min, r.max)
                                       for n, r in recipe.dims.items()},
        explicit_dims=set(explicit_dim_ranges(recipe)), tolerance=tolerance.model_dump(exclude_none=True),
        cache_dir=default_cache_dir(), name=recipe.name, **source_fields(recipe))


def source_fields(recipe) -> dict:
    """The BuildContext fields that describe the run's source (for a target that may convert it itself)."""
    src = recipe.source
    return {"source_framework": src.framework, "source_path": src.path.resolve() if src.path is not None else None,
            "source_factory": src.factory, "source_factory_args": dict(src.factory_args)}


def usage_problems(recipe) -> None:
    """A target whose options cannot work on this source (Target.usage_problem): the recipe's error, exit 2, said
    before anything is built or written."""
    from convertctl.errors import UsageError
    from convertctl.targets import registry
    from convertctl.targets.base import BuildContext

    ctx = BuildContext(name=recipe.name, **source_fields(recipe))
    for spec in recipe.targets:
        target = registry.get(spec.runtime)
        problem = target.usage_problem(spec, ctx) if target.usage_problem is not None else None
        if problem:
            raise UsageError(problem)
