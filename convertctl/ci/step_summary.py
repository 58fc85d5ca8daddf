"""CI job pages: GitHub Actions shows Markdown appended to the file $GITHUB_STEP_SUMMARY names."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def append_step_summary(markdown: Path) -> Path | None:
    """Append the run's summary.md to $GITHUB_STEP_SUMMARY when it is set; the path written, else None.

    Several runs in one job each append theirs (GitHub concatenates a step's writes). A path that cannot be
    written is a warning on stderr, not an error: the page is cosmetic, and the run's output folder is already
    committed (a job that depends on step outputs uses $GITHUB_OUTPUT, where `plan` fails with exit 2 instead)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target or not markdown.is_file():
        return None
    try:
        with open(target, "a", encoding="utf-8") as out:
            out.write(markdown.read_text(encoding="utf-8").rstrip() + "\n\n")
    except OSError as exc:
        print(f"warning: cannot append the job summary to GITHUB_STEP_SUMMARY={target}: {exc.strerror or exc} "
              "(the run's result is unaffected)", file=sys.stderr)
        return None
    return Path(target)
