from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import click

from convertctl.cli import state
from convertctl.cli.common import common_options
from convertctl.errors import UsageError


@click.group("recipe")
def recipe():
    """Validate a recipe, or write a commented template."""


@recipe.command("validate")
@click.argument("file", type=click.Path())
@common_options
def validate(file):
    """Check FILE against the recipe schema and print a one-line summary.

    With --json, print the effective recipe (defaults filled in, paths resolved) and its sha256.
    """
    from convertctl.recipe import format_recipe_content, load_recipe

    parsed, sha = load_recipe(Path(file))
    content = format_recipe_content(parsed)
    if state.json_output:
        sys.stdout.write(json.dumps({"valid": True, "sha256": sha, "recipe": content}, indent=2) + "\n")
        return
    from convertctl.cli.ui import console, esc

    targets = ", ".join(t.id for t in parsed.targets) or "none"
    console(stderr=False).print(f"[green]valid[/]: {esc(file)} — {parsed.name}, {parsed.source.framework} source, "
                    f"stages {', '.join(parsed.stages)}, targets {targets}", soft_wrap=True)


@recipe.command("init")
@click.argument("file", type=click.Path(), required=False)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@common_options
def init(file, force):
    """Write a commented recipe template to FILE (default: stdout)."""
    text = resources.files("convertctl").joinpath("templates/recipe.yaml").read_text()
    if not file:
        sys.stdout.write(text)
        return
    path = Path(file)
    if path.exists() and not force:
        raise UsageError(f"{path} exists", hint="use --force to overwrite it")
    path.write_text(text)
    from convertctl.cli.ui import console

    console().print(f"wrote {path}; edit it, then: convertctl recipe validate {path}")
