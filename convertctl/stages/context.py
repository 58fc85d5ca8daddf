"""The run's context every stage receives (fixed once the run starts); the model in flight is model.ModelInFlight."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convertctl.report.manifest import ArtifactRecord, SamplesRecord, StageRecord, file_record


@dataclass(frozen=True)
class Samples:
    """The data every artifact is verified on (samples.npz), and the calibration data when the recipe has some."""

    feeds: dict[str, np.ndarray]
    path: Path
    chunk: int | None  # how many samples one call takes (data/batching.py)
    labels: np.ndarray | None
    calib: Any  # quantize.calib_data.CalibrationData, or None
    record: SamplesRecord | None


@dataclass
class Records:
    """What the manifest is written from; stages add to it only through RunContext.add / note."""

    stages: list[StageRecord] = field(default_factory=list)
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunContext:
    """Everything a stage may read: the recipe (its inputs and dims already resolved; never changed during the
    run), the staging folder, the samples, the reporter. `records` and `cache` are the only moving parts."""

    recipe: Any  # recipe.Recipe
    recipe_sha: str
    recipe_path: Path | None
    dir: Path  # the staging folder; its final name is only known to the output folder (report/outdir.py)
    inputs: tuple  # the input specs fed (the recipe's, or the model's own)
    samples: Samples
    reporter: Any  # pipeline.Reporter
    records: Records
    versions: dict[str, str]  # the tracked packages' versions (part of every cache key)
    cache: Any = None  # stages/cache.py CacheHandle, or None

    def add(self, record: StageRecord | ArtifactRecord) -> None:
        (self.records.stages if isinstance(record, StageRecord) else self.records.artifacts).append(record)
        self.reporter.finish(record)

    def note(self, *messages: str) -> None:
        self.records.messages.extend(messages)

    def files(self, paths) -> list:
        """File records (path relative to the output folder, size, sha256) of those that exist."""
        return [file_record(p, self.dir) for p in paths if Path(p).exists()]

    def tolerance(self, precision: str, override=None):
        return override or self.recipe.verify.tolerances[precision]
