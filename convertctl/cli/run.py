from __future__ import annotations

import sys
from pathlib import Path

import click

from convertctl.cli.common import common_options, is_recipe
from convertctl.errors import UsageError


def execute(recipe, sha, recipe_path, output):
    """Run the pipeline with terminal progress and exit with the run's code (shared by every stage command)."""
    from convertctl.cli.ui import ConsoleReporter, show_result
    from convertctl.pipeline import run as run_pipeline

    manifest = run_pipeline(recipe, sha, recipe_path, Path(output) if output else None, ConsoleReporter())
    folder = Path(output) if output else (recipe.output or Path("out") / recipe.name)
    sys.exit(show_result(manifest, folder))


@click.command("run")
@click.argument("recipe_file", metavar="RECIPE")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: the recipe's `output`, else out/NAME).")
@common_options
def run(recipe_file, output):
    """Run RECIPE end to end: export, check, optimize, build every target, verify, write the manifest."""
    from convertctl.recipe import load_recipe

    if not is_recipe(recipe_file):
        raise UsageError(f"{recipe_file} is not a recipe (.yaml)", hint="`convertctl build MODEL --target ...` takes a model")
    recipe, sha = load_recipe(Path(recipe_file))
    execute(recipe, sha, Path(recipe_file), output)
