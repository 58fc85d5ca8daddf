"""Any stage, run or restored from the stage cache through what it declares: its key, the folders it writes and
its output value. The cache itself (atomic entries, locks, hash checks, seals) is convertctl/stage_cache.py.

A stage's output is a frozen dataclass (or None); its fields are stored by kind: a file inside the output folder
(a Path), a {name: Path} map, a sequence of numpy arrays (kept in the entry, not in the output folder), or a
JSON value. A cache that cannot be used, or an entry that fails its checks, is a note: the stage is computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# what a stage may leave in the cache: records that depend only on its inputs, not on this machine's state
_STORABLE_STAGE = ("ok", "failed", "rolled_back", "skipped")
_STORABLE_ARTIFACT = ("ok", "failed")


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline, as the cache sees it."""

    name: str  # "export", "build/<target id>"
    key: Callable[[], dict]  # everything the result depends on
    compute: Callable[[], tuple[Any, list]]  # -> (output, the stage and artifact records it made)
    folders: tuple[str, ...]  # what it writes below the output folder
    output: type | None = None  # the dataclass its output is (None: no output)


class CacheHandle:
    """The run's stage cache; it turns itself off (with a note) when the folder goes bad during the run."""

    def __init__(self, cache, versions: dict):
        self.cache = cache
        self.versions = versions

    def off(self, messages: list[str], exc: OSError) -> None:
        messages.append(f"stage cache folder {self.cache.root} cannot be used ({type(exc).__name__}: "
                        f"{exc.strerror or exc}): the rest of this run is computed and not cached"[:400])
        self.cache = None


def open_cache(messages: list[str]) -> CacheHandle:
    from convertctl.paths import stage_cache_dir
    from convertctl.report.environment import package_versions
    from convertctl.stage_cache import StageCache

    root = stage_cache_dir()
    handle = CacheHandle(StageCache(root) if root is not None else None, package_versions())
    problem = handle.cache.usable() if handle.cache is not None else None
    if problem:  # a cache only saves time: a folder that cannot hold it is a note, never a failed run
        messages.append(f"stage cache folder {root} cannot be used ({problem}): this run is computed and not cached")
        handle.cache = None
    return handle


def run_stage(ctx, stage: Stage):
    """The stage's output: computed, or restored when its key is unchanged. Its records go into the run."""
    handle = ctx.cache
    if handle is None or handle.cache is None:
        return _computed(ctx, stage)[0]
    from convertctl.stage_cache import make_key

    try:
        key = make_key(stage.name, stage.key())
    except Exception as exc:  # a key that cannot be made (an unreadable file): compute, and say why
        ctx.note(f"stage cache: {stage.name} not cached ({type(exc).__name__}: {exc})"[:300])
        return _computed(ctx, stage)[0]
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(handle.cache.locked(stage.name, key))
            entry, problem = handle.cache.get(stage.name, key)
        except OSError as exc:  # the folder went bad during the run (a link, a file, disk full): go on uncached
            handle.off(ctx.records.messages, exc)
            return _computed(ctx, stage)[0]
        if problem:
            ctx.note(problem)
        if entry is not None:
            restored = _restore(ctx, stage, entry, key)
            if restored is not _MISSING:
                return restored
        messages = len(ctx.records.messages)
        t0 = time.perf_counter()
        output, records = _computed(ctx, stage)
        try:
            _store(ctx, stage, key, output, records, messages, round(time.perf_counter() - t0, 3))
        except (OSError, ValueError) as exc:  # the result is in the output folder either way
            ctx.note(f"stage cache: {stage.name} computed but not stored ({type(exc).__name__}: "
                     f"{getattr(exc, 'strerror', None) or exc})"[:300])
        return output


def _computed(ctx, stage: Stage):
    output, records = stage.compute()
    for record in records:
        ctx.add(record)
    return output, records


_MISSING = object()


# -- the output value, field by field ---------------------------------------------------------------------------
def _encode(output, root: Path, tmp: Path) -> tuple[dict, dict[str, Path]]:
    """(the JSON state of `output`, the array files to keep in the entry)."""
    state, arrays = {}, {}
    for f in dataclasses.fields(output) if output is not None else ():
        value = getattr(output, f.name)
        if isinstance(value, Path):
            state[f.name] = {"path": value.relative_to(root).as_posix()}
        elif isinstance(value, dict) and value and all(isinstance(v, Path) for v in value.values()):
            state[f.name] = {"paths": {k: v.relative_to(root).as_posix() for k, v in value.items()}}
        elif isinstance(value, (tuple, list)) and value and all(isinstance(v, np.ndarray) for v in value):
            np.savez(tmp / f"{f.name}.npz", *value)
            arrays[f"_state/{f.name}.npz"] = tmp / f"{f.name}.npz"
            state[f.name] = {"arrays": f"_state/{f.name}.npz"}
        else:
            state[f.name] = {"value": list(value) if isinstance(value, tuple) else value,
                             "tuple": isinstance(value, tuple)}
    return state, arrays


def _decode(kind: type | None, state: dict, entry, root: Path):
    """The output value from an entry's state; raises (KeyError, ValueError, ...) when it does not fit `kind`."""
    from convertctl.stage_cache import safe_relative

    if kind is None:
        return None

    def inside(rel) -> Path:
        if not safe_relative(rel):
            raise ValueError(f"a path outside the output folder: {rel!r}")
        return root / rel

    values = {}
    for f in dataclasses.fields(kind):
        stored = state[f.name]
        if "path" in stored:
            values[f.name] = inside(stored["path"])
        elif "paths" in stored:
            values[f.name] = {str(k): inside(v) for k, v in stored["paths"].items()}
        elif "arrays" in stored:
            with np.load(io.BytesIO(entry.read(stored["arrays"]))) as data:
                values[f.name] = tuple(data[f"arr_{i}"] for i in range(len(data.files)))
        else:
            values[f.name] = tuple(stored["value"]) if stored["tuple"] else stored["value"]
    return kind(**values)


# -- store and restore ------------------------------------------------------------------------------------------
def _store(ctx, stage: Stage, key: str, output, records: list, messages: int, seconds: float) -> None:
    from convertctl.report.manifest import ArtifactRecord, CacheRecord

    stages = [r for r in records if not isinstance(r, ArtifactRecord)]
    artifacts = [r for r in records if isinstance(r, ArtifactRecord)]
    if any(s.status not in _STORABLE_STAGE for s in stages) or \
            any(a.status not in _STORABLE_ARTIFACT for a in artifacts) or not records:
        return  # errors, kits, skipped builds depend on this machine's state, not only on the inputs
    record = CacheRecord(hit=False, key=key[:16])
    for r in records:
        r.cache = record
    files = {f.relative_to(ctx.dir).as_posix(): f for folder in stage.folders if (ctx.dir / folder).is_dir()
             for f in sorted((ctx.dir / folder).rglob("*")) if f.is_file()}
    with tempfile.TemporaryDirectory() as tmp:
        output_state, arrays = _encode(output, ctx.dir, Path(tmp))
        state = {"stages": [r.model_dump(mode="json") for r in stages],
                 "artifacts": [r.model_dump(mode="json") for r in artifacts],
                 "messages": ctx.records.messages[messages:], "seconds": seconds, "output": output_state}
        _, cleaned = ctx.cache.cache.put(stage.name, key, {**files, **arrays}, state)
    if cleaned:
        ctx.note(f"stage cache: removed {cleaned} unfinished entr{'y' if cleaned == 1 else 'ies'} left by an "
                 "interrupted run")


def _restore(ctx, stage: Stage, entry, key: str):
    """Apply a verified entry: files into the output folder, records into the run; returns the output. _MISSING
    (and a message, the entry removed) when the entry does not hold what this stage declares: nothing of it is
    applied then."""
    from convertctl.report.manifest import ArtifactRecord, CacheRecord, StageRecord
    from convertctl.stage_cache import BadEntry, failed_check

    cache = ctx.cache.cache
    t0 = time.perf_counter()
    try:
        state = entry.state
        output = _decode(stage.output, state["output"], entry, ctx.dir)
        computed = float(state["seconds"])
        hit = CacheRecord(hit=True, key=entry.meta["key"][:16], computed_seconds=computed)
        stages = [StageRecord.model_validate({**d, "cache": hit}) for d in state["stages"]]
        artifacts = [ArtifactRecord.model_validate({**d, "cache": hit}) for d in state["artifacts"]]
        messages = [str(m) for m in state["messages"]]
        cache.restore(entry, ctx.dir)
    except (BadEntry, KeyError, TypeError, ValueError, OSError) as exc:
        why = str(exc) if isinstance(exc, BadEntry) else f"its state is unusable ({type(exc).__name__}: {exc})"
        ctx.note(failed_check(stage.name, key, why)[:500])
        cache.discard(stage.name, key)
        return _MISSING
    seconds = round(time.perf_counter() - t0, 3)
    note = f"reused from the stage cache (key {key[:16]}; computing it took {computed} s)"
    ctx.note(*messages)
    for record in stages:
        record.seconds = seconds
        record.findings = [note, *record.findings]
        ctx.add(record)
    for record in artifacts:
        record.seconds = seconds
        ctx.add(record)
    return output
