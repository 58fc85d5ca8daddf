"""The output folder is assembled in a staging folder and moved into place only when complete.

Invariant: convertctl replaces or deletes only folders it made. Every folder it makes carries the marker
file `.convertctl-output` from its first moment (staging, partial and final alike), so an existing folder
without it (or without a convertctl manifest, for outputs older than the marker) is the user's, and is
refused. A run that dies leaves `<out>.partial/` (with ERROR.txt and no manifest), never a folder that
looks finished; an interrupted run leaves nothing; the previous complete output, if any, is replaced only
at the very end. Staging folders of runs killed outright (kill -9) are removed by the next run to the same
place.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from convertctl.errors import UsageError

MARKER = ".convertctl-output"
INVENTORY = ".convertctl-files"  # every file the run wrote, one relative path a line: what else is there is the user's
_FIX = "choose an empty or new folder with -o (or `output:` in the recipe)"


class OutputFolder:
    def __init__(self, final: Path):
        self.final = Path(os.path.abspath(final))
        self.staging = self.final.parent / f".{self.final.name}.staging-{os.getpid()}"
        self.partial = self.final.parent / f"{self.final.name}.partial"
        self.protected: list[Path] = []

    def open(self, protected: Iterable[Path] = ()) -> Path:
        """Check that the output may be replaced, clean what killed runs left, and create the staging folder.

        `protected`: paths the run reads (the model, its folder, the recipe's folder, data folders, the
        current directory); the output may not be, or contain, any of them."""
        self.protected = [Path(os.path.realpath(p)) for p in protected]
        self._refuse_unsafe(self.protected)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._clean_leftovers()
            if self._may_delete(self.staging):  # left by an earlier process that had our pid
                shutil.rmtree(self.staging)
            self.staging.mkdir()
            _mark(self.staging)
        except OSError as exc:
            raise UsageError(f"cannot write to output folder {self.final}: {exc.strerror or exc}",
                             hint="choose another folder with -o") from None
        return self.staging

    def commit(self) -> Path:
        """Replace the previous output with the staging folder (two renames, no copy)."""
        old = None
        _write_inventory(self.staging)
        if self.final.exists():
            self._refuse_unsafe(self.protected)  # the user may have put files there while the run went on
            if not any(self.final.iterdir()):
                self.final.rmdir()  # an empty folder the user made: nothing is lost
            else:
                old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
                os.replace(self.final, old)
        os.replace(self.staging, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if self._may_delete(self.partial):
            shutil.rmtree(self.partial, ignore_errors=True)
        return self.final

    def abandon(self, error: str) -> Path | None:
        """Keep what was produced for debugging, under a name that cannot be mistaken for a result."""
        if not self.staging.exists():
            return None
        (self.staging / "manifest.json").unlink(missing_ok=True)  # written last: it would claim success
        (self.staging / "ERROR.txt").write_text(error.rstrip() + "\n")
        if self.partial.exists() or self.partial.is_symlink():
            if not self._may_delete(self.partial):
                return self.staging  # never replace a folder of the user's: the hidden staging folder stays
            shutil.rmtree(self.partial, ignore_errors=True)
        os.replace(self.staging, self.partial)
        return self.partial

    def discard(self) -> None:
        """An interrupted run: remove the staging folder, keep everything else as it was."""
        shutil.rmtree(self.staging, ignore_errors=True)

    # -- safety ------------------------------------------------------------------------------------
    def _may_delete(self, folder: Path) -> bool:
        """A folder beside the output (a partial, a leftover staging folder) may go only if convertctl made it
        and it holds nothing this run reads: a user may well run on the model a failed run left in X.partial."""
        if not made_by_convertctl(folder):
            return False
        real = Path(os.path.realpath(folder))
        return not any(p == real or real in p.parents for p in self.protected)

    def _refuse_unsafe(self, protected: Iterable[Path]) -> None:
        final = self.final
        if final.is_symlink():
            raise UsageError(f"output folder {final} is a symbolic link; convertctl replaces its output folder "
                             "as a whole", hint=f"give the real folder it points to, or {_FIX}")
        real = Path(os.path.realpath(final))
        for path in protected:
            p = Path(os.path.realpath(path))
            if p == real or real in p.parents:
                what = "is" if p == real else "contains"
                raise UsageError(f"output folder {final} {what} {path}, which this run reads; the output folder "
                                 "is replaced as a whole", hint=_FIX)
        if not final.exists():
            return
        if not final.is_dir():
            raise UsageError(f"output path {final} exists and is not a folder", hint=_FIX)
        if os.path.ismount(final):
            raise UsageError(f"output folder {final} is a mount point, which cannot be replaced",
                             hint=f"give a new folder inside it, e.g. -o {final / 'out'}")
        if any(final.iterdir()) and not made_by_convertctl(final):
            raise UsageError(f"output folder {final} exists and was not made by convertctl: it would be replaced "
                             "as a whole, so it is left alone", hint=_FIX)
        added = foreign_files(final)
        if added:  # files someone put into an earlier output: replacing the folder would delete them
            shown = ", ".join(added[:3]) + (f" and {len(added) - 3} more" if len(added) > 3 else "")
            raise UsageError(f"output folder {final} holds files convertctl did not write ({shown}): replacing it "
                             "would delete them, so it is left alone",
                             hint=f"move them out of {final}, or {_FIX}")

    def _clean_leftovers(self) -> None:
        """Staging and old folders of runs to this place that were killed before they could clean up."""
        for prefix in (f".{self.final.name}.staging-", f".{self.final.name}.old-"):
            for folder in self.final.parent.glob(f"{_glob_escape(prefix)}*"):
                pid = folder.name[len(prefix):]
                if pid.isdigit() and not _alive(int(pid)) and self._may_delete(folder):
                    shutil.rmtree(folder, ignore_errors=True)


def made_by_convertctl(folder: Path) -> bool:
    """True for a folder convertctl made: it has the marker, or (outputs older than the marker) a manifest
    written by convertctl. A symlink is never taken for one."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    if (folder / MARKER).is_file():
        return True
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        return isinstance(manifest, dict) and (manifest.get("tool") or {}).get("name") == "convertctl"
    except (OSError, ValueError, AttributeError):
        return False


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.name not in (MARKER, INVENTORY))


def _write_inventory(folder: Path) -> None:
    (folder / INVENTORY).write_text("".join(f"{f}\n" for f in _files(folder)))


def foreign_files(folder: Path) -> list[str]:
    """Files in an output convertctl made that its inventory does not list (an output older than the inventory:
    none can be told apart, so none)."""
    try:
        written = set((folder / INVENTORY).read_text().splitlines())
    except OSError:
        return []
    return [f for f in _files(folder) if f not in written]


def _mark(folder: Path) -> None:
    # fixed content: two runs of the same recipe still give the same bytes
    (folder / MARKER).write_text("This folder was made by convertctl; convertctl may replace it as a whole.\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    # a killed run whose parent died too is a zombie until init reaps it (in containers, maybe never): dead
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:][:1] != "Z"
    except (OSError, ValueError):
        return True


def _glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)
