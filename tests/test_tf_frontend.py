"""TensorFlow/Keras sources, end to end through the real CLI: Keras 3 functional and Sequential models, a
SavedModel with two dict outputs, a Keras 2 (tf-keras) .h5, and a SavedModel without a serving signature. Each is
converted in a child process and compared with TensorFlow's own inference; this process never imports TF."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from convertctl.errors import EXIT_USAGE

from .conftest import REPO, load_manifest, run_cli
from .test_bad_inputs import assert_clean_error

pytestmark = [pytest.mark.slow,  # a TensorFlow child per export, 5-12 s each
              pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None or
                                 importlib.util.find_spec("tf2onnx") is None,
                                 reason="tensorflow/tf2onnx are not installed: pip install 'convertctl[tf]'")]
KINDS = ("functional", "sequential", "saved_model", "h5_legacy", "no_signature")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_models")
    paths = {}
    for kind in KINDS:
        proc = subprocess.run([sys.executable, str(REPO / "tests" / "tf_models.py"), str(root), kind],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        paths[kind] = proc.stdout.strip().splitlines()[-1]
    return paths


def export(source, out, *args):
    res = run_cli("export", source, "-o", out, "--json", *args)
    assert res.code == 0, res.stderr
    return res.json()


def dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def gate_of(manifest) -> dict:
    gate = manifest["stages"][0]["verification"][0]
    assert gate["against"].startswith("tensorflow ") and gate["passed"] is True
    assert all(o["max_abs"] < 1e-4 and o["cosine"] > 0.99999 for o in gate["outputs"].values())
    return gate


def test_keras3_functional_model(models, tmp_path):
    manifest = export(models["functional"], tmp_path / "o")
    gate_of(manifest)
    details = manifest["stages"][0]["details"]
    assert (details["format"], details["converter"]) == ("keras", "tf2onnx from_keras")
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    assert model.graph.input[0].name == "image" and dims(model.graph.input[0]) == ["batch", 32, 32, 3]
    assert dims(model.graph.output[0]) == ["batch", 10]  # not tf2onnx's unk__N


def test_keras3_sequential_falls_back_to_a_traced_function(models, tmp_path):
    manifest = export(models["sequential"], tmp_path / "o")
    gate_of(manifest)
    details = manifest["stages"][0]["details"]
    assert details["converter"] == "tf2onnx from_function"
    failed = [a for a in details["attempts"] if not a["ok"]]
    assert [a["converter"] for a in failed] == ["tf2onnx from_keras"] and "keras_tensor" in failed[0]["reason"]
    findings = " ".join(manifest["stages"][0]["findings"])
    assert "tf2onnx from_keras failed, fell back to the next" in findings


def test_saved_model_with_two_dict_outputs_in_onnx_order(models, tmp_path):
    manifest = export(models["saved_model"], tmp_path / "o")
    gate = gate_of(manifest)
    assert list(gate["outputs"]) == ["embedding", "score"]
    sess = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    embedding, score = sess.run(None, {"x": np.ones((5, 8), np.float32)})
    assert embedding.shape == (5, 4) and score.shape == (5, 2)
    np.testing.assert_allclose(score.sum(axis=1), 1.0, rtol=1e-5)  # a softmax: the right output in the right place


def test_keras2_h5_needs_and_gets_tf_keras(models, tmp_path):
    manifest = export(models["h5_legacy"], tmp_path / "o")
    gate_of(manifest)
    details = manifest["stages"][0]["details"]
    assert details["format"] == "h5" and "tf_keras" in details["versions"]


def test_saved_model_without_serving_signature(models, tmp_path):
    res = run_cli("export", models["no_signature"], "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "has no 'serving_default' signature")


def test_recipe_names_the_dynamic_batch_dim_and_builds_targets(models, write_recipe, tmp_path):
    recipe = write_recipe({
        "name": "keras_cnn",
        "source": {"framework": "tensorflow", "path": models["functional"]},
        "inputs": [{"name": "image", "shape": ["n", 32, 32, 3]}],
        "dims": {"n": {"min": 1, "opt": 2, "max": 8}},
        "targets": [{"runtime": "onnxruntime"}, {"runtime": "openvino"}],
        "output": "out",
    })
    res = run_cli("run", recipe)
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "out")
    assert manifest["status"] == "ok" and all(a["status"] == "ok" for a in manifest["artifacts"])
    model = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert dims(model.graph.input[0]) == ["n", 32, 32, 3] and dims(model.graph.output[0])[0] == "n"
    assert manifest["stages"][0]["details"]["dims_renamed"]  # tf2onnx's unk__N became the recipe's name


def test_wrong_input_name_and_framework_mismatch(models, tmp_path, write_recipe):
    res = run_cli("export", models["functional"], "--input", "input:batch,32,32,3", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "'image'")
    recipe = write_recipe({"name": "m", "source": {"framework": "paddle", "path": models["functional"]},
                           "output": "out"})
    res = run_cli("run", recipe)
    assert_clean_error(res, EXIT_USAGE, "source.framework is 'paddle'", "tensorflow model (keras)")


def test_keras_file_from_a_newer_keras_that_cannot_load(models, tmp_path):
    import json
    import zipfile

    newer = tmp_path / "newer.keras"
    with zipfile.ZipFile(models["functional"]) as src, zipfile.ZipFile(newer, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "metadata.json":
                meta = json.loads(data)
                meta["keras_version"] = "4.2.0"
                data = json.dumps(meta).encode()
            elif item.filename == "config.json":  # a layer class this Keras does not have
                data = data.replace(b'"Conv2D"', b'"Conv2DFancy"')
            dst.writestr(item, data)
    res = run_cli("export", newer, "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "was saved by Keras 4.2.0, newer than the installed Keras")


def test_tensorflow_not_installed_names_the_extra(models, tmp_path):
    """As in an environment without TensorFlow: the modules are hidden from this interpreter."""
    script = tmp_path / "notf.py"
    # in this process, not a supervised child (which would import TensorFlow again): CONVERTCTL_NO_SUPERVISOR
    script.write_text("import os, sys\nos.environ['CONVERTCTL_NO_SUPERVISOR'] = '1'\n"
                      "sys.modules['tensorflow'] = None\nsys.modules['tf2onnx'] = None\n"
                      "from convertctl.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, str(script), "export", models["functional"], "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_USAGE and "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert "no Python environment with tensorflow and tf2onnx for tensorflow sources" in text
    assert "pip install 'convertctl[tf]'" in text and "CONVERTCTL_TENSORFLOW_PYTHON" in text


def test_check_on_an_h5_points_at_export_and_quantize_takes_it_with_a_recipe(models, tmp_path, write_recipe):
    res = run_cli("check", models["h5_legacy"], "-t", "onnxruntime")
    assert_clean_error(res, EXIT_USAGE, "is an HDF5 file (a Keras .h5 model), not an ONNX model")
    assert "convertctl export" in res.stderr and "Wire format" not in res.stderr
    recipe = write_recipe({"name": "mlp", "source": {"framework": "onnx", "path": "unused.onnx"}, "output": "out"})
    res = run_cli("quantize", models["h5_legacy"], "--recipe", recipe, "--fp16", "-t", "onnxruntime",
                  "-o", tmp_path / "q")
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / "q")
    assert manifest["recipe"]["content"]["source"]["framework"] == "tensorflow"
    assert {a["id"]: a["status"] for a in manifest["artifacts"]} == {"onnxruntime_fp32": "ok",
                                                                      "onnxruntime_fp16": "ok"}
