"""The manifest: a versioned record of one run, written last. Every report is rendered from it alone."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from convertctl.schema import Tolerance

SCHEMA_VERSION = "1.3.0"  # 1.1: built_from, accuracy, sqnr_db, quantize stage; 1.2: latency; 1.3: cache

StageStatus = Literal["ok", "rolled_back", "skipped", "failed", "error"]
ArtifactStatus = Literal["ok", "failed", "error", "skipped"]
RunStatus = Literal["ok", "partial", "failed", "error"]


class FileRecord(BaseModel):
    path: str  # relative to the output folder; absolute for source files outside it
    sha256: str
    bytes: int


class OutputMetrics(BaseModel):
    shape: list[int]
    max_abs: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None  # 10*log10(|ref|^2 / |ref-actual|^2); None when identical
    top1_agreement: float | None = None
    finite: bool = True
    error: str | None = None


class Comparison(BaseModel):
    against: str  # what the outputs were compared with, e.g. "pytorch" or "onnx (exported)"
    outputs: dict[str, OutputMetrics] = Field(default_factory=dict)
    tolerance: Tolerance | None = None
    passed: bool | None = None  # None: no tolerance applied (informative comparison)
    failures: list[str] = Field(default_factory=list)


class CacheRecord(BaseModel):
    """Whether a stage (or an artifact's build) was computed or reused from the stage cache (stage_cache.py)."""

    hit: bool
    key: str  # the first 16 hex digits of the entry's key
    computed_seconds: float | None = None  # on a hit: how long computing it took when it was stored


class StageRecord(BaseModel):
    name: str
    status: StageStatus
    seconds: float
    inputs: list[FileRecord] = Field(default_factory=list)
    outputs: list[FileRecord] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    verification: list[Comparison] = Field(default_factory=list)
    cache: CacheRecord | None = None  # None: the stage cache was off or the stage is never cached


class LatencyRecord(BaseModel):
    """One artifact timed in its runtime, in a process of its own (warm-up first, then `runs` timed calls)."""

    status: Literal["measured", "skipped", "error"]
    reason: str | None = None  # why skipped / the error
    of: str  # what was timed: an artifact id, or "onnx fp32 (onnxruntime)" for the baseline
    batch: int = 1
    threads: int | None = None  # as the runtime reports it after loading
    warmup: int = 0
    runs: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    throughput_per_s: float | None = None  # samples per second at `batch` (batch / mean latency)
    speedup: float | None = None  # baseline p50 / this p50, both measured in the same run
    baseline: str | None = None  # `of` of the baseline measurement


class ArtifactRecord(BaseModel):
    id: str
    runtime: str
    precision: str
    status: ArtifactStatus
    reason: str | None = None
    seconds: float = 0.0
    files: list[FileRecord] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)  # what it was built and is to be run with
    effective: dict[str, Any] = Field(default_factory=dict)  # what the runtime reported using
    built_from: str = "fp32"  # the ONNX the build started from: fp32, qdq_s8, qdq_u8s8 or fp16
    verification: list[Comparison] = Field(default_factory=list)
    accuracy: dict[str, Any] | None = None  # top-1/top-5 on labelled samples, with the reference's and the drop
    cache: CacheRecord | None = None  # None: the stage cache was off, or the build is never cached (errors, kits)
    latency: LatencyRecord | None = None


class SamplesRecord(BaseModel):
    description: str
    sha256: str
    shapes: dict[str, list[int]]
    notes: list[str] = Field(default_factory=list)


class RecipeRecord(BaseModel):
    name: str
    path: str | None
    sha256: str
    content: dict[str, Any]


class Manifest(BaseModel):
    schema_version: str = SCHEMA_VERSION
    tool: dict[str, str]
    status: RunStatus
    exit_code: int
    started_at: str
    finished_at: str
    seconds: float
    recipe: RecipeRecord
    environment: dict[str, Any]
    samples: SamplesRecord | None = None
    files: list[FileRecord] = Field(default_factory=list)  # top-level deliverables: model.onnx (+ .data), samples.npz
    stages: list[StageRecord] = Field(default_factory=list)
    artifacts: list[ArtifactRecord] = Field(default_factory=list)
    latency_baseline: LatencyRecord | None = None  # the FP32 ONNX in ONNX Runtime: what `speedup` is against
    messages: list[str] = Field(default_factory=list)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path, root: Path) -> FileRecord:
    path = Path(path)
    shown = path.relative_to(root) if path.is_relative_to(root) else path.absolute()
    return FileRecord(path=shown.as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size)
