"""`convertctl plan`: the CI build matrix, one job per recipe x target (logic in convertctl/ci/fanout.py)."""

from __future__ import annotations

import json
import sys

import click

from convertctl.cli.common import common_options


@click.command("plan")
@click.argument("recipes", nargs=-1, required=True, metavar="RECIPES...")
@click.option("--format", "fmt", type=click.Choice(["github", "gitlab", "json"]), default=None,
              help="github (default): {\"include\": [...]} on one line, also written to $GITHUB_OUTPUT as "
                   "`matrix=...` when set; gitlab: a child pipeline (YAML); json: the jobs list (also --json).")
@click.option("--per", type=click.Choice(["target", "recipe"]), default="target", show_default=True,
              help="One job per recipe x target, or one per recipe (all its targets).")
@click.option("-o", "--output", "root", default="out", show_default=True, metavar="DIR",
              help="Where the jobs write: DIR/NAME[/TARGET].")
@common_options
def plan(recipes, fmt, per, root):
    """One CI job per recipe x target for RECIPES (recipe files and/or folders of recipes).

    \b
    Every recipe is validated first. Exit 0, or 2: an invalid recipe (each named), a folder without
    recipes, two recipes of one name, an unwritable $GITHUB_OUTPUT. Each job is
      {"name": "NAME[-TARGET]", "recipe": PATH, "target": ID or null, "output": "out/NAME[/TARGET]"}
    and runs `convertctl run RECIPE --target ID -o OUTPUT`; `convertctl merge` collects the outputs.
    GitHub: matrix: ${{ fromJSON(needs.plan.outputs.matrix) }} (see docs/ci/github-workflow.yml).
    """
    from convertctl.ci import fanout
    from convertctl.cli import state

    fmt = fmt or ("json" if state.json_output else "github")
    jobs = fanout.plan_jobs(fanout.expand_recipes(recipes), per=per, root=root)
    if fmt == "json":
        sys.stdout.write(json.dumps(jobs, indent=2) + "\n")
    elif fmt == "gitlab":
        sys.stdout.write(fanout.gitlab_pipeline(jobs, root=root))
    else:
        matrix = fanout.github_matrix(jobs)
        target = fanout.env_github_output()
        if target:  # first: when it fails, stdout holds the error object alone (with --json), not two documents
            fanout.write_github_output(matrix, target)
        sys.stdout.write(matrix + "\n")
        if len(jobs) > 256:
            from convertctl.cli.ui import print_error

            print_error(f"{len(jobs)} jobs: GitHub Actions allows at most 256 per matrix", "use --per recipe")
    if not state.quiet:
        from convertctl.cli.ui import console

        console().print(f"{len(jobs)} job(s) from {len({j['recipe'] for j in jobs})} recipe(s)")
