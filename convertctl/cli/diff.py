"""`convertctl diff BASE NEW`: the logic is in convertctl/ci/diff.py; this prints it and sets the exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from convertctl.cli import state
from convertctl.cli.common import common_options
from convertctl.errors import UsageError


class _Threshold(click.ParamType):
    """A finite number >= 0: click's FloatRange lets `nan` through, and a NaN threshold passes every change."""

    name = "float"

    def convert(self, value, param, ctx):
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number) or number < 0:
            self.fail(f"{value!r} is not a finite number >= 0", param, ctx)
        return number


_DROP = _Threshold()


@click.command("diff")
@click.argument("base", type=click.Path())
@click.argument("new", type=click.Path())
@click.option("--max-cosine-drop", type=_DROP, help="Largest cosine drop accepted per output (default from the "
              "recipe's verify.regression, else 0.001).")
@click.option("--max-top1-drop", "max_top1_agreement_drop", type=_DROP,
              help="Largest top-1 agreement drop accepted per output (else 0.01).")
@click.option("--max-accuracy-drop", type=_DROP, help="Largest labelled top-1 accuracy drop, a fraction (else 0.005).")
@click.option("--max-latency-increase", type=_DROP,
              help="Largest p50 increase, a fraction, on top of the runs' own noise (else 0.10).")
@click.option("-o", "--output", "markdown", type=click.Path(), metavar="FILE.md", help="Also write the diff as Markdown.")
@common_options
def diff(base, new, markdown, **thresholds):
    """Compare NEW with BASE (each a manifest.json or a run folder) of the same recipe.

    Exit 4 on an accuracy regression, else 5 on a latency regression, else 0. Exit 2: a missing file, a file
    that is not a valid manifest (named, with its first bad field: NaN, a negative latency, a cosine outside
    [-1, 1], a missing field), two different recipes, a manifest schema of another major.

    Example: convertctl diff baseline/manifest.json out/efficientnet_lite0 -o diff.md
    """
    from convertctl.ci.diff import diff_paths, to_markdown

    report = diff_paths(base, new, thresholds)
    if markdown:
        try:
            Path(markdown).write_text(to_markdown(report) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {markdown}: {exc.strerror}") from None
    if state.json_output:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    _print(report)
    sys.exit(report.exit_code)


def _print(report) -> None:
    """The table (not with -q), then one line per warning and per regression, then the verdict; all on stderr."""
    from rich.table import Table

    from convertctl.ci.diff import cells, verdict
    from convertctl.cli.ui import console, esc
    from convertctl.report.markdown import fmt_ms

    out = console()
    if not state.quiet and report.artifacts:
        rows = [cells(a) for a in report.artifacts]
        table = Table(title=f"{esc(report.recipe.name)}: BASE -> NEW", title_justify="left")
        for col in rows[0]:
            table.add_column(col, justify="right" if col in ("p50 ms", "change", "noise", "size Δ bytes") else "left")
        for r in rows:
            style = "red" if r["verdict"] == "REGRESSION" else "green"
            table.add_row(*[esc(v) for v in list(r.values())[:-1]], f"[{style}]{r['verdict']}[/]")
        out.print(table)
    if not state.quiet:
        th = report.thresholds
        out.print(f"[dim]thresholds ({esc(th.source)}): cosine drop {th.max_cosine_drop:g}, top-1 agreement drop "
                  f"{th.max_top1_agreement_drop:g}, accuracy drop {th.max_accuracy_drop:g}, p50 increase "
                  f"{th.max_latency_increase * 100:g}% + noise[/]", soft_wrap=True)
        b = report.latency_baseline
        if b is not None and b.change is not None:
            out.print(f"latency baseline (not gated): p50 {fmt_ms(b.base_p50_ms)} -> {fmt_ms(b.new_p50_ms)} ms "
                      f"({b.change * 100:+.1f}%)", soft_wrap=True)
        ops = report.ops
        changes = ([f"+{k} x{v}" for k, v in ops.added.items()] + [f"-{k} x{v}" for k, v in ops.removed.items()]
                   + [f"{k} {b} -> {n}" for k, (b, n) in ops.changed.items()])
        if changes:
            out.print(f"operators: {esc(', '.join(changes))}", soft_wrap=True)
        if report.packages:
            out.print("packages: " + esc(", ".join(f"{k} {b} -> {n}" for k, (b, n) in report.packages.items())),
                      soft_wrap=True)
        for note in report.notes:
            out.print(f"[dim]note:[/] {esc(note)}", soft_wrap=True)
    for warning in report.warnings:
        out.print(f"[yellow]WARNING:[/] {esc(warning)}", soft_wrap=True)
    for line in report.regressions:
        out.print(f"[bold red]REGRESSION:[/] {esc(line)}", soft_wrap=True)
    style = "red" if report.exit_code else "green"
    out.print(f"[bold {style}]{verdict(report)}[/]", soft_wrap=True)
