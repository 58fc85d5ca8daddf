"""Latency of every artifact, each timed in a process of its own, on real runtimes.

No timing value is compared with a threshold: only the structure of the records, the relations between
their numbers, and what happens when a measurement cannot be made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from convertctl.errors import EXIT_ACCURACY_GATE, EXIT_USAGE, RecipeError
from convertctl.evaluate.latency import BASELINE, measure_latency
from convertctl.recipe import parse_recipe
from convertctl.report.manifest import SCHEMA_VERSION
from convertctl.report.markdown import fmt_speedup

from .conftest import SMALL_MODELS, load_manifest, run_cli, small_cnn_recipe

RUNS, WARMUP, BATCH = 12, 3, 2


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    """The small CNN with three targets, one of which fails its gate (exact match on FP16 weights); timed."""
    folder = tmp_path_factory.mktemp("latency")
    (folder / "models.py").write_text(SMALL_MODELS)
    recipe = small_cnn_recipe(
        targets=[{"runtime": "openvino", "precision": "fp32"},
                 {"runtime": "openvino", "precision": "fp16", "tolerance": {"max_abs": 0.0}},
                 {"runtime": "onnxruntime", "precision": "fp32"}],
        verify={"latency": {"runs": RUNS, "warmup": WARMUP, "batch": BATCH}})
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", latency=True)  # the terminal table (--json: see below)
    return folder / "out", res


@pytest.mark.slow
def test_latency_never_changes_the_status(timed_run):
    out, res = timed_run
    assert res.code == EXIT_ACCURACY_GATE, res.stderr  # the fp16 gate, nothing else
    m = load_manifest(out)
    assert m["schema_version"] == SCHEMA_VERSION and m["status"] == "failed"
    statuses = {a["id"]: a["status"] for a in m["artifacts"]}
    assert statuses == {"openvino_fp32": "ok", "openvino_fp16": "failed", "onnxruntime_fp32": "ok"}
    assert m["recipe"]["content"]["verify"]["latency"] == {"enabled": True, "runs": RUNS, "warmup": WARMUP,
                                                         "batch": BATCH, "timeout_s": 120.0}


@pytest.mark.slow
def test_baseline_is_the_fp32_onnx_in_onnxruntime(timed_run):
    out, _ = timed_run
    base = load_manifest(out)["latency_baseline"]
    assert base["status"] == "measured" and base["reason"] is None
    assert base["of"] == BASELINE == "onnx fp32 (onnxruntime)"
    assert base["speedup"] is None and base["baseline"] is None
    assert base["runs"] == RUNS and base["warmup"] == WARMUP and base["batch"] == BATCH
    assert isinstance(base["threads"], int) and base["threads"] >= 0  # ONNX Runtime: 0 = its default
    request = json.loads((out / "latency" / "_baseline.request.json").read_text())
    assert request["model"] == "../model.onnx" and request["samples"] == "../samples.npz"


@pytest.mark.slow
def test_every_artifact_that_ran_is_measured(timed_run):
    out, _ = timed_run
    m = load_manifest(out)
    base = m["latency_baseline"]
    for a in m["artifacts"]:  # the failed gate artifact too
        lat = a["latency"]
        assert lat["status"] == "measured" and lat["reason"] is None, a["id"]
        assert lat["of"] == a["id"] and lat["baseline"] == base["of"]
        assert lat["runs"] == RUNS and lat["warmup"] == WARMUP and lat["batch"] == BATCH
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["min_ms"] <= lat["mean_ms"]
        assert lat["throughput_per_s"] == pytest.approx(BATCH * 1000 / lat["mean_ms"], rel=1e-3)
        assert lat["speedup"] == pytest.approx(base["p50_ms"] / lat["p50_ms"], rel=1e-3, abs=1e-3)
        # the thread count the runtime reported after loading, as the verification recorded it
        reported = a["effective"].get("num_threads", a["effective"].get("intra_op_num_threads"))
        assert lat["threads"] == reported and isinstance(reported, int)
        result = json.loads((out / "latency" / f"{a['id']}.result.json").read_text())
        assert len(result["times_ms"]) == RUNS and result["batch"] == BATCH
        request = json.loads((out / "latency" / f"{a['id']}.request.json").read_text())
        assert request["folder"] == f"../targets/{a['id']}" and request["runtime"] == a["runtime"]
        assert request["settings"] == a["settings"]  # run with the artifact's own settings


@pytest.mark.slow
def test_terminal_and_summary_show_latency(timed_run):
    out, res = timed_run
    m = load_manifest(out)
    assert "latency baseline" in res.stderr and "latency onnxruntime_fp32" in res.stderr
    assert "p50 ms" in res.stderr and "vs FP32 ONNX" in res.stderr
    for a in m["artifacts"]:
        assert f"{fmt_speedup(a['latency']['speedup'])} vs onnx fp32 (onnxruntime)" in res.stderr
    assert "latency: batch 2, 3 warm-up + 12 timed runs" in res.stderr
    summary = (out / "summary.md").read_text()
    assert "| p50 (ms) | speed-up vs FP32 ONNX |" in summary
    assert "**Latency:** batch 2, 3 warm-up + 12 timed runs, each in its own process; baseline onnx fp32" in summary


@pytest.mark.slow
def test_no_latency_leaves_nulls(timed_run, tmp_path):
    out, _ = timed_run
    res = run_cli("build", out / "model.onnx", "-t", "onnxruntime", "-o", tmp_path / "b", "--no-latency", "--json",
                  latency=True)
    assert res.code == 0, res.stderr
    m = res.json()
    assert m["latency_baseline"] is None and [a["latency"] for a in m["artifacts"]] == [None]
    assert m["recipe"]["content"]["verify"]["latency"]["enabled"] is False
    assert not (tmp_path / "b" / "latency").exists() and "latency" not in res.stderr


@pytest.mark.slow
def test_run_flag_keeps_the_rest_of_the_recipe(models_file, tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(
        targets=[{"runtime": "onnxruntime"}],
        verify={"tolerances": {"fp32": {"min_cosine": 0.9}}, "latency": {"runs": 7}}))
    res = run_cli("run", recipe, "--no-latency", "--json", latency=True)
    assert res.code == 0, res.stderr
    m = res.json()
    verify = m["recipe"]["content"]["verify"]
    assert verify["latency"] == {"enabled": False, "runs": 7, "warmup": 10, "batch": 1, "timeout_s": 120.0}
    assert verify["tolerances"]["fp32"]["min_cosine"] == 0.9 and verify["tolerances"]["fp32"]["max_abs"] is None
    assert m["latency_baseline"] is None and m["artifacts"][0]["latency"] is None


@pytest.mark.slow
def test_fixed_first_dim_wins_over_the_batch(models_file, tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(
        inputs=[{"name": "image", "shape": [1, 3, 32, 32]}], samples={"count": 3},
        targets=[{"runtime": "onnxruntime"}], verify={"latency": {"batch": 2, "runs": 5, "warmup": 0}}))
    res = run_cli("run", recipe, "--json", latency=True)
    assert res.code == 0, res.stderr
    m = res.json()  # stdout holds the manifest and nothing else, with latency on too
    assert m == load_manifest(tmp_path / "out") and "latency onnxruntime_fp32" in res.stderr
    assert "verify.latency.batch 2 changed to 1: input 'image' has a fixed first dim of 1" in m["messages"]
    for lat in (m["latency_baseline"], m["artifacts"][0]["latency"]):
        assert lat["status"] == "measured" and lat["batch"] == 1 and lat["runs"] == 5 and lat["warmup"] == 0


@pytest.mark.slow
def test_garbage_model_gives_an_error_record(timed_run, tmp_path):
    out, _ = timed_run
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"this is not an onnx model")
    rec = measure_latency("garbage", samples=out / "samples.npz", workdir=tmp_path / "w", model=bad)
    assert rec.status == "error" and rec.of == "garbage" and rec.p50_ms is None and rec.speedup is None
    assert "\n" not in rec.reason and "INVALID_PROTOBUF" in rec.reason
    assert (tmp_path / "w" / "garbage.log").exists()


@pytest.mark.parametrize("artifact, broken", [("onnxruntime_fp32", "model.onnx"), ("openvino_fp32", "model.xml")])
@pytest.mark.slow
def test_corrupted_artifact_gives_an_error_record(timed_run, tmp_path, artifact, broken):
    out, _ = timed_run
    record = next(a for a in load_manifest(out)["artifacts"] if a["id"] == artifact)
    folder = tmp_path / artifact
    shutil.copytree(out / "targets" / artifact, folder)
    data = (folder / broken).read_bytes()
    (folder / broken).write_bytes(data[: len(data) // 3])  # truncated after the build
    spec = json.loads((out / "latency" / f"{artifact}.request.json").read_text())["spec"]
    rec = measure_latency(artifact, samples=out / "samples.npz", workdir=tmp_path / "w", runtime=record["runtime"],
                          folder=folder, spec=spec, settings=record["settings"])
    assert rec.status == "error" and rec.reason and "\n" not in rec.reason
    assert rec.p50_ms is None and rec.runs == 0


@pytest.mark.slow
def test_timeout_gives_an_error_record(timed_run, tmp_path):
    out, _ = timed_run
    rec = measure_latency("slow", samples=out / "samples.npz", workdir=tmp_path / "w", model=out / "model.onnx",
                          timeout_s=0.01)  # not even the interpreter starts in time
    assert rec.status == "error" and rec.reason.startswith("timed out after 0.01 s")


@pytest.mark.slow
def test_missing_samples_gives_an_error_record(timed_run, tmp_path):
    out, _ = timed_run
    rec = measure_latency("nosamples", samples=tmp_path / "none.npz", workdir=tmp_path / "w", model=out / "model.onnx")
    assert rec.status == "error" and "none.npz" in rec.reason


@pytest.mark.parametrize("latency, message", [
    ({"runs": 4}, "verify.latency.runs: Input should be greater than or equal to 5"),
    ({"warmup": -1}, "verify.latency.warmup: Input should be greater than or equal to 0"),
    ({"batch": 0}, "verify.latency.batch: Input should be greater than or equal to 1"),
    ({"timeout_s": 0}, "verify.latency.timeout_s: Input should be greater than 0"),
    ({"enabled": "sometimes"}, "verify.latency.enabled: Input should be a valid boolean"),
    ({"repeats": 3}, "verify.latency.repeats: Extra inputs are not permitted"),
    ({"batch": 32}, "(top level): verify.latency.batch 32 does not fit input 'image': dims.batch allows 1..8"),
])
def test_recipe_rejects_bad_latency_settings(latency, message):
    with pytest.raises(RecipeError) as err:
        parse_recipe(small_cnn_recipe(verify={"latency": latency}), Path("."))
    assert message in err.value.message


def test_batch_within_dims_is_valid():
    recipe = parse_recipe(small_cnn_recipe(dims={"batch": {"min": 1, "max": 32}}, verify={"latency": {"batch": 32}}),
                          Path("."))
    assert recipe.verify.latency.batch == 32 and recipe.verify.latency.enabled is True


def test_validate_command_names_the_key(write_recipe):
    res = run_cli("recipe", "validate", write_recipe(small_cnn_recipe(verify={"latency": {"runs": 1}})))
    assert res.code == EXIT_USAGE and "verify.latency.runs" in res.stderr
