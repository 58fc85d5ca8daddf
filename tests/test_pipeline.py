"""End to end through the real CLI on small real models: files, hashes and verification numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from convertctl.report.manifest import SCHEMA_VERSION

from .conftest import load_manifest, run_cli, small_cnn_recipe


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One full run of the small CNN recipe (export, check, optimize, 3 targets), shared by the tests below."""
    import yaml

    from .conftest import SMALL_MODELS

    folder = tmp_path_factory.mktemp("small")
    (folder / "models.py").write_text(SMALL_MODELS)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(small_cnn_recipe()))
    res = run_cli("run", recipe, "--json")
    return folder, res


@pytest.mark.slow
def test_run_succeeds_and_json_is_the_manifest(small_run):
    folder, res = small_run
    assert res.code == 0, res.stderr
    printed = res.json()
    on_disk = load_manifest(folder / "out")
    assert printed == on_disk
    assert on_disk["schema_version"] == SCHEMA_VERSION and on_disk["status"] == "ok" and on_disk["exit_code"] == 0
    assert [s["name"] for s in on_disk["stages"]] == ["export", "check", "optimize"]
    assert [a["id"] for a in on_disk["artifacts"]] == ["openvino_fp32", "openvino_fp16", "onnxruntime_fp32"]


@pytest.mark.slow
def test_every_recorded_file_exists_with_its_hash(small_run):
    folder, _ = small_run
    out = folder / "out"
    m = load_manifest(out)
    records = [f for s in m["stages"] for f in s["outputs"]] + [f for a in m["artifacts"] for f in a["files"]]
    assert len(records) >= 8
    for rec in records:
        path = out / rec["path"]
        assert path.is_file(), rec["path"]
        assert sha256(path) == rec["sha256"] and path.stat().st_size == rec["bytes"]
    assert not list(folder.glob(".out.staging-*")) and not (folder / "out.partial").exists()


@pytest.mark.slow
def test_export_verified_against_pytorch(small_run):
    folder, _ = small_run
    export = load_manifest(folder / "out")["stages"][0]
    assert export["details"]["exporter"] == "dynamo"
    cmp = export["verification"][0]
    assert cmp["against"] == "pytorch" and cmp["passed"] is True
    metrics = next(iter(cmp["outputs"].values()))
    assert metrics["shape"] == [4, 10]
    assert metrics["cosine"] > 0.99999 and metrics["max_abs"] < 1e-4 and metrics["top1_agreement"] == 1.0


@pytest.mark.slow
def test_onnx_has_dynamic_batch_and_runs_at_other_batch_sizes(small_run):
    folder, _ = small_run
    model = onnx.load(str(folder / "out" / "model.onnx"))
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "batch"
    assert model.graph.input[0].name == "image"
    sess = ort.InferenceSession(str(folder / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        (y,) = sess.run(None, {"image": np.zeros((n, 3, 32, 32), np.float32)})
        assert y.shape == (n, 10)


@pytest.mark.slow
def test_check_and_optimize_findings(small_run):
    folder, _ = small_run
    stages = {s["name"]: s for s in load_manifest(folder / "out")["stages"]}
    assert stages["check"]["details"]["opset"] == 18
    assert stages["check"]["details"]["op_counts"]["Conv"] == 2
    assert "BatchNormalization" not in stages["check"]["details"]["op_counts"]  # folded on export
    opt = stages["optimize"]
    assert opt["status"] == "ok" and opt["details"]["tool"] == "onnxslim"
    assert opt["details"]["nodes_after"] <= opt["details"]["nodes_before"]
    assert opt["verification"][0]["passed"] is True


@pytest.mark.slow
def test_openvino_artifacts_record_explicit_precision(small_run):
    folder, _ = small_run
    out = folder / "out"
    arts = {a["id"]: a for a in load_manifest(out)["artifacts"]}
    fp32, fp16 = arts["openvino_fp32"], arts["openvino_fp16"]
    for a in (fp32, fp16):
        assert a["status"] == "ok"
        assert a["settings"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert a["effective"]["inference_precision"] == "f32"  # read back from the compiled model
        runtime = json.loads((out / "targets" / a["id"] / "runtime.json").read_text())
        assert runtime["INFERENCE_PRECISION_HINT"] == "f32"
    size = {k: (out / "targets" / k / "model.bin").stat().st_size for k in ("openvino_fp32", "openvino_fp16")}
    assert 0.45 < size["openvino_fp16"] / size["openvino_fp32"] < 0.6  # weights really compressed to FP16
    cos16 = next(iter(fp16["verification"][0]["outputs"].values()))["cosine"]
    cos32 = next(iter(fp32["verification"][0]["outputs"].values()))["cosine"]
    assert 0.999 < cos16 <= cos32


@pytest.mark.slow
def test_onnxruntime_artifact_carries_session_options(small_run):
    folder, _ = small_run
    art = folder / "out" / "targets" / "onnxruntime_fp32"
    session = json.loads((art / "session.json").read_text())
    assert session == {"graph_optimization_level": "all", "intra_op_num_threads": 0,
                       "providers": ["CPUExecutionProvider"]}
    assert sha256(art / "model.onnx") == sha256(folder / "out" / "model.onnx")


@pytest.mark.slow
def test_summary_is_rendered_from_manifest(small_run):
    folder, _ = small_run
    text = (folder / "out" / "summary.md").read_text()
    assert text.startswith("# convertctl: small_cnn")
    for needle in ("openvino_fp16", "onnxruntime_fp32", "| export | pytorch |", "exit code 0"):
        assert needle in text


@pytest.mark.slow
def test_onnx_source_passthrough(small_run, tmp_path, write_recipe):
    folder, _ = small_run
    src = folder / "out" / "model.onnx"
    res = run_cli("build", src, "--target", "openvino", "--target", "onnxruntime", "-o", tmp_path / "b", "--json")
    assert res.code == 0, res.stderr
    m = res.json()
    assert m["stages"][0]["details"]["source"] == str(src)
    assert m["stages"][0]["verification"] == []  # the ONNX is the source: nothing to compare the export with
    assert all(a["verification"][0]["against"] == "onnxruntime (source model)" for a in m["artifacts"])
    assert all(a["status"] == "ok" for a in m["artifacts"])
    # inputs were read from the model: the dynamic batch became a symbolic dim with the default range
    assert m["samples"]["shapes"] == {"image": [8, 3, 32, 32]}


@pytest.mark.slow
def test_export_command_with_cli_inputs(models_file, tmp_path):
    res = run_cli("export", f"{models_file}:two_inputs", "--input", "x:batch,6", "--input", "y:batch,3",
                  "-o", tmp_path / "e", "--json")
    assert res.code == 0, res.stderr
    m = res.json()
    assert [s["name"] for s in m["stages"]] == ["export", "check"]
    outs = m["stages"][0]["verification"][0]["outputs"]
    assert len(outs) == 2 and all(o["cosine"] > 0.99999 for o in outs.values())
    model = onnx.load(str(tmp_path / "e" / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["x", "y"]


@pytest.mark.slow
def test_legacy_exporter_fallback_is_recorded(models_file, tmp_path, write_recipe):
    recipe = write_recipe({
        "name": "branchy", "source": {"framework": "pytorch", "factory": "models.py:branchy"},
        "inputs": [{"name": "x", "shape": ["batch", 4], "range": [0.0, 1.0]}], "output": "o"})
    res = run_cli("run", recipe)
    assert res.code == 0, res.stderr
    export = load_manifest(tmp_path / "o")["stages"][0]
    attempts = export["details"]["attempts"]
    assert [a["exporter"] for a in attempts] == ["dynamo", "legacy"]
    assert attempts[0]["ok"] is False and "data-dependent" in attempts[0]["reason"]
    assert export["details"]["exporter"] == "legacy" and export["verification"][0]["passed"] is True
    assert "fell back" in res.stderr  # said on the terminal, not only in the manifest


@pytest.mark.slow
def test_state_dict_and_torchscript_sources(models_file, tmp_path, write_recipe):
    import subprocess
    import sys

    script = (f"import sys, torch; sys.path.insert(0, {str(tmp_path)!r}); import models; "
              "m = models.small_cnn(); torch.save(m.state_dict(), 'w.pt'); "
              "torch.jit.save(torch.jit.trace(m, torch.zeros(1, 3, 32, 32)), 'ts.pt')")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    inputs = [{"name": "image", "shape": ["batch", 3, 32, 32]}]
    for kind, source in [("state_dict", {"factory": "models.py:small_cnn", "path": "w.pt"}),
                         ("torchscript", {"path": "ts.pt"})]:
        recipe = write_recipe({"name": kind, "source": {"framework": "pytorch", **source}, "inputs": inputs,
                               "stages": ["export", "check"], "output": kind}, name=f"{kind}.yaml")
        res = run_cli("run", recipe, "--json")
        assert res.code == 0, (kind, res.stderr)
        export = res.json()["stages"][0]
        cmp = export["verification"][0]
        assert cmp["passed"] is True and next(iter(cmp["outputs"].values()))["cosine"] > 0.99999
        sources = {Path(f["path"]).name: f["sha256"] for f in export["inputs"]}  # the source files are hashed
        weights = "w.pt" if kind == "state_dict" else "ts.pt"
        assert sources[weights] == sha256(tmp_path / weights)


@pytest.mark.slow
def test_rerun_replaces_previous_output(small_run, tmp_path):
    folder, _ = small_run
    src = folder / "out" / "model.onnx"
    out = tmp_path / "r"
    for _ in range(2):
        assert run_cli("optimize", src, "-o", out, "-q").code == 0
    assert (out / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no staging or old folders left behind


@pytest.mark.slow
def test_external_data_through_every_stage(models_file, tmp_path, write_recipe):
    """Weights in model.onnx.data (what >2 GB models need) survive export, optimize and both targets."""
    recipe = write_recipe(small_cnn_recipe(export={"external_data": "always"}))
    res = run_cli("run", recipe, "--json")
    assert res.code == 0, res.stderr
    out = tmp_path / "out"
    assert (out / "model.onnx.data").stat().st_size > 4 * 1000  # the weights live outside the graph
    assert (out / "model.onnx").stat().st_size < (out / "model.onnx.data").stat().st_size
    m = res.json()
    assert "export/model.onnx.data" in [f["path"] for f in m["stages"][0]["outputs"]]
    ort_files = [f["path"] for f in next(a for a in m["artifacts"] if a["runtime"] == "onnxruntime")["files"]]
    assert ort_files == ["targets/onnxruntime_fp32/model.onnx", "targets/onnxruntime_fp32/model.onnx.data",
                         "targets/onnxruntime_fp32/session.json"]
    assert all(a["status"] == "ok" for a in m["artifacts"])


@pytest.mark.slow
def test_flags_change_one_key_of_a_recipe_section(models_file, tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(export={"exporter": "legacy", "output_names": ["scores"]}))
    res = run_cli("export", recipe, "--opset", "17", "-o", tmp_path / "x", "--json")
    assert res.code == 0, res.stderr
    export = res.json()["stages"][0]
    assert export["details"]["exporter"] == "legacy" and export["details"]["opset"] == 17
    assert list(export["verification"][0]["outputs"]) == ["scores"]


@pytest.mark.slow
def test_fixed_batch_model_is_verified_in_chunks(models_file, tmp_path, write_recipe):
    recipe = write_recipe(small_cnn_recipe(inputs=[{"name": "image", "shape": [1, 3, 32, 32]}], samples={"count": 3},
                                           targets=[{"runtime": "openvino"}, {"runtime": "onnxruntime"}]))
    res = run_cli("run", recipe, "--json")
    assert res.code == 0, res.stderr
    m = res.json()
    assert m["samples"]["shapes"] == {"image": [3, 3, 32, 32]}  # 3 samples, run one at a time
    for a in m["artifacts"]:
        out = next(iter(a["verification"][0]["outputs"].values()))
        assert out["shape"] == [3, 10] and out["cosine"] > 0.99999
