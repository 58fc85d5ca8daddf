"""`convertctl merge`: the CI jobs' manifests -> one release index (logic in convertctl/ci/fanout.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from convertctl.cli.common import common_options


@click.command("merge")
@click.argument("sources", nargs=-1, required=True, metavar="MANIFESTS_OR_FOLDERS...")
@click.option("-o", "--output", "release", required=True, type=click.Path(), metavar="RELEASE_DIR",
              help="The release folder: manifests/, index.json, index.md.")
@common_options
def merge(sources, release):
    """Collect the manifests of many runs (CI jobs) into RELEASE_DIR.

    \b
    Each argument is a manifest.json, a run's output folder, or a folder whose sub-folders are run outputs
    (e.g. one per downloaded CI artifact). Writes RELEASE_DIR/manifests/NAME[__TARGETS].json,
    RELEASE_DIR/index.json and RELEASE_DIR/index.md. The exit code is the runs' worst: the first of
    1, 3, 4, 5, 2 among them, else 0, so a CI merge job fails when a build job did. Exit 2, with nothing
    written: a file that is not a valid manifest (named, with its first bad field), a missing file, a folder
    without manifests, the same recipe target in two manifests, or a RELEASE_DIR that is neither empty, new
    nor a previous merge's output. The release is assembled beside RELEASE_DIR and moved into place whole.
    """
    from convertctl.ci import fanout
    from convertctl.cli import state
    from convertctl.cli.ui import console, esc

    index = fanout.merge(sources, Path(release))
    if state.json_output:
        sys.stdout.write(json.dumps(index, indent=2) + "\n")
    out = console()
    for p in index["incomplete"]:
        out.print(f"[yellow]warning:[/] {esc(p)}: no manifest.json (the job did not finish)", soft_wrap=True)
    if not state.quiet:
        print(fanout.index_markdown(index), file=sys.stderr, end="")  # what index.md holds, not read back
    if not state.quiet or index["exit_code"]:
        arts = sum(len(e["artifacts"]) for e in index["entries"])
        out.print(f"{len(index['entries'])} manifest(s), {arts} artifact(s) -> {esc(Path(release) / 'index.json')}, "
                  f"exit code {index['exit_code']}", soft_wrap=True)
    sys.exit(index["exit_code"])
