"""The stage cache's wiring into a run: each stage's key, and storing or restoring its result.

A mixin of pipeline.Run (it reads the run's recipe, samples and in-memory state); the cache itself, its
atomic writes, locks and hash checks are in stage_cache.py.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from convertctl.report.manifest import sha256_file


class StageCaching:
    def _open_cache(self):
        from convertctl.paths import stage_cache_dir
        from convertctl.report.environment import package_versions
        from convertctl.stage_cache import StageCache

        root = stage_cache_dir()
        self.cache = StageCache(root) if root is not None else None
        self.versions = package_versions()
        problem = self.cache.usable() if self.cache is not None else None
        if problem:  # a cache only saves time: a folder that cannot hold it is a note, never a failed run
            self.messages.append(f"stage cache folder {root} cannot be used ({problem}): this run is computed "
                                 "and not cached")
            self.cache = None

    def _sha(self, path) -> str:
        from convertctl.model import companion_files

        return ",".join(sha256_file(f) for f in companion_files(Path(path)))

    def _section(self, *names) -> dict:
        return {n: self.recipe.model_dump(mode="json")[n] for n in names}

    def _data_key(self) -> dict:
        """What every stage's verification depends on: the samples, the labels, the versions."""
        import hashlib

        labels = None if self.labels is None else hashlib.sha256(np.ascontiguousarray(self.labels)).hexdigest()
        return {"samples": self.samples_record.sha256 if self.samples_record else None, "labels": labels,
                "chunk": self.chunk, "versions": self.versions,
                "tolerances": self.recipe.verify.model_dump(mode="json")["tolerances"]}

    def _export_key(self) -> dict:
        import hashlib

        src = self.recipe.model_dump(mode="json")["source"]
        src.pop("path", None)  # where the model is does not matter, its bytes do
        factory = src.get("factory") or ""
        if factory.rpartition(":")[0].endswith(".py"):
            src["factory"] = Path(factory.rpartition(":")[0]).name + ":" + factory.rpartition(":")[2]
        files = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in self._source_files() if Path(f).is_file())
        return {"source": src, "files": files, **self._section("inputs", "dims", "export"), **self._data_key()}

    def _onnx_key(self) -> dict:
        return {"onnx": self._sha(self.onnx), **self._section("optimize"), **self._data_key()}

    def _check_key(self) -> dict:
        from convertctl.recipe import explicit_dim_ranges

        runtimes = sorted({t.runtime for t in self.recipe.targets}) if "build" in self.recipe.stages else []
        return {"onnx": self._sha(self.onnx), "runtimes": runtimes, "dims": explicit_dim_ranges(self.recipe),
                "inputs": [s.model_dump(mode="json") for s in self.inputs or []],  # the check names dims by them
                **self._section("check"), **self._data_key()}

    def _quantize_key(self) -> dict:
        from convertctl.quantize.stage import quantize_cpu_key

        calib = self.recipe.model_dump(mode="json").get("calibration") or {}
        for key in ("data", "cache"):
            calib.pop(key, None)  # the data's content is in its hash
        return {"onnx": self._sha(self.onnx), "calibration": calib, "data": self.calib.sha256 if self.calib else None,
                "targets": [t.model_dump(mode="json") for t in self.recipe.targets if t.runtime not in self.unsupported],
                **self._section("quantize"), **self._data_key(), **quantize_cpu_key()}

    def _build_key(self, spec) -> dict:
        import hashlib

        from convertctl.quantize.stage import quantize_cpu_key
        from convertctl.targets import registry

        emission = self.emissions.get(registry.get(spec.runtime).emission(spec))  # set by the quantize stage
        if getattr(self, "_reference_sha", None) is None:  # the export's reference: the same for every target
            self._reference_sha = hashlib.sha256(
                b"".join(np.ascontiguousarray(r).tobytes() for r in self.reference)).hexdigest()
        return {"target": spec.model_dump(mode="json"), "emission": self._sha(emission) if emission else None,
                "unsupported": self.unsupported.get(spec.runtime), "reference": self._reference_sha,
                "calibration": self.calib.sha256 if self.calib else None, **self._section("quantize", "dims"),
                **self._data_key(), **(quantize_cpu_key() if spec.precision == "int8" else {})}

    def _cached(self, stage: str, key_parts, compute, folders: list[str], paths=(), arrays=(), values=(),
                path_maps=()):
        """Run `compute` (a stage), or restore its result from the stage cache when its inputs are unchanged.

        `folders`: what the stage writes below the output folder; `paths`, `path_maps`, `arrays`, `values`:
        the attributes later stages read (files in the output folder, dicts of them, numpy arrays, JSON).
        A cache that cannot be used, or an entry that fails its checks, is a note: the stage is computed."""
        if self.cache is None:
            return compute()
        from convertctl.stage_cache import make_key

        try:
            key = make_key(stage, key_parts())
        except Exception as exc:  # a key that cannot be made (an unreadable file): compute, and say why
            self.messages.append(f"stage cache: {stage} not cached ({type(exc).__name__}: {exc})"[:300])
            return compute()
        attrs = {"paths": paths, "arrays": arrays, "values": values, "path_maps": path_maps}
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(self.cache.locked(stage, key))
                entry, problem = self.cache.get(stage, key)
            except OSError as exc:  # the folder went bad during the run (a link, a file, disk full): go on uncached
                self._cache_unusable(exc)
                return compute()
            if problem:
                self.messages.append(problem)
            if entry is not None and self._restore(stage, entry, key, attrs):
                return None
            marks = len(self.stages), len(self.artifacts), len(self.messages)
            t0 = time.perf_counter()
            compute()
            try:
                self._store(stage, key, folders, marks, round(time.perf_counter() - t0, 3), attrs)
            except (OSError, ValueError) as exc:  # the result is in the output folder either way
                self.messages.append(f"stage cache: {stage} computed but not stored ({type(exc).__name__}: "
                                     f"{getattr(exc, 'strerror', None) or exc})"[:300])

    def _cache_unusable(self, exc: OSError) -> None:
        self.messages.append(f"stage cache folder {self.cache.root} cannot be used ({type(exc).__name__}: "
                             f"{exc.strerror or exc}): the rest of this run is computed and not cached"[:400])
        self.cache = None

    def _store(self, stage, key, folders, marks, seconds, attrs):
        import tempfile

        from convertctl.report.manifest import CacheRecord

        stages, artifacts = self.stages[marks[0]:], self.artifacts[marks[1]:]
        if any(s.status not in ("ok", "failed", "rolled_back", "skipped") for s in stages) or \
                any(a.status not in ("ok", "failed") for a in artifacts) or not (stages or artifacts):
            return  # errors, kits, skipped builds depend on this machine's state, not only on the inputs
        record = CacheRecord(hit=False, key=key[:16])
        for r in [*stages, *artifacts]:
            r.cache = record
        files = {f.relative_to(self.dir).as_posix(): f for folder in folders if (self.dir / folder).is_dir()
                 for f in sorted((self.dir / folder).rglob("*")) if f.is_file()}
        state = {"stages": [r.model_dump(mode="json") for r in stages],
                 "artifacts": [r.model_dump(mode="json") for r in artifacts],
                 "messages": self.messages[marks[2]:], "seconds": seconds,
                 "paths": {a: Path(getattr(self, a)).relative_to(self.dir).as_posix() for a in attrs["paths"]},
                 "path_maps": {a: {k: Path(v).relative_to(self.dir).as_posix() for k, v in getattr(self, a).items()}
                               for a in attrs["path_maps"]},
                 "values": {a: getattr(self, a) for a in attrs["values"]}}
        with tempfile.TemporaryDirectory() as tmp:
            for a in attrs["arrays"]:  # kept in the entry, not restored into the output folder
                np.savez(Path(tmp) / f"{a}.npz", *getattr(self, a))
                files[f"_state/{a}.npz"] = Path(tmp) / f"{a}.npz"
            _, cleaned = self.cache.put(stage, key, files, state)
        if cleaned:
            self.messages.append(f"stage cache: removed {cleaned} unfinished entr{'y' if cleaned == 1 else 'ies'} "
                                 "left by an interrupted run")

    def _restore(self, stage, entry, key, attrs) -> bool:
        """Apply a verified entry: files into the output folder, state into the run. False (and a message, the
        entry removed) when the entry does not hold what this stage needs; nothing of it is applied then."""
        from convertctl.stage_cache import BadEntry, failed_check

        t0 = time.perf_counter()
        try:
            plan = self._restore_plan(entry, attrs)
            self.cache.restore(entry, self.dir)
        except (BadEntry, KeyError, TypeError, ValueError, OSError) as exc:
            why = str(exc) if isinstance(exc, BadEntry) else f"its state is unusable ({type(exc).__name__}: {exc})"
            self.messages.append(failed_check(stage, key, why)[:500])
            self.cache.discard(stage, key)
            return False
        for name, value in plan["attrs"].items():
            setattr(self, name, value)
        seconds = round(time.perf_counter() - t0, 3)
        note = f"reused from the stage cache (key {key[:16]}; computing it took {plan['seconds']} s)"
        self.messages.extend(plan["messages"])
        for stage_record in plan["stages"]:
            stage_record.seconds = seconds
            stage_record.findings = [note, *stage_record.findings]
            self._stage(stage_record)
        for artifact in plan["artifacts"]:
            artifact.seconds = seconds
            self.artifacts.append(artifact)
            self.reporter.finish(artifact)
        return True

    def _restore_plan(self, entry, attrs) -> dict:
        """Read and check an entry's state before anything is applied: only the attributes this stage declares,
        paths inside the output folder, records that validate."""
        import io

        from convertctl.report.manifest import ArtifactRecord, CacheRecord, StageRecord
        from convertctl.stage_cache import safe_relative

        state = entry.state

        def inside(rel):
            if not safe_relative(rel):
                raise ValueError(f"a path outside the output folder: {rel!r}")
            return self.dir / rel

        out = {name: inside(state["paths"][name]) for name in attrs["paths"]}
        out.update({name: {str(k): inside(v) for k, v in state["path_maps"][name].items()}
                    for name in attrs["path_maps"]})
        out.update({name: state["values"][name] for name in attrs["values"]})
        for name in attrs["arrays"]:
            with np.load(io.BytesIO(entry.read(f"_state/{name}.npz"))) as data:
                out[name] = [data[f"arr_{i}"] for i in range(len(data.files))]
        seconds = float(state["seconds"])
        record = CacheRecord(hit=True, key=entry.meta["key"][:16], computed_seconds=seconds)
        return {"attrs": out, "seconds": seconds, "messages": [str(m) for m in state["messages"]],
                "stages": [StageRecord.model_validate({**d, "cache": record}) for d in state["stages"]],
                "artifacts": [ArtifactRecord.model_validate({**d, "cache": record}) for d in state["artifacts"]]}
