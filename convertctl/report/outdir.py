"""The output folder is assembled in a staging folder and moved into place only when complete.

A run that dies leaves `<out>.partial/` (with ERROR.txt), never a folder that looks finished;
the previous complete output, if any, is replaced only at the very end.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from convertctl.errors import UsageError


class OutputFolder:
    def __init__(self, final: Path):
        self.final = Path(final).absolute()
        self.staging = self.final.parent / f".{self.final.name}.staging-{os.getpid()}"
        self.partial = self.final.parent / f"{self.final.name}.partial"

    def open(self) -> Path:
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            if self.final.exists() and not self.final.is_dir():
                raise UsageError(f"output path {self.final} exists and is not a folder")
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()
            probe = self.staging / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except UsageError:
            raise
        except OSError as exc:
            raise UsageError(f"cannot write to output folder {self.final}: {exc.strerror or exc}",
                             hint="choose another folder with -o") from None
        return self.staging

    def commit(self) -> Path:
        """Replace the previous output with the staging folder (two renames, no copy)."""
        old = None
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
        os.replace(self.staging, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.final

    def abandon(self, error: str) -> Path | None:
        """Keep what was produced for debugging, under a name that cannot be mistaken for a result."""
        if not self.staging.exists():
            return None
        (self.staging / "ERROR.txt").write_text(error.rstrip() + "\n")
        shutil.rmtree(self.partial, ignore_errors=True)
        os.replace(self.staging, self.partial)
        return self.partial
