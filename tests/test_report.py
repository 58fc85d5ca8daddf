"""The quantization report: histograms.json, report.json, report.md and report.html on a real run.

One run of the digits CNN (briefly trained here, percentile calibration so that some values really
are clipped) with an ONNX Runtime INT8 target; every number is checked against a direct computation
on the same model, samples and calibration table.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from convertctl.pipeline import load_manifest
from convertctl.quantize.table import CalibrationTable
from convertctl.report.html import render_html
from convertctl.report.manifest import LatencyRecord
from convertctl.report.markdown import fmt_ms
from convertctl.report.report_json import REPORT_SCHEMA_VERSION, Report, build_report, write_reports

from .conftest import run_cli
from .test_quantize_digits import digits_recipe, train_digits

EVAL_SLICE = 32  # the quantize stage's evaluation slice for layer errors and histograms


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    train_digits(folder, epochs=3)  # good enough, and quick
    recipe = digits_recipe(
        "digits_report", calibration={"num_samples": 200, "holdout": 0.2, "method": "percentile", "percentile": 99.9},
        targets=[{"runtime": "onnxruntime", "precision": "fp32"}, {"runtime": "onnxruntime", "precision": "int8"}],
        verify={"tolerances": {"int8": {"min_cosine": 0.95, "min_top1_agreement": 0.8}}})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml")
    assert res.code == 0, res.stderr
    out = folder / "out"
    manifest = load_manifest(out / "manifest.json")
    write_reports(manifest, out)
    return out, manifest


def _fp32_values(out, tensors: list[str]) -> dict[str, np.ndarray]:
    """The tensors straight from the FP32 model on the evaluation slice, in one run (no chunks)."""
    import onnx
    import onnxruntime as ort

    feeds = {k: v[:EVAL_SLICE] for k, v in np.load(out / "samples.npz").items()}
    model = onnx.load(str(out / "model.onnx"))
    computed = [t for t in tensors if t not in feeds]
    for t in computed:
        model.graph.output.append(onnx.ValueInfoProto(name=t))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(computed, sess.run(computed, feeds), strict=True)) if computed else {}
    return {t: np.asarray(values[t] if t in values else feeds[t], np.float32).ravel() for t in tensors}


@pytest.mark.slow
def test_histograms_equal_a_direct_computation(run):
    out, _ = run
    doc = json.loads((out / "quantize" / "histograms.json").read_text())
    layers = json.loads((out / "quantize" / "layer_errors.json").read_text())
    assert doc["model"] == "model.qdq_u8s8.onnx" and doc["bins"] == 64 and doc["samples"] == EVAL_SLICE
    # every quantized layer of this CNN (4 < 6), worst first, in the ranking's order
    assert [h["node"] for h in doc["layers"]] == [r["node"] for r in layers]
    ranges = CalibrationTable(out / "quantize" / "calibration.json", {}, reused=False).ranges()
    direct = _fp32_values(out, [h["tensor"] for h in doc["layers"]])
    import onnx
    from onnx import numpy_helper

    qdq = onnx.load(str(out / "quantize" / "model.qdq_u8s8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    for h in doc["layers"]:
        v = direct[h["tensor"]]
        assert len(h["counts"]) == 64 and len(h["edges"]) == 65
        assert sum(h["counts"]) == h["values"] == v.size
        assert (h["min"], h["max"]) == (float(v.min()), float(v.max()))
        assert h["counts"] == np.histogram(v, bins=64, range=(h["min"], h["max"]))[0].tolist()
        lo, hi = h["range"]
        assert (lo, hi) == ranges[h["range_tensor"]]  # the calibration table's range, as stored
        assert h["clipped_fraction"] == float(np.mean((v < lo) | (v > hi)))
        assert h["clipped_below"] + h["clipped_above"] == int(np.count_nonzero((v < lo) | (v > hi)))
        assert h["range_used"] == pytest.approx((min(v.max(), hi) - max(v.min(), lo)) / (hi - lo))
        # the Q node's scale (U8, asymmetric) was computed from that range, widened to include 0
        assert h["scale"] == pytest.approx((max(hi, 0.0) - min(lo, 0.0)) / 255, rel=1e-6)
        assert float(inits[h["range_tensor"] + "_scale"]) == pytest.approx(h["scale"], rel=1e-7)
    by_node = {h["node"]: h for h in doc["layers"]}
    assert by_node["node_Conv_28"]["tensor"] == "image"  # the first conv quantizes the model's input
    # MaxPool shares its input's scale: the clipping range of max_pool2d is relu_1's
    assert (by_node["node_Conv_30"]["tensor"], by_node["node_Conv_30"]["range_tensor"]) == ("max_pool2d", "relu_1")
    assert any(h["clipped_fraction"] > 0 for h in doc["layers"])  # percentile 99.9 really clips


@pytest.mark.slow
def test_quantize_stage_records_histograms(run):
    out, manifest = run
    stage = next(s for s in manifest.stages if s.name == "quantize")
    assert "quantize/histograms.json" in [f.path for f in stage.outputs]
    doc = json.loads((out / "quantize" / "histograms.json").read_text())
    summary = stage.details["histograms"]
    assert summary["file"] == "histograms.json" and summary["bins"] == 64
    assert summary["layers"] == [{k: h[k] for k in ("node", "tensor", "range", "clipped_fraction", "range_used")}
                                 for h in doc["layers"]]


@pytest.mark.slow
def test_report_json_validates_and_equals_the_manifest(run):
    out, manifest = run
    report = Report.model_validate_json((out / "report.json").read_text())
    assert report.report_schema_version == REPORT_SCHEMA_VERSION == "1.0.0"
    assert report.manifest_schema_version == manifest.schema_version
    assert (report.status, report.exit_code, report.recipe) == (manifest.status, manifest.exit_code, "digits_report")
    assert [a.id for a in report.artifacts] == ["onnxruntime_fp32", "onnxruntime_int8"]
    for ra, ma in zip(report.artifacts, manifest.artifacts, strict=True):
        gate = ma.verification[0]
        outs = list(gate.outputs.values())
        assert (ra.runtime, ra.precision, ra.built_from, ra.status, ra.reason) == (
            ma.runtime, ma.precision, ma.built_from, ma.status, ma.reason)
        assert ra.bytes == sum(f.bytes for f in ma.files) > 0
        assert ra.accuracy.against == gate.against
        assert ra.accuracy.cosine == min(o.cosine for o in outs)
        assert ra.accuracy.sqnr_db == min(o.sqnr_db for o in outs)
        assert ra.accuracy.max_abs == max(o.max_abs for o in outs)
        assert ra.accuracy.top1_agreement == min(o.top1_agreement for o in outs)
        # labelled digits: top-1/top-5 and the drop against the reference
        assert (ra.accuracy.top1, ra.accuracy.top5, ra.accuracy.top1_drop, ra.accuracy.labelled_samples) == (
            ma.accuracy["top1"], ma.accuracy["top5"], ma.accuracy["top1_drop"], ma.accuracy["samples"])
        assert (ra.gate.passed, ra.gate.failures) == (gate.passed, gate.failures)
        assert ra.gate.tolerance == gate.tolerance.model_dump()
    assert report.artifacts[1].built_from == "qdq_u8s8"
    calib = next(s for s in manifest.stages if s.name == "quantize").details["calibration"]
    assert (report.calibration.method, report.calibration.num_samples, report.calibration.reused) == (
        "percentile", calib["num_samples"], calib["reused"])
    layers = json.loads((out / "quantize" / "layer_errors.json").read_text())
    assert report.layers.total == len(layers)
    assert [(x.node, x.introduced_db, x.sqnr_db) for x in report.layers.worst] == [
        (r["node"], r["introduced_db"], r["sqnr_db"]) for r in layers[:10]]
    assert report.layers.suggested_exclude_nodes == next(
        s for s in manifest.stages if s.name == "quantize").details["layers"]["suggested_exclude_nodes"]
    doc = json.loads((out / "quantize" / "histograms.json").read_text())
    assert [(h.node, h.tensor, h.range, h.clipped_fraction) for h in report.histograms] == [
        (h["node"], h["tensor"], h["range"], h["clipped_fraction"]) for h in doc["layers"]]
    # without the folder: the manifest's own top-10 and histogram summary
    bare = build_report(manifest)
    assert bare.layers.total is None and [x.node for x in bare.layers.worst] == [x.node for x in report.layers.worst]
    assert [h.clipped_fraction for h in bare.histograms] == [h.clipped_fraction for h in report.histograms]


@pytest.mark.slow
def test_report_md_is_the_summary_and_fits_a_job_page(run):
    out, _ = run
    md = (out / "report.md").read_text()
    assert md == (out / "summary.md").read_text()
    assert md.startswith("# convertctl: digits_report")
    assert len(md.encode()) < 16 * 1024  # GitHub's step summary limit is 1 MiB; this stays tables and lists
    assert "<svg" not in md and "counts" not in md
    manifest = load_manifest(out / "manifest.json")
    for stage in manifest.stages:  # every stage's findings are in its row (the check's verdicts come last)
        row = next(line for line in md.splitlines() if line.startswith(f"| {stage.name} |"))
        assert all(f.replace("|", "\\|") in row for f in stage.findings[:11]), stage.name


@pytest.mark.slow
def test_html_shows_histograms_and_stays_self_contained(run):
    out, manifest = run
    html = (out / "report.html").read_text()
    doc = json.loads((out / "quantize" / "histograms.json").read_text())
    assert html.count('<svg class="hist"') == len(doc["layers"]) == 4
    assert html.count('<line class="clip"') == 2 * len(doc["layers"])  # lo and hi of every histogram
    for h in doc["layers"]:
        assert f"clipped {100 * h['clipped_fraction']:.3g}% of {h['values']:,} values" in html
    assert "<script" not in html.lower() and "http" not in html.lower()
    assert not re.search(r"\b(src|href)=", html)
    # without the folder the page still renders, and says the histograms are left out
    bare = render_html(manifest)
    assert '<svg class="hist"' not in bare and "Histograms left out" in bare
    assert render_html(manifest, histograms=doc) == html


def _latency(of: str, p50: float, speedup: float | None) -> LatencyRecord:
    return LatencyRecord(status="measured", of=of, batch=1, threads=2, warmup=10, runs=50, p50_ms=p50,
                         p90_ms=p50 * 1.1, p99_ms=p50 * 1.3, mean_ms=p50, min_ms=p50 * 0.9,
                         throughput_per_s=1000 / p50, speedup=speedup, baseline=None if speedup is None else
                         "onnx fp32 (onnxruntime)")


@pytest.mark.slow
def test_latency_bars(run):
    out, manifest = run
    m = manifest.model_copy(deep=True)
    for a in m.artifacts:
        a.latency = None
    m.latency_baseline = None
    assert "<h2>Latency" not in render_html(m, out) and 'class="lat"' not in render_html(m, out)

    m.latency_baseline = _latency("onnx fp32 (onnxruntime)", 7.4, None)
    m.artifacts[1].latency = _latency("onnxruntime_int8", 2.31, 3.2)  # the fp32 artifact keeps a null latency
    html = render_html(m, out)
    assert html.count('<rect class="lat"') == 2  # the baseline and the int8 artifact, nothing for null
    assert "2.31 ms · 3.2x" in html and f">{fmt_ms(7.4)} ms</text>" in html  # the baseline: no speed-up
    chart = html[html.index('<svg class="latency"'):]
    chart = chart[:chart.index("</svg>")]
    assert "onnxruntime_int8" in chart and "onnxruntime_fp32" not in chart
    # bar lengths are proportional to p50
    widths = [float(w) for w in re.findall(r'<rect class="lat" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', chart)]
    assert widths[1] / widths[0] == pytest.approx(2.31 / 7.4, rel=1e-2)

    m.artifacts[0].latency = LatencyRecord(status="error", of="onnxruntime_fp32", reason="timed out after 120 s")
    html = render_html(m, out)
    assert html.count('<rect class="lat"') == 2 and "timed out after 120 s" in html

    report = build_report(m, out)
    lat = report.artifacts[1].latency
    assert (lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.throughput_per_s, lat.speedup) == (
        2.31, 2.31 * 1.1, 2.31 * 1.3, 1000 / 2.31, 3.2)
    assert report.latency_baseline.p50_ms == 7.4 and report.artifacts[0].latency.status == "error"
    assert Report.model_validate_json(report.model_dump_json()) == report
