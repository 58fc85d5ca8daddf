from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from convertctl.cli.common import (
    cache_options,
    common_options,
    is_recipe,
    latency_overrides,
    load_job,
    no_latency_option,
)
from convertctl.errors import UsageError


def execute(recipe, sha, recipe_path, output):
    """Run the pipeline with terminal progress and exit with the run's code (shared by every stage command)."""
    from convertctl.cli import state
    from convertctl.cli.ui import ConsoleReporter, show_result
    from convertctl.pipeline import run as run_pipeline

    # --json: stdout carries the manifest and nothing else; -q: library progress bars stay off stdout
    with stdout_to_stderr(state.json_output or state.quiet):
        manifest = run_pipeline(recipe, sha, recipe_path, Path(output) if output else None, ConsoleReporter())
    folder = Path(output) if output else (recipe.output or Path("out") / recipe.name)
    sys.exit(show_result(manifest, folder))


@contextlib.contextmanager
def stdout_to_stderr(active: bool):
    """Send everything written to stdout (by us, by libraries, by native code) to stderr for a while."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@click.command("run")
@click.argument("recipe_file", metavar="RECIPE_OR_FOLDER")
@click.option("-o", "--output", type=click.Path(),
              help="Output folder (default: the recipe's `output`, else out/NAME). A folder of recipes: the folder "
                   "that receives one sub-folder per recipe (default: out).")
@click.option("-t", "--target", "targets", multiple=True, metavar="ID",
              help="Build only the target with this id (name, or runtime_precision such as onnxruntime_fp32); "
                   "repeatable. A single recipe only: what one CI matrix job runs.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="A folder of recipes: how many recipes run at once, each in its own process.")
@no_latency_option
@cache_options
@common_options
def run(recipe_file, output, targets, jobs, no_latency):
    """Run RECIPE end to end: export, check, optimize, build every target, verify, time, write the manifest.

    \b
    Given a FOLDER, every recipe directly in it (*.yaml, *.yml; sorted, not recursive) runs as its own
    `convertctl run` process, at most --jobs at once, into OUTPUT/NAME (stderr in OUTPUT/NAME.log); then
    one summary: a table on stderr, with --json {"runs": [...], "exit_code": N} on stdout. The exit code is
    the first of 1, 3, 4, 5, 2 that a recipe returned, else 0; a recipe that does not validate counts as 2
    and the others still run.
    """
    if Path(recipe_file).is_dir():
        if targets:
            raise UsageError("--target applies to a single recipe, not to a folder of recipes",
                             hint="`convertctl plan FOLDER` gives one job per recipe and target")
        sys.exit(run_folder(Path(recipe_file), Path(output or "out"), jobs, no_latency))
    if not is_recipe(recipe_file):
        raise UsageError(f"{recipe_file} is not a recipe (.yaml) or a folder of recipes",
                         hint="`convertctl build MODEL --target ...` takes a model")
    if no_latency:
        recipe, sha, _ = load_job(recipe_file, stages=None, overrides=latency_overrides(no_latency))
    else:
        from convertctl.recipe import load_recipe

        recipe, sha = load_recipe(Path(recipe_file))
    if targets:
        recipe = recipe.model_copy(update={"targets": select_targets(recipe, targets, recipe_file)})
    execute(recipe, sha, Path(recipe_file), output)


def select_targets(recipe, wanted, recipe_file) -> list:
    """The recipe's targets whose id is in `wanted` (recipe order); an unknown id is a usage error."""
    ids = [t.id for t in recipe.targets]
    unknown = [w for w in dict.fromkeys(wanted) if w not in ids]
    if unknown:
        raise UsageError(f"--target {', '.join(unknown)}: {recipe_file} has no target of that id "
                         f"(its targets: {', '.join(ids) or 'none'})")
    return [t for t in recipe.targets if t.id in wanted]


def run_folder(folder: Path, out: Path, jobs: int, no_latency: bool) -> int:
    """Every recipe of `folder` in a child process, then the summary. Returns the overall exit code."""
    import json

    from convertctl.ci import fanout
    from convertctl.cli import state
    from convertctl.cli.ui import console, esc

    entries = fanout.plan_folder_run(folder, out)
    err = console()

    def done(entry):
        if not state.quiet:
            err.print(f"{entry.status:>8}  {esc(entry.recipe.name)}  exit {entry.exit_code}  {entry.seconds:.1f} s"
                      + (f"  [dim]{esc(entry.error)}[/]" if entry.error else ""), soft_wrap=True)

    if not state.quiet:
        err.print(f"{len(entries)} recipe(s) in {esc(folder)} -> {esc(out)}, {jobs} at a time", soft_wrap=True)
    fanout.run_folder(entries, jobs, no_latency, done)
    summary = fanout.summary_json(entries)
    err.print(summary_table(summary))
    if state.json_output:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return summary["exit_code"]


def summary_table(summary: dict):
    """The folder run's summary: one row per recipe."""
    from rich.table import Table

    from convertctl.cli.ui import STATUS_STYLE, esc

    table = Table(title=f"{len(summary['runs'])} recipe(s): exit code {summary['exit_code']}", title_justify="left")
    for col in ("recipe", "status", "exit code", "artifacts ok", "seconds", "output"):
        table.add_column(col, justify="right" if col in ("exit code", "artifacts ok", "seconds") else "left")
    for r in summary["runs"]:
        arts = r["artifacts"]
        table.add_row(esc(r["recipe"]), f"[{STATUS_STYLE.get(r['status'], 'red')}]{esc(r['status'])}[/]", str(r["exit_code"]),
                      f"{arts['ok']}/{arts['total']}", f"{r['seconds']:.1f}", esc(r["output"]))
    return table
