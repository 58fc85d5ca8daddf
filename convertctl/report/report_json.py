"""report.json: the run's results in one flat, versioned document for CI scripts and dashboards.

Rendered from the manifest (plus quantize/layer_errors.json, quantize/sensitivity.json and
quantize/histograms.json when the run folder is given): per artifact what it is, how close it is to the
reference, how fast it runs, whether its gate passed; the run's status; the calibration; the worst
layers, the most sensitive ones (what the suggested exclusions come from) and their clipping.
It carries its own schema version, independent of the manifest's. `write_reports` writes it with
report.md (and summary.md, the same text) and report.html.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from convertctl.report.manifest import ArtifactRecord, LatencyRecord, Manifest

REPORT_SCHEMA_VERSION = "1.0.0"
WORST_LAYERS = 10


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccuracyReport(_Model):
    """The artifact against the reference (the FP32 source model): worst value over the outputs."""

    against: str
    cosine: float | None = None  # lowest over the outputs
    sqnr_db: float | None = None  # lowest; null when every output is identical
    max_abs: float | None = None  # highest
    top1_agreement: float | None = None  # lowest; null without a [N, C] output
    top1: float | None = None  # labelled data only (else null): this artifact's top-1 accuracy
    top5: float | None = None
    reference_top1: float | None = None
    reference_top5: float | None = None
    top1_drop: float | None = None  # reference_top1 - top1
    labelled_samples: int | None = None


class LatencyReport(_Model):
    of: str
    status: str  # measured | skipped | error
    reason: str | None = None
    batch: int
    threads: int | None = None
    runs: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    throughput_per_s: float | None = None
    speedup: float | None = None  # baseline p50 / this p50
    baseline: str | None = None


class GateReport(_Model):
    passed: bool | None  # null: no tolerance applied
    failures: list[str] = Field(default_factory=list)
    tolerance: dict[str, Any] | None = None


class ArtifactReport(_Model):
    id: str
    runtime: str
    precision: str
    built_from: str
    status: str
    reason: str | None = None
    bytes: int  # all of the artifact's files
    accuracy: AccuracyReport | None = None
    latency: LatencyReport | None = None
    gate: GateReport | None = None


class CalibrationReport(_Model):
    method: str | None = None
    percentile: float | None = None
    num_samples: int | None = None
    tensors: int | None = None
    reused: bool | None = None
    invalidated: str | None = None
    table_sha256: str | None = None


class LayerReport(_Model):
    node: str
    op: str
    source: str | None = None
    output: str | None = None
    sqnr_db: float
    introduced_db: float
    cosine: float | None = None


class SensitivityReport(_Model):
    """One layer with only its weights in INT8 (quantize/sensitivity.json): the model outputs against FP32."""

    node: str
    op: str
    source: str | None = None
    sqnr_db: float  # lowest over the model outputs
    cosine: float | None = None
    weight_sqnr_db: float | None = None


class LayersReport(_Model):
    model: str
    total: int | None = None  # layers ranked (null when only the manifest's top 10 was at hand)
    worst: list[LayerReport]
    sensitivity: list[SensitivityReport] = Field(default_factory=list)  # most sensitive first
    suggested_exclude_nodes: list[str] = Field(default_factory=list)  # from `sensitivity`


class HistogramReport(_Model):
    node: str
    tensor: str  # the float tensor the layer's input Q node quantizes
    range_tensor: str | None = None  # the calibration-table entry [lo, hi] comes from (a shared scale's tensor)
    range: list[float]  # [lo, hi] from the calibration table
    clipped_fraction: float  # of the values, outside [lo, hi]
    range_used: float  # share of [lo, hi] the observed values span
    grid: list[float] | None = None  # what the Q node's scale and zero point can represent
    grid_used: float | None = None  # share of the grid the observed values span
    min: float | None = None  # observed on the evaluation slice
    max: float | None = None
    values: int | None = None


class StageReport(_Model):
    name: str
    status: str
    seconds: float


class Report(_Model):
    report_schema_version: str = REPORT_SCHEMA_VERSION
    manifest_schema_version: str
    tool: dict[str, str]
    recipe: str
    status: str
    exit_code: int
    started_at: str
    finished_at: str
    seconds: float
    samples: str | None = None  # description of the verification data
    stages: list[StageReport] = Field(default_factory=list)
    artifacts: list[ArtifactReport] = Field(default_factory=list)
    latency_baseline: LatencyReport | None = None
    calibration: CalibrationReport | None = None
    layers: LayersReport | None = None
    histograms: list[HistogramReport] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)


def _latency(r: LatencyRecord | None) -> LatencyReport | None:
    if r is None:
        return None
    return LatencyReport(of=r.of, status=r.status, reason=r.reason, batch=r.batch, threads=r.threads, runs=r.runs,
                         p50_ms=r.p50_ms, p90_ms=r.p90_ms, p99_ms=r.p99_ms, throughput_per_s=r.throughput_per_s,
                         speedup=r.speedup, baseline=r.baseline)


def _artifact(a: ArtifactRecord) -> ArtifactReport:
    gate = a.verification[0] if a.verification else None
    accuracy = None
    if gate is not None:
        outs = [o for o in gate.outputs.values() if not o.error]
        pick = lambda key, fn: fn((getattr(o, key) for o in outs if getattr(o, key) is not None), default=None)  # noqa: E731
        lab = a.accuracy or {}
        accuracy = AccuracyReport(
            against=gate.against, cosine=pick("cosine", min), sqnr_db=pick("sqnr_db", min),
            max_abs=pick("max_abs", max), top1_agreement=pick("top1_agreement", min),
            top1=lab.get("top1"), top5=lab.get("top5"), reference_top1=lab.get("reference_top1"),
            reference_top5=lab.get("reference_top5"), top1_drop=lab.get("top1_drop"), labelled_samples=lab.get("samples"))
    return ArtifactReport(
        id=a.id, runtime=a.runtime, precision=a.precision, built_from=a.built_from, status=a.status, reason=a.reason,
        bytes=sum(f.bytes for f in a.files), accuracy=accuracy, latency=_latency(a.latency),
        gate=GateReport(passed=gate.passed, failures=gate.failures,
                        tolerance=gate.tolerance.model_dump() if gate.tolerance else None) if gate else None)


def _read(folder: Path | None, name: str):
    path = Path(folder) / "quantize" / name if folder is not None else None
    return json.loads(path.read_text()) if path is not None and path.exists() else None


def build_report(m: Manifest, folder: Path | None = None) -> Report:
    """The report of a run; `folder` (its output folder) adds the full layer ranking and histogram numbers."""
    quant = next((s for s in m.stages if s.name == "quantize"), None)
    details = quant.details if quant else {}
    calibration = None
    if details.get("calibration"):
        c = details["calibration"]
        calibration = CalibrationReport(**{k: c.get(k) for k in CalibrationReport.model_fields})
    layers = None
    if details.get("layers"):
        rows = _read(folder, "layer_errors.json")
        top = rows if rows is not None else details["layers"].get("worst", [])
        sens = _read(folder, "sensitivity.json")
        sens = sens if sens is not None else details["layers"].get("sensitivity", [])
        keep, keep_sens = set(LayerReport.model_fields), set(SensitivityReport.model_fields)
        layers = LayersReport(model=details["layers"]["model"], total=len(rows) if rows is not None else None,
                              worst=[LayerReport(**{k: v for k, v in r.items() if k in keep}) for r in top[:WORST_LAYERS]],
                              sensitivity=[SensitivityReport(**{k: v for k, v in r.items() if k in keep_sens})
                                           for r in sens[:WORST_LAYERS]],
                              suggested_exclude_nodes=details["layers"].get("suggested_exclude_nodes", []))
    doc = _read(folder, "histograms.json")
    hist_rows = doc["layers"] if doc is not None else (details.get("histograms") or {}).get("layers", [])
    keep = set(HistogramReport.model_fields)
    histograms = [HistogramReport(**{k: v for k, v in h.items() if k in keep}) for h in hist_rows]
    return Report(
        manifest_schema_version=m.schema_version, tool=m.tool, recipe=m.recipe.name, status=m.status,
        exit_code=m.exit_code, started_at=m.started_at, finished_at=m.finished_at, seconds=m.seconds,
        samples=m.samples.description if m.samples else None,
        stages=[StageReport(name=s.name, status=s.status, seconds=s.seconds) for s in m.stages],
        artifacts=[_artifact(a) for a in m.artifacts], latency_baseline=_latency(m.latency_baseline),
        calibration=calibration, layers=layers, histograms=histograms, messages=m.messages)


def write_reports(m: Manifest, folder: Path) -> list[Path]:
    """report.json, report.md (+ summary.md, the same text, for compatibility) and report.html into `folder`."""
    from convertctl.report.html import render_html
    from convertctl.report.markdown import render_markdown

    folder = Path(folder)
    markdown = render_markdown(m)
    written = {
        "report.json": build_report(m, folder).model_dump_json(indent=2) + "\n",
        "report.md": markdown,
        "summary.md": markdown,
        "report.html": render_html(m, folder=folder),
    }
    for name, text in written.items():
        (folder / name).write_text(text)
    return [folder / name for name in written]
