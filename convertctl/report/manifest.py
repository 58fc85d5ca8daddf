"""The manifest: a versioned record of one run, written last. Every report is rendered from it alone."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError

from convertctl.schema import Tolerance

SCHEMA_VERSION = "1.4.0"  # 1.1: built_from, accuracy, sqnr_db, quantize stage; 1.2: latency; 1.3: cache;
# 1.4: tolerance atol/rtol, per-output ref_rms, ref_half_range, close_bound, decided_by, passed

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
    cosine: float | None = None  # None when undefined: one side all zeros, the other not
    sqnr_db: float | None = None  # 10*log10(|ref|^2 / |ref-actual|^2); None when identical
    top1_agreement: float | None = None
    finite: bool = True
    error: str | None = None
    ref_rms: float | None = None  # root mean square of the reference: the output's scale, what `rtol` multiplies
    ref_half_range: float | None = None  # (max - min) / 2 of the reference: how far it strays from one value
    # Set by a tolerance (compare.judge): atol + rtol * ref_rms (None without atol and rtol); the criterion that
    # decided (allclose: within close_bound; cosine: the similarity bounds; absolute: no signal, absolute error
    # only); whether this output passed (None: no tolerance)
    close_bound: float | None = None
    decided_by: Literal["allclose", "cosine", "absolute"] | None = None
    passed: bool | None = None


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


# ------------------------------------------------------------------------------------ reading a manifest file
# `diff` and `merge` read manifests other jobs (or people) hand them: everything is checked before it is used,
# so garbage is one line and exit 2, never a traceback and never a verdict drawn from it.

MAX_MANIFEST_BYTES = 64 << 20  # a real manifest is tens of KB: anything near this is not one
COSINE_SLACK = 1e-6  # a float64 cosine of identical outputs can come out a hair above 1

# Fields added after 1.0: a manifest older than the version lacks them (readers use the defaults); one of this
# version or newer was written with them (pydantic writes every field), so their absence means a damaged file.
ADDED_IN = {("Manifest", "files"): (1, 1), ("OutputMetrics", "sqnr_db"): (1, 1), ("ArtifactRecord", "built_from"): (1, 1),
            ("ArtifactRecord", "accuracy"): (1, 1), ("ArtifactRecord", "latency"): (1, 2),
            ("Manifest", "latency_baseline"): (1, 2), ("StageRecord", "cache"): (1, 3),
            ("ArtifactRecord", "cache"): (1, 3), **{("OutputMetrics", k): (1, 4) for k in (
                "ref_rms", "ref_half_range", "close_bound", "decided_by", "passed")}}
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
_UNIT_KEYS = ("top1", "top5", "reference_top1", "reference_top5")  # fractions in an artifact's `accuracy`


def read_manifest(path: Path, who: str) -> tuple[Manifest, bytes]:
    """Read and check one manifest file; `who` names it in every error ("NEW out/x/manifest.json").

    Returns the validated manifest and the file's bytes (what was checked is what a caller copies).
    Any problem is a UsageError (exit 2) naming the file and, for a bad value, its first bad field."""
    from convertctl.errors import UsageError

    hint = "give a manifest.json written by convertctl"
    raw = _read_bounded(path, who)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{who}: not JSON ({exc})", hint=hint) from None
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        raise UsageError(f"{who}: not a convertctl manifest (a number with thousands of digits)", hint=hint) from None
    except RecursionError:
        raise UsageError(f"{who}: not a convertctl manifest (JSON nested too deeply)", hint=hint) from None
    if not isinstance(data, dict) or "schema_version" not in data:
        what = "" if isinstance(data, dict) else f": the file holds a JSON {_JSON_TYPES[type(data)]}, not an object"
        raise UsageError(f"{who}: not a convertctl manifest (no schema_version){what}", hint=hint)
    version = _version(data["schema_version"])
    if version is None:
        raise UsageError(f"{who}: not a valid manifest: schema_version: {data['schema_version']!r} is not a "
                         "version (MAJOR.MINOR.PATCH)", hint=hint)
    ours = int(SCHEMA_VERSION.split(".")[0])
    if version[0] != ours:
        raise UsageError(f"{who}: manifest schema {data['schema_version']} is not supported: this convertctl reads "
                         f"{ours}.x", hint="read it with the convertctl version that wrote it")
    manifest, problem = None, _non_finite(data) or _first_missing(Manifest, data, "", version)
    if problem is None:
        manifest, problem = _validated(data)
    if problem is None:
        problem = _bad_value(manifest) or _content_problem(manifest)
    if problem:
        raise UsageError(f"{who}: not a valid manifest: {problem}", hint=hint)
    return manifest, raw


def _read_bounded(path: Path, who: str) -> bytes:
    from convertctl.errors import UsageError

    try:
        if not Path(path).is_file():  # a FIFO or a device would block or never end
            raise UsageError(f"{who}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{who}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UsageError(f"{who}: larger than {MAX_MANIFEST_BYTES >> 20} MiB: not a convertctl manifest")
    return raw


def _version(value: Any) -> tuple[int, int] | None:
    """(major, minor) of "1.3.0"; None when it is not a version string."""
    parts = str(value).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def _non_finite(data: Any) -> str | None:
    """The first NaN or ±Infinity anywhere: Python's json reads them, JSON has none, convertctl never writes one
    (pydantic writes null), and each would pass or fail any comparison silently."""
    todo: list[tuple[str, Any]] = [("", data)]
    while todo:  # iterative: a deep file must not overflow the stack
        loc, value = todo.pop()
        if isinstance(value, float) and not math.isfinite(value):
            literal = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
            return f"{loc or '(top level)'}: {literal} is not a number (JSON has no NaN or Infinity)"
        if isinstance(value, dict):
            todo += [(f"{loc}.{k}" if loc else str(k), v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            todo += [(f"{loc}.{i}", v) for i, v in reversed(list(enumerate(value)))]
    return None


def _records(annotation: Any, value: Any, loc: str):
    """(model, value, loc) of every manifest record inside one field's value (lists, dicts, optionals)."""
    if isinstance(annotation, type) and annotation in _RECORDS:
        yield annotation, value, loc
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _records(args[0], item, f"{loc}.{i}")
    elif origin is dict and isinstance(value, dict):
        for key, item in value.items():
            yield from _records(args[1], item, f"{loc}.{key}")
    elif origin in (Union, UnionType) and value is not None:
        for arg in args:
            yield from _records(arg, value, loc)


def _first_missing(model: type[BaseModel], data: Any, loc: str, version: tuple[int, int]) -> str | None:
    """The first field a manifest of `version` was written with and this one lacks (e.g. `artifacts`)."""
    if not isinstance(data, dict):
        return None  # a wrong type: pydantic names it
    for name, field in model.model_fields.items():
        where = f"{loc}.{name}" if loc else name
        if name not in data:
            if version >= ADDED_IN.get((model.__name__, name), (1, 0)):
                return f"{where}: Field required"
            continue
        for sub, value, sub_loc in _records(field.annotation, data[name], where):
            found = _first_missing(sub, value, sub_loc, version)
            if found:
                return found
    return None


def _validated(data: dict) -> tuple[Manifest | None, str | None]:
    """The pydantic model (the published JSON Schema is generated from it), or its first error."""
    try:
        return Manifest.model_validate(data, strict=True), None  # strict: "0.9" is no cosine, "0" no exit code
    except ValidationError as exc:
        err = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"


def _bad_value(m: Manifest) -> str | None:
    """The first value no run can have: a negative time, size or latency, a cosine outside [-1, 1], a fraction
    outside [0, 1], an exit code convertctl does not return, two artifacts with one id."""
    checks = [("exit_code", m.exit_code, _exit_code), ("seconds", m.seconds, _non_negative),
              ("recipe.name", m.recipe.name, _non_empty)]
    checks += _files(m.files, "files")
    for i, s in enumerate(m.stages):
        checks += [(f"stages.{i}.seconds", s.seconds, _non_negative), *_files(s.inputs, f"stages.{i}.inputs"),
                   *_files(s.outputs, f"stages.{i}.outputs"), *_comparisons(s.verification, f"stages.{i}"),
                   *_cache(s.cache, f"stages.{i}.cache")]
    seen: dict[str, int] = {}
    for i, a in enumerate(m.artifacts):
        where = f"artifacts.{i}"
        if a.id in seen:
            return f"{where}.id: {a.id!r} is also the id of artifacts.{seen[a.id]}"
        seen[a.id] = i
        checks += [(f"{where}.seconds", a.seconds, _non_negative), *_files(a.files, f"{where}.files"),
                   *_comparisons(a.verification, where), *_latency(a.latency, f"{where}.latency"),
                   *_accuracy(a.accuracy, f"{where}.accuracy"), *_cache(a.cache, f"{where}.cache")]
    checks += _latency(m.latency_baseline, "latency_baseline")
    for loc, value, rule in checks:
        problem = rule(value)
        if problem:
            return f"{loc}: {problem}"
    return None


def _files(files: list[FileRecord], loc: str) -> list:
    return [(f"{loc}.{i}.bytes", f.bytes, _non_negative) for i, f in enumerate(files)]


def _comparisons(comparisons: list[Comparison], loc: str) -> list:
    out = []
    for i, c in enumerate(comparisons):
        for name, o in c.outputs.items():
            where = f"{loc}.verification.{i}.outputs.{name}"
            out += [(f"{where}.cosine", o.cosine, _cosine), (f"{where}.top1_agreement", o.top1_agreement, _unit),
                    *[(f"{where}.{k}", getattr(o, k), _non_negative)
                      for k in ("max_abs", "mean_abs", "max_rel", "ref_rms", "ref_half_range", "close_bound")]]
    return out


def _latency(lat: LatencyRecord | None, loc: str) -> list:
    if lat is None:
        return []
    keys = ("batch", "threads", "warmup", "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms",
            "throughput_per_s", "speedup")
    return [(f"{loc}.{k}", getattr(lat, k), _non_negative) for k in keys]


def _accuracy(acc: dict[str, Any] | None, loc: str) -> list:
    if acc is None:
        return []
    out = [(f"{loc}.{k}", acc[k], _unit) for k in _UNIT_KEYS if k in acc]
    if "top1_drop" in acc:
        out.append((f"{loc}.top1_drop", acc["top1_drop"], _signed_unit))
    return out


def _cache(cache: CacheRecord | None, loc: str) -> list:
    return [] if cache is None else [(f"{loc}.computed_seconds", cache.computed_seconds, _non_negative)]


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value!r} is not a number"
    return None


def _non_negative(value: Any) -> str | None:
    if value is None:
        return None
    return _number(value) or (f"{value} is negative" if value < 0 else None)


def _unit(value: Any) -> str | None:
    if value is None:
        return None
    return _number(value) or (f"{value} is outside [0, 1]" if not 0 <= value <= 1 else None)


def _signed_unit(value: Any) -> str | None:
    if value is None:
        return None
    return _number(value) or (f"{value} is outside [-1, 1]" if not -1 <= value <= 1 else None)


def _cosine(value: float | None) -> str | None:
    if value is None or -1 - COSINE_SLACK <= value <= 1 + COSINE_SLACK:
        return None
    return f"{value} is outside [-1, 1]"


def _exit_code(value: int) -> str | None:
    return None if 0 <= value <= 5 else f"{value} is not an exit code a run records (0-5)"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "empty"


def _content_problem(m: Manifest) -> str | None:
    """The free-form parts (recipe content, stage details, environment) in the shape their readers rely on."""
    content = m.recipe.content
    verify = content.get("verify")
    if verify is not None and not isinstance(verify, dict):
        return "recipe.content.verify: not a mapping"
    regression = (verify or {}).get("regression")
    if regression is not None and not isinstance(regression, dict):
        return "recipe.content.verify.regression: not a mapping"
    targets = content.get("targets")
    for i, t in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(t, dict):
            return f"recipe.content.targets.{i}: not a mapping"
        for key in ("name", "runtime", "precision"):
            if t.get(key) is not None and not isinstance(t[key], str):
                return f"recipe.content.targets.{i}.{key}: {t[key]!r} is not a string"
    for i, s in enumerate(m.stages):
        counts = s.details.get("op_counts")
        if counts is not None and not (isinstance(counts, dict) and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values())):
            return f"stages.{i}.details.op_counts: not a mapping of operator to count"
    packages = m.environment.get("packages")
    if packages is not None and not (isinstance(packages, dict) and all(
            v is None or isinstance(v, str) for v in packages.values())):
        return "environment.packages: not a mapping of package to version"
    return None


_RECORDS = (FileRecord, OutputMetrics, Comparison, CacheRecord, StageRecord, LatencyRecord, ArtifactRecord,
            SamplesRecord, RecipeRecord)
