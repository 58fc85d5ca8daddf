"""A target whose runtime is not installed: status "skipped", never success. A target with a kit leaves it, so the
build can be done where the runtime is; a kit that cannot be made (bad Q/DQ, a dim without a range) is an error,
and a kit's reduced-precision ONNX is judged by the precision's gate in ONNX Runtime."""

from __future__ import annotations

import time
from pathlib import Path

from convertctl.errors import ConvertctlError, install_hint
from convertctl.model import ModelInFlight
from convertctl.report.manifest import ArtifactRecord
from convertctl.stages.context import RunContext


def not_installed(ctx: RunContext, model: ModelInFlight, target, spec, record: ArtifactRecord, folder: Path,
                  build_context, emissions) -> ArtifactRecord:
    record.status = "skipped"
    record.reason = f"skipped: {target.name} not installed ({install_hint(target.extra)})"
    if target.kit is None:
        return record
    ctx.reporter.start(f"kit {record.id}", f"{target.name} not installed: writing the build kit")
    t0 = time.perf_counter()
    try:
        built = target.kit(emissions.paths[record.built_from], spec, folder, build_context)
        record.settings = built.settings
        files = list(built.files)
        if target.kit_note is not None:
            record.reason += target.kit_note(record.id, built.settings)
        files += test_build(ctx, target, spec, record, folder)
        record.files = ctx.files(folder / f for f in files)
        if record.built_from != "fp32":
            judge_emission(ctx, model, record, spec, emissions.paths[record.built_from], "kit", "no engine built")
    except ConvertctlError as exc:
        record.status, record.reason = "error", exc.message + (f" ({exc.hint})" if exc.hint else "")
    record.seconds = round(time.perf_counter() - t0, 3)
    return record


def test_build(ctx: RunContext, target, spec, record: ArtifactRecord, folder: Path) -> list[Path]:
    """Where a sibling builder is installed (Target.test_builds_kits_of), the kit is parsed and built with it and the
    result recorded (settings["test_build"], the reason); a kit it cannot build makes the artifact an error, so it
    never looks fine. Returns the files the trial wrote into the kit folder."""
    from convertctl.targets import registry

    testers = [t for t in registry.all_targets() if target.name in t.test_builds_kits_of and t.test_build_kit]
    if not testers:
        return []
    if not getattr(spec, "kit_test_build", True):
        record.settings["test_build"] = {"result": "not run", "reason": "kit_test_build: false in the recipe"}
        return []
    installed = [t for t in testers if t.installed()]
    if not installed:
        names = ", ".join(f"{t.display_name} ({install_hint(t.extra)})" for t in testers)
        record.settings["test_build"] = {"result": "not run", "reason": f"not installed: {names}"}
        return []
    tester = installed[0]
    ctx.reporter.start(f"test-build {record.id}", f"the kit, with {tester.display_name}")
    trial = tester.test_build_kit(folder, record.settings, spec)
    record.settings["test_build"] = trial.details
    if trial.ok:
        record.reason += f"; {trial.summary}"
    else:
        record.status = "error"
        record.reason = f"{trial.summary}; {record.reason} (kit_test_build: false skips this trial)"
    return trial.files


def judge_emission(ctx: RunContext, model: ModelInFlight, record: ArtifactRecord, spec, onnx: Path,
                   whose: str, why: str) -> None:
    """A kit ships a reduced-precision ONNX (the Q/DQ model) without an engine, and an engine built where it cannot
    run is not verified: that ONNX is judged against the source model by the precision's gate, in ONNX Runtime, so
    an artifact built from a model that fails it fails the run (exit 4) instead of shipping quietly. The engine
    itself is not judged (`why`: it was not built, or not run). `whose`: what ships the ONNX (kit, engine)."""
    from convertctl.data.batching import run_in_chunks
    from convertctl.evaluate.compare import compare
    from convertctl.onnx_session import run_session, session

    sess = session(onnx, level="extended")
    actual = run_in_chunks(lambda feeds: run_session(sess, feeds), ctx.samples.feeds, ctx.samples.chunk)
    gate = compare(f"{model.reference_name} (the {whose}'s {record.built_from} ONNX in onnxruntime; {why})",
                   list(model.output_names), list(model.reference), actual,
                   ctx.tolerance(spec.precision, spec.tolerance))
    record.verification = [gate]
    if gate.passed is False:
        record.status = "failed"
        record.reason = (f"the {record.built_from} ONNX this {whose} builds from fails the {spec.precision} gate: "
                         + "; ".join(gate.failures) + f" ({record.reason})")
