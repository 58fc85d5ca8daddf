from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from convertctl.cli.common import common_options, is_recipe, latency_overrides, load_job, no_latency_option
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
@click.argument("recipe_file", metavar="RECIPE")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: the recipe's `output`, else out/NAME).")
@no_latency_option
@common_options
def run(recipe_file, output, no_latency):
    """Run RECIPE end to end: export, check, optimize, build every target, verify, time, write the manifest."""
    from convertctl.recipe import load_recipe

    if not is_recipe(recipe_file):
        raise UsageError(f"{recipe_file} is not a recipe (.yaml)", hint="`convertctl build MODEL --target ...` takes a model")
    if no_latency:
        recipe, sha, _ = load_job(recipe_file, stages=None, overrides=latency_overrides(no_latency))
    else:
        recipe, sha = load_recipe(Path(recipe_file))
    execute(recipe, sha, Path(recipe_file), output)
