"""CI job pages: GitHub Actions shows Markdown appended to the file $GITHUB_STEP_SUMMARY names."""

from __future__ import annotations

import os
from pathlib import Path


def append_step_summary(markdown: Path) -> Path | None:
    """Append the run's summary.md to $GITHUB_STEP_SUMMARY when it is set; the path written, else None.

    Several runs in one job each append theirs (GitHub concatenates a step's writes)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target or not markdown.is_file():
        return None
    with open(target, "a", encoding="utf-8") as out:
        out.write(markdown.read_text(encoding="utf-8").rstrip() + "\n\n")
    return Path(target)
