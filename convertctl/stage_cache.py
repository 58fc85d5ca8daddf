"""A content-addressed cache of stage results: a re-run with nothing changed reuses every stage, and a change
re-runs exactly the stages whose inputs it changes.

An entry is keyed by the sha256 of everything the stage's result depends on (input file hashes, the stage's
recipe sections, data and preprocessing hashes, tool versions, convertctl's version). It holds the stage's
files, its record and the state later stages read, plus `entry.json` with every file's sha256.

Safe by construction:
- an entry is written into a temporary folder and renamed into place in one step, so a run killed halfway
  leaves no entry (only a temporary folder no lookup ever reads);
- every file is re-hashed on lookup: a corrupted entry is deleted and the stage re-runs, and the run says so;
- a lock per key (fcntl.flock) makes a second concurrent run wait for the first and then reuse its result.

Where: $CONVERTCTL_STAGE_CACHE, else <cache dir>/stages; "off" disables it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from convertctl import __version__
from convertctl.report.manifest import sha256_file

ENTRY = "entry.json"


def stage_cache_dir() -> Path | None:
    """The cache folder, or None when caching is off."""
    value = os.environ.get("CONVERTCTL_STAGE_CACHE")
    if value and value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return Path(value)
    from convertctl.pipeline import default_cache_dir

    return default_cache_dir() / "stages"


def make_key(stage: str, parts: dict) -> str:
    canonical = json.dumps({"stage": stage, "convertctl": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Entry:
    folder: Path
    meta: dict  # entry.json: stage, key, files {relative path: sha256}, state

    @property
    def files(self) -> dict[str, str]:
        return self.meta["files"]

    @property
    def state(self) -> dict:
        return self.meta["state"]


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    @contextlib.contextmanager
    def locked(self, stage: str, key: str):
        """Held while a stage is looked up, computed and stored: two runs never compute the same entry twice."""
        lock = self.root / stage / key[:2] / f"{key}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get(self, stage: str, key: str) -> tuple[Entry | None, str | None]:
        """(entry, None) on a verified hit; (None, why) when an entry existed but was corrupt (it is removed)."""
        folder = self._folder(stage, key)
        meta_path = folder / ENTRY
        if not meta_path.is_file():
            return None, None
        try:
            meta = json.loads(meta_path.read_text())
            for rel, sha in meta["files"].items():
                path = folder / "files" / rel
                if not path.is_file() or sha256_file(path) != sha:
                    raise ValueError(f"{rel} does not match its hash")
        except (OSError, ValueError, KeyError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            return None, f"cache entry {key[:12]} of {stage} was corrupt ({exc}): removed, the stage re-ran"
        return Entry(folder, meta), None

    def put(self, stage: str, key: str, files: dict[str, Path], state: dict) -> Entry:
        """Store copies of `files` (relative name -> file) and `state`; atomic (temporary folder, then rename)."""
        final = self._folder(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=final.parent))
        try:
            hashes = {}
            for rel, src in sorted(files.items()):
                dst = tmp / "files" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                hashes[rel] = sha256_file(dst)
            meta = {"stage": stage, "key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "convertctl": __version__, "files": hashes, "state": state}
            (tmp / ENTRY).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
            if final.exists():  # a concurrent run without the lock, or a leftover: keep the existing one
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Entry(final, json.loads((final / ENTRY).read_text()))

    def restore(self, entry: Entry, into: Path) -> list[Path]:
        """Copy the entry's files into the output folder; return the written paths. Files under `_state/` are
        the run's in-memory state (read from the entry by the caller), not output."""
        written = []
        for rel in entry.files:
            if rel.startswith("_state/"):
                continue
            dst = into / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(entry.folder / "files" / rel, dst)
            written.append(dst)
        return written
