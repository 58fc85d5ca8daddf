"""A content-addressed cache of stage results: a re-run with nothing changed reuses every stage, and a change
re-runs exactly the stages whose inputs it changes.

An entry is keyed by the sha256 of everything the stage's result depends on (input file hashes, the stage's
recipe sections, data and preprocessing hashes, tool versions, convertctl's version and source). It holds the stage's
files, its record and the state later stages read, plus `entry.json`: every file's sha256 and a *seal*, the
sha256 of (stage, key, file hashes, state), so an entry vouches for the key it was stored under and nothing else.

Trusted only after checks, never by its own word:
- the seal is recomputed from the key looked up (the folder's name), not the key entry.json claims: an entry
  moved or copied under another key, or whose entry.json was edited, fails;
- every file is re-hashed on lookup and again while it is copied into the output folder;
- paths inside an entry are relative and stay inside the output folder; symbolic links inside the cache are
  refused, so nothing is read or written outside the cache folder (the cache folder itself may be a link);
- a bad entry is removed (renamed aside, then deleted) and the stage is computed again; never an error.
Not protected: someone who can write to the cache folder and recomputes the seal (it has no secret: a secret
would stop a CI job from reusing another job's cache); the seal proves an entry is intact, not that it is right.

Safe under kills and concurrency:
- an entry is written into `.tmp-<key>-…` and renamed into place in one step: a run killed halfway leaves a
  temporary folder that no lookup reads, removed by a later store once no run holds its key's lock;
- a lock per key (fcntl.flock) makes a second concurrent run wait for the first and then reuse its result.

Where: $CONVERTCTL_STAGE_CACHE, else <cache dir>/stages; "off" disables it (paths.stage_cache_dir).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from convertctl import __version__
from convertctl.locks import exclusive_lock
from convertctl.report.manifest import sha256_file

ENTRY = "entry.json"
FORMAT = 2  # 2: sealed entries; an entry of another format is discarded
TMP = ".tmp-"  # temporary folders (a store in progress, or killed); never looked up
_KEY = re.compile(r"[0-9a-f]{64}")
_STAGE = re.compile(r"[a-z][a-z0-9_]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")  # export, build/openvino_int8


class CacheError(OSError):
    """The cache folder cannot be used (a symbolic link inside it, a part that is a file): the run goes on
    uncached."""


class BadEntry(ValueError):
    """An entry that fails its checks; the text says which."""


def make_key(stage: str, parts: dict) -> str:
    canonical = json.dumps({"stage": stage, "convertctl": __version__, "code": code_fingerprint(), **parts},
                           sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """sha256 of convertctl's own source files: an entry made by other code is never reused, even under the same
    version number (an editable install, a patched copy). About 100 files, a few ms, once per process."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def seal(stage: str, key: str, files: dict, state) -> str:
    """What binds an entry to its key: one hash over the key, the stage, every file's hash and the state."""
    canonical = json.dumps({"format": FORMAT, "stage": stage, "key": key, "files": files, "state": state},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def safe_relative(rel) -> bool:
    """A relative path with no `..`, `.` or empty part: joined to a folder, it stays inside it."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        return False
    path = PurePosixPath(rel)
    return not path.is_absolute() and all(p not in ("", ".", "..") for p in rel.split("/"))


@dataclass
class Entry:
    folder: Path
    meta: dict  # entry.json: format, stage, key, files {relative path: sha256}, state, seal

    @property
    def files(self) -> dict[str, str]:
        return self.meta["files"]

    @property
    def state(self) -> dict:
        return self.meta["state"]

    def read(self, rel: str) -> bytes:
        """A file of the entry, checked against its recorded hash as it is read."""
        data = (self.folder / "files" / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.files[rel]:
            raise BadEntry(f"{rel} changed after it was checked")
        return data


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- layout: every name below the root comes from a stage name and a hex key, never from an entry ---------
    def _subdir(self, stage: str, key: str, create: bool = False) -> Path:
        if not _STAGE.fullmatch(stage) or not _KEY.fullmatch(key):
            raise ValueError(f"not a stage cache name: {stage!r} {key!r}")
        path = self.root
        for part in (stage.split("/")[0], key[:2]):
            path = path / part
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise CacheError(f"{path} is not a folder of the stage cache (a symbolic link or a file)")
            if create:
                path.mkdir(parents=True, exist_ok=True)
        return path

    def _folder(self, stage: str, key: str) -> Path:
        return self._subdir(stage, key) / key

    def usable(self) -> str | None:
        """None when entries can be written here, else why not (the folder is a file, is read-only, ...)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=TMP, dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        return None

    @contextlib.contextmanager
    def locked(self, stage: str, key: str):
        """Held while a stage is looked up, computed and stored: two runs never compute the same entry twice."""
        with exclusive_lock(self._subdir(stage, key, create=True) / f"{key}.lock"):
            yield

    # -- lookup ----------------------------------------------------------------------------------------------
    def get(self, stage: str, key: str) -> tuple[Entry | None, str | None]:
        """(entry, None) on a verified hit; (None, None) on a miss; (None, why) when an entry was there but
        failed its checks (it is removed). Call with the key's lock held."""
        folder = self._folder(stage, key)
        if not os.path.lexists(folder):
            return None, None
        try:
            return Entry(folder, self._verify(stage, key, folder)), None
        except (OSError, BadEntry) as exc:
            self.discard(stage, key)
            return None, failed_check(stage, key, str(exc))

    def _verify(self, stage: str, key: str, folder: Path) -> dict:
        if folder.is_symlink() or not folder.is_dir():
            raise BadEntry("the entry is not a folder")
        meta_path = folder / ENTRY
        if meta_path.is_symlink() or not meta_path.is_file():
            raise BadEntry(f"{ENTRY} is missing")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:  # truncated, or not JSON
            raise BadEntry(f"{ENTRY} is unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "seal" not in meta:
            raise BadEntry(f"{ENTRY} is not a sealed entry of this convertctl (format {FORMAT})")
        if meta.get("stage") != stage or meta.get("key") != key:
            raise BadEntry(f"{ENTRY} was stored for {meta.get('stage')} key {str(meta.get('key'))[:12]}, "
                           "not this one")
        files = meta.get("files")
        if not isinstance(files, dict) or not all(safe_relative(r) and isinstance(s, str) for r, s in files.items()):
            raise BadEntry(f"{ENTRY} lists a file outside the entry")
        if not isinstance(meta.get("state"), dict) or seal(stage, key, files, meta["state"]) != meta["seal"]:
            raise BadEntry(f"{ENTRY}'s seal does not match this key and the hashes and state it records")
        inside = (folder / "files").resolve()
        for rel, sha in files.items():
            path = folder / "files" / rel
            if path.is_symlink() or not path.is_file():
                raise BadEntry(f"{rel} is missing")
            if not path.resolve().is_relative_to(inside):  # a linked folder on the way
                raise BadEntry(f"{rel} lies outside the entry")
            if sha256_file(path) != sha:
                raise BadEntry(f"{rel} does not match its recorded sha256")
        return meta

    def discard(self, stage: str, key: str) -> None:
        """Remove an entry: renamed aside in one step (a kill cannot leave half an entry in place), then deleted."""
        folder = self._folder(stage, key)
        if folder.is_symlink() or folder.is_file():
            folder.unlink(missing_ok=True)
            return
        aside = folder.with_name(f"{TMP}{key}-discarded-{os.getpid()}")
        try:
            os.rename(folder, aside)
        except OSError:
            aside = folder
        shutil.rmtree(aside, ignore_errors=True)

    # -- store -----------------------------------------------------------------------------------------------
    def put(self, stage: str, key: str, files: dict[str, Path], state: dict) -> tuple[Entry, int]:
        """Store copies of `files` (relative name -> file) and `state`; atomic (temporary folder, then rename).
        Call with the key's lock held. Returns the entry and how many leftover temporary folders were removed."""
        sub = self._subdir(stage, key, create=True)
        cleaned = self._clean_temporaries(key)
        final = sub / key
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP}{key}-", dir=sub))
        try:
            hashes = {}
            for rel, src in sorted(files.items()):
                if not safe_relative(rel):
                    raise ValueError(f"not a path inside an entry: {rel!r}")
                dst = tmp / "files" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                hashes[rel] = sha256_file(dst)
            state = json.loads(json.dumps(state, default=str))  # the seal is over what a lookup will read
            meta = {"format": FORMAT, "stage": stage, "key": key, "convertctl": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": hashes, "state": state,
                    "seal": seal(stage, key, hashes, state)}
            (tmp / ENTRY).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            if os.path.lexists(final):  # a concurrent run without the lock: keep the entry in place
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return Entry(final, meta), cleaned

    def _clean_temporaries(self, key: str) -> int:
        """Remove what killed stores left anywhere in the cache: ours (we hold its lock), and any other key's
        whose lock no run holds now (a store in progress holds it)."""
        cleaned = 0
        for tmp in self.root.glob(f"*/*/{TMP}*"):
            owner = tmp.name[len(TMP):len(TMP) + 64]
            if tmp.is_symlink() or not tmp.is_dir() or not _KEY.fullmatch(owner):
                continue
            if owner == key or _unlocked(tmp.parent / f"{owner}.lock"):
                shutil.rmtree(tmp, ignore_errors=True)
                cleaned += 1
        return cleaned

    # -- restore ---------------------------------------------------------------------------------------------
    def restore(self, entry: Entry, into: Path) -> list[Path]:
        """Copy the entry's files into the output folder, each hashed as it is copied; return the written paths.
        On a mismatch everything written is removed again and BadEntry raised. Files under `_state/` are the
        run's in-memory state (read by the caller with Entry.read), not output."""
        written, made = [], []
        try:
            for rel, sha in entry.files.items():
                if rel.startswith("_state/"):
                    continue
                dst = into / rel
                _make_parents(into, dst.parent, made)
                if _copy_hashed(entry.folder / "files" / rel, dst) != sha:
                    written.append(dst)
                    raise BadEntry(f"{rel} changed after it was checked")
                written.append(dst)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            for folder in reversed(made):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return written


def failed_check(stage: str, key: str, why: str) -> str:
    return f"cache entry for {stage} failed its hash check: recomputed ({why}; entry {key[:12]} removed)"


def _unlocked(lock: Path) -> bool:
    """True when no process holds this lock file (or there is none): nothing is writing under that key."""
    try:
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
        return True
    except OSError:
        return False


def _make_parents(root: Path, folder: Path, made: list[Path]) -> None:
    """mkdir -p below `root`, remembering what was made (to undo it)."""
    missing = []
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir()
        made.append(path)


def _copy_hashed(src: Path, dst: Path) -> str:
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for block in iter(lambda: fin.read(1 << 20), b""):
            h.update(block)
            fout.write(block)
    return h.hexdigest()
