"""The last step: the run's status and exit code from its records, the manifest, the reports rendered from it."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from convertctl import __version__
from convertctl.errors import EXIT_ACCURACY_GATE, EXIT_INTERNAL, EXIT_OK, EXIT_UNSUPPORTED_OPERATOR
from convertctl.report.manifest import Manifest, RecipeRecord
from convertctl.report.outdir import MARKER
from convertctl.stages.context import RunContext


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def status_of(statuses: list[str], gate_failed: bool, unsupported: bool) -> tuple[str, int]:
    if unsupported:  # check.fail_fast stopped the run: nothing was built
        return "error", EXIT_UNSUPPORTED_OPERATOR
    if "error" in statuses:  # an error outranks a gate: the run did not finish what it was asked
        return "error", EXIT_INTERNAL
    if gate_failed or "failed" in statuses:
        return "failed", EXIT_ACCURACY_GATE
    if "skipped" in statuses:
        return "partial", EXIT_OK
    return "ok", EXIT_OK


def write_manifest(ctx: RunContext, started: str, t0: float, baseline, gate_failed=False, unsupported=False
                   ) -> Manifest:
    """manifest.json (written last: its presence marks a finished folder) and the reports, in the staging folder."""
    from convertctl.recipe import format_recipe_content
    from convertctl.report.environment import environment
    from convertctl.report.report_json import write_reports

    records = ctx.records
    status, code = status_of([a.status for a in records.artifacts], gate_failed, unsupported)
    manifest = Manifest(
        tool={"name": "convertctl", "version": __version__}, status=status, exit_code=code, started_at=started,
        finished_at=now(), seconds=round(time.perf_counter() - t0, 3),
        recipe=RecipeRecord(name=ctx.recipe.name, path=str(ctx.recipe_path) if ctx.recipe_path else None,
                            sha256=ctx.recipe_sha, content=format_recipe_content(ctx.recipe)),
        environment=environment(), samples=ctx.samples.record, stages=records.stages, artifacts=records.artifacts,
        latency_baseline=baseline, messages=records.messages)
    manifest.files = ctx.files(sorted(p for p in ctx.dir.iterdir() if p.is_file() and p.name != MARKER))
    write_reports(manifest, ctx.dir)  # report.json, report.md (+ summary.md), report.html
    (ctx.dir / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest
