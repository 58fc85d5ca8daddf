"""The stage cache's wiring into a run: each stage's key, and storing or restoring its result.

A mixin of pipeline.Run (it reads the run's recipe, samples and in-memory state); the cache itself, its
atomic writes, locks and hash checks are in stage_cache.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from convertctl.report.manifest import sha256_file


class StageCaching:
    def _open_cache(self):
        from convertctl.report.environment import package_versions
        from convertctl.stage_cache import StageCache, stage_cache_dir

        root = stage_cache_dir()
        self.cache = StageCache(root) if root is not None else None
        self.versions = package_versions()

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
                **self._section("check"), **self._data_key()}

    def _quantize_key(self) -> dict:
        calib = self.recipe.model_dump(mode="json").get("calibration") or {}
        for key in ("data", "cache"):
            calib.pop(key, None)  # the data's content is in its hash
        return {"onnx": self._sha(self.onnx), "calibration": calib, "data": self.calib.sha256 if self.calib else None,
                "targets": [t.model_dump(mode="json") for t in self.recipe.targets if t.runtime not in self.unsupported],
                **self._section("quantize"), **self._data_key()}

    def _build_key(self, spec) -> dict:
        import hashlib

        from convertctl.targets import registry

        emission = self.emissions.get(registry.get(spec.runtime).emission(spec))  # set by the quantize stage
        if getattr(self, "_reference_sha", None) is None:  # the export's reference: the same for every target
            self._reference_sha = hashlib.sha256(
                b"".join(np.ascontiguousarray(r).tobytes() for r in self.reference)).hexdigest()
        return {"target": spec.model_dump(mode="json"), "emission": self._sha(emission) if emission else None,
                "unsupported": self.unsupported.get(spec.runtime), "reference": self._reference_sha,
                "calibration": self.calib.sha256 if self.calib else None, **self._section("quantize", "dims"),
                **self._data_key()}

    def _cached(self, stage: str, key_parts, compute, folders: list[str], paths=(), arrays=(), values=(),
                path_maps=()):
        """Run `compute` (a stage), or restore its result from the stage cache when its inputs are unchanged.

        `folders`: what the stage writes below the output folder; `paths`, `path_maps`, `arrays`, `values`:
        the attributes later stages read (files in the output folder, dicts of them, numpy arrays, JSON)."""
        if self.cache is None:
            return compute()
        from convertctl.stage_cache import make_key

        try:
            key = make_key(stage, key_parts())
        except Exception as exc:  # a key that cannot be made (an unreadable file): compute, and say why
            self.messages.append(f"stage cache: {stage} not cached ({type(exc).__name__}: {exc})"[:300])
            return compute()
        with self.cache.locked(stage.split("/")[0], key):
            entry, problem = self.cache.get(stage.split("/")[0], key)
            if problem:
                self.messages.append(problem)
            if entry is not None:
                return self._restore(entry, key)
            marks = len(self.stages), len(self.artifacts), len(self.messages)
            t0 = time.perf_counter()
            compute()
            self._store(stage, key, folders, marks, round(time.perf_counter() - t0, 3), paths, arrays, values,
                        path_maps)

    def _store(self, stage, key, folders, marks, seconds, paths, arrays, values, path_maps):
        import tempfile

        from convertctl.report.manifest import CacheRecord

        stages, artifacts = self.stages[marks[0]:], self.artifacts[marks[1]:]
        if any(s.status not in ("ok", "failed", "rolled_back", "skipped") for s in stages) or \
                any(a.status not in ("ok", "failed") for a in artifacts) or not (stages or artifacts):
            return  # errors, kits, skipped builds depend on this machine's state, not only on the inputs
        record = CacheRecord(hit=False, key=key[:16])
        for r in [*stages, *artifacts]:
            r.cache = record
        files = {str(f.relative_to(self.dir)): f for folder in folders if (self.dir / folder).is_dir()
                 for f in sorted((self.dir / folder).rglob("*")) if f.is_file()}
        state = {"stages": [r.model_dump(mode="json") for r in stages],
                 "artifacts": [r.model_dump(mode="json") for r in artifacts],
                 "messages": self.messages[marks[2]:], "seconds": seconds,
                 "paths": {a: str(Path(getattr(self, a)).relative_to(self.dir)) for a in paths},
                 "path_maps": {a: {k: str(Path(v).relative_to(self.dir)) for k, v in getattr(self, a).items()}
                               for a in path_maps},
                 "values": {a: getattr(self, a) for a in values}}
        with tempfile.TemporaryDirectory() as tmp:
            for a in arrays:  # kept in the entry, not restored into the output folder
                np.savez(Path(tmp) / f"{a}.npz", *getattr(self, a))
                files[f"_state/{a}.npz"] = Path(tmp) / f"{a}.npz"
            self.cache.put(stage.split("/")[0], key, files, state)

    def _restore(self, entry, key):
        from convertctl.frontends.result import load_reference
        from convertctl.report.manifest import ArtifactRecord, CacheRecord, StageRecord

        t0 = time.perf_counter()
        state = entry.state
        self.cache.restore(entry, self.dir)
        for a, rel in state["paths"].items():
            setattr(self, a, self.dir / rel)
        for a, mapping in state["path_maps"].items():
            setattr(self, a, {k: self.dir / v for k, v in mapping.items()})
        for a, value in state["values"].items():
            setattr(self, a, value)
        for rel in entry.files:
            if rel.startswith("_state/"):
                setattr(self, Path(rel).stem, load_reference(entry.folder / "files" / rel))
        seconds = round(time.perf_counter() - t0, 3)
        record = CacheRecord(hit=True, key=key[:16], computed_seconds=state["seconds"])
        note = f"reused from the stage cache (key {key[:16]}; computing it took {state['seconds']} s)"
        self.messages.extend(state["messages"])
        for data in state["stages"]:
            stage = StageRecord.model_validate({**data, "seconds": seconds, "cache": record})
            stage.findings = [note, *stage.findings]
            self._stage(stage)
        for data in state["artifacts"]:
            artifact = ArtifactRecord.model_validate({**data, "seconds": seconds, "cache": record})
            self.artifacts.append(artifact)
            self.reporter.finish(artifact)

