from __future__ import annotations

import json
import sys

import click

from convertctl.cli import state
from convertctl.cli.common import common_options


@click.command("targets")
@common_options
def targets():
    """List the targets, the precisions they build, and whether their runtime is installed."""
    from convertctl.targets import registry

    rows = [{"name": t.name, "summary": t.summary, "precisions": list(t.precisions), "installed": t.installed(),
             "version": t.version(), "extra": t.extra} for t in registry.all_targets()]
    if state.json_output:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    from convertctl.cli.ui import console, esc
    from convertctl.errors import install_hint

    table = Table(title="convertctl targets", title_justify="left")
    for col in ("target", "precisions", "runtime", "what"):
        table.add_column(col)
    for r in rows:
        runtime = f"[green]{r['version']}[/]" if r["installed"] else f"[yellow]not installed[/] ({esc(install_hint(r['extra']))})"
        table.add_row(r["name"], ", ".join(r["precisions"]), runtime, r["summary"])
    out = console(stderr=False)
    out.print(table)
    out.print(NOT_TARGETS)


# Runtimes a deployment engineer asks for that convertctl does not offer, because nothing here can verify them
NOT_TARGETS = ("Not targets, because nothing on a convertctl machine can verify them: Paddle Lite (paddlelite 2.12, "
               "its latest release, has wheels for Python 2.7-3.7 only, none for 3.11) and MACE (not published on "
               "PyPI). convertctl adds no target it cannot verify numerically.")
