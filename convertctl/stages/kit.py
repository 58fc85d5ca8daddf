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
        record.files = ctx.files(folder / f for f in built.files)
        if target.kit_note is not None:
            record.reason += target.kit_note(record.id, built.settings)
        if record.built_from != "fp32":
            judge_emission(ctx, model, record, spec, emissions.paths[record.built_from], "kit", "no engine built")
    except ConvertctlError as exc:
        record.status, record.reason = "error", exc.message + (f" ({exc.hint})" if exc.hint else "")
    record.seconds = round(time.perf_counter() - t0, 3)
    return record


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
