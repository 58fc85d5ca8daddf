"""check: structure (ONNX checker, shape inference), then operator support on every target runtime to be built.

A runtime judged "unsupported" is not built (its artifacts become "error"), or, with `check.fail_fast`, the run
stops here (exit 3). "conditional" and "unknown" only add messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import ConvertctlError
from convertctl.model import ModelInFlight
from convertctl.report.manifest import StageRecord
from convertctl.stages.cache import Stage
from convertctl.stages.context import RunContext
from convertctl.stages.keys import data_key, model_sha, sections


@dataclass(frozen=True)
class Checked:
    unsupported: dict[str, str]  # runtime -> why the check says it cannot work (its targets are not built)


def stage(ctx: RunContext, model: ModelInFlight) -> Stage:
    return Stage("check", lambda: key(ctx, model), lambda: check(ctx, model), ("check",), Checked)


def runtimes(ctx: RunContext) -> list[str]:
    recipe = ctx.recipe
    return list(dict.fromkeys(t.runtime for t in recipe.targets)) if "build" in recipe.stages else []


def key(ctx: RunContext, model: ModelInFlight) -> dict:
    from convertctl.recipe import explicit_dim_ranges

    return {"onnx": model_sha(model.onnx), "runtimes": sorted(runtimes(ctx)), "dims": explicit_dim_ranges(ctx.recipe),
            "inputs": [s.model_dump(mode="json") for s in ctx.inputs],  # the check names dims by them
            **sections(ctx, "check"), **data_key(ctx)}


def check(ctx: RunContext, model: ModelInFlight) -> tuple[Checked, list[StageRecord]]:
    from convertctl.checks.structure import check_structure

    ctx.reporter.start("check", "ONNX checker, shape inference, operators")
    t0 = time.perf_counter()
    findings, details = check_structure(model.onnx)
    outputs, unsupported = [], {}
    if runtimes(ctx):
        outputs = _check_targets(ctx, model, findings, details, unsupported)
    stop = bool(unsupported) and ctx.recipe.check.fail_fast
    record = StageRecord(name="check", status="failed" if stop else "ok", seconds=round(time.perf_counter() - t0, 3),
                         inputs=ctx.files([model.onnx]), outputs=ctx.files(outputs), findings=findings,
                         details=details)
    return Checked(unsupported), [record]


def _check_targets(ctx, model, findings: list[str], details: dict, unsupported: dict) -> list[Path]:
    """`convertctl check` on the model in flight for the runtimes: check/check.json, findings, verdicts."""
    from convertctl.checks.run_check import check_model
    from convertctl.recipe import explicit_dim_ranges

    wanted = runtimes(ctx)
    ctx.reporter.start("check", f"operator support: {', '.join(wanted)}")
    try:
        # a dim the recipe gives a value (a range, or a fixed size in `dims` or in inputs[].shape) has its range
        report = check_model(model.onnx, wanted, explicit_dim_ranges(ctx.recipe) or None, list(ctx.inputs),
                             ctx.recipe.source.framework)
    except (ConvertctlError, ImportError):
        raise
    except Exception as exc:  # the checker's own failure must not cost the run its builds: say so, build
        note = f"check: the operator support check failed ({type(exc).__name__}: {exc}); targets built unchecked"
        findings.append(note[:500])
        ctx.note(note[:500])
        return []
    path = ctx.dir / "check" / "check.json"
    path.parent.mkdir(exist_ok=True)
    # relative to the output folder: the staging folder's name must not end up in a finished run's files
    if Path(model.onnx).is_relative_to(ctx.dir):
        report.model = str(Path(model.onnx).relative_to(ctx.dir))
    path.write_text(report.model_dump_json(indent=2) + "\n")
    details["targets"] = {
        t.target: {"verdict": t.verdict, "judged_by": t.judged_by, "version": t.version,
                   "nodes": [n.model_dump(exclude_none=True) for n in t.nodes if n.verdict != "supported"]}
        for t in report.targets}
    details["targets_seconds"] = report.seconds
    for t in report.targets:
        bad = [n for n in t.nodes if n.verdict == t.verdict] if t.verdict != "supported" else []
        # an unsupported operator names its node first; for the other verdicts a model-level reason says most
        bad.sort(key=lambda n: bool(n.node) != (t.verdict == "unsupported"))
        first = _node_text(bad[0]).removeprefix(f"{t.verdict}: ") if bad else ""
        more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
        if t.verdict == "supported":
            findings.append(f"{t.target}: supported ({t.judged_by})")
        elif t.verdict == "unsupported":
            unsupported[t.target] = (f"unsupported by {t.target}: {first}{more}; see check/check.json"
                                     if bad else f"unsupported by {t.target}; see check/check.json")
            findings.append(f"{t.target}: unsupported: {first}{more}; its targets are not built")
        else:
            findings.append(f"{t.target}: {t.verdict}: {first}{more}")
            ctx.note(f"check: {t.target}: {t.verdict}: {first}{more} (see check/check.json)")
    return [path]


def _node_text(n) -> str:
    """`ai.onnx.ml.Scaler (scale0): <reason>` for a node verdict; the reason alone for a model-level one."""
    op = f"{n.domain}.{n.op_type}" if n.domain else n.op_type
    what = f"{op} ({n.node})" if n.node else op
    return f"{what}: {n.reason}" if what and n.reason else (what or n.reason or "see check/check.json")
