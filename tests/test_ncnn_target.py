"""The ncnn target EXECUTED: pnnx (the `pnnx` wheel's converter binary) converts real models to model.ncnn.param/.bin
in a child process and the `ncnn` wheel runs them; every number below is measured against the source model. No
stand-in module anywhere. INT8 is refused (the wheels carry no ncnn2table/ncnn2int8), and the refusal is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto
from onnx import helper as oh

from convertctl.errors import ConvertctlError
from convertctl.targets import registry
from convertctl.targets.ncnn.options import NO_INT8, NcnnOptions

from .conftest import REPO, SMALL_MODELS, load_manifest, run_cli
from .test_quantize_digits import digits_recipe, train_digits

CORPUS = REPO / "recipes" / "models" / "corpus"
RECIPES = REPO / "recipes" / "corpus"
needs_corpus = pytest.mark.skipif(not (CORPUS / ".complete").exists(), reason="the corpus is fetched by `make models`")
TARGET = registry.get("ncnn")


def _save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = oh.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), path)
    return path


def _hardmax_model(folder: Path) -> Path:
    """Relu -> Hardmax: pnnx 20261020 converts the Relu and has no ncnn conversion for Hardmax."""
    folder.mkdir(parents=True, exist_ok=True)
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    return _save(folder / "hardmax.onnx", [oh.make_node("Relu", ["x"], ["r"], name="act"),
                                           oh.make_node("Hardmax", ["r"], ["y"], name="pick")], [x], [y])


def _kit(folder: Path) -> dict:
    return json.loads((folder / "kit.json").read_text())


# ------------------------------------------------------------------------------------------------ options, refusals
def test_int8_is_refused_with_the_reason_at_recipe_validation(write_recipe, models_file):
    with pytest.raises(ValueError, match="ncnn2table/ncnn2int8"):
        NcnnOptions(runtime="ncnn", precision="int8")
    assert "ncnn 1.0.20261020 and pnnx 20261020 wheels carry no ncnn2table/ncnn2int8" in NO_INT8
    assert TARGET.precisions == ("fp32", "fp16")
    recipe = write_recipe({"name": "m", "source": {"framework": "pytorch", "factory": f"{models_file}:small_cnn"},
                           "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32]}],
                           "targets": [{"runtime": "ncnn", "precision": "int8"}], "output": "out"})
    res = run_cli("run", recipe)
    assert res.code == 2
    assert "targets[0]" in res.stderr and "ncnn2table/ncnn2int8" in res.stderr and "Traceback" not in res.stderr


def test_the_wheels_really_carry_no_int8_tools():
    """The refusal's premise, checked in the installed wheels: no ncnn2table / ncnn2int8 file, no such function."""
    import importlib.metadata

    import ncnn

    for dist in ("ncnn", "pnnx"):
        files = [str(f) for f in importlib.metadata.distribution(dist).files or []]
        assert not [f for f in files if "ncnn2table" in f or "ncnn2int8" in f], dist
    assert not [n for n in dir(ncnn) if "table" in n.lower() or "2int8" in n.lower()]


# ------------------------------------------------------------------------------------------- converter failures
def test_an_operator_pnnx_cannot_convert_is_named_with_its_onnx_node(tmp_path):
    model = _hardmax_model(tmp_path / "user")
    before = sorted(p.name for p in model.parent.iterdir())
    with pytest.raises(ConvertctlError) as err:
        TARGET.build(model, NcnnOptions(runtime="ncnn"), tmp_path / "art", None)
    assert "pnnx has no ncnn conversion for Hardmax (ONNX node pick)" in err.value.message
    # pnnx writes beside its input: it ran on a copy, and its scratch folder is gone
    assert sorted(p.name for p in model.parent.iterdir()) == before == ["hardmax.onnx"]
    assert list((tmp_path / "art").iterdir()) == []


def test_check_judges_by_a_trial_conversion_and_names_the_node(tmp_path):
    model = _hardmax_model(tmp_path)
    res = run_cli("check", model, "-t", "ncnn", "--json")
    assert res.code == 3, res.stderr
    report = next(t for t in res.json()["targets"] if t["target"] == "ncnn")
    assert report["verdict"] == "unsupported" and report["judged_by"].startswith("pnnx 20261020 trial conversion")
    bad = {n["node"]: n for n in report["nodes"] if n["verdict"] == "unsupported"}
    assert set(bad) == {"pick"} and "Hardmax" in bad["pick"]["reason"]
    rows = {r["op_type"]: r["verdict"] for r in report["ops"]}
    assert rows == {"Relu": "supported", "Hardmax": "unsupported"}


def test_a_build_of_an_unconvertible_model_is_an_error_naming_the_operator(tmp_path):
    model = _hardmax_model(tmp_path)
    res = run_cli("build", model, "-t", "ncnn", "-o", tmp_path / "out", "--json")
    assert res.code == 1, res.stderr  # an artifact in error: the check stage's verdict stops its build
    art = load_manifest(tmp_path / "out")["artifacts"][0]
    assert art["status"] == "error" and "Hardmax" in art["reason"] and "pick" in art["reason"]
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr


def test_a_converter_timeout_is_a_clear_error(tmp_path):
    from convertctl.targets.ncnn import convert as cv

    model = _hardmax_model(tmp_path)
    # a model pnnx needs more than a moment for: a real corpus model if present, else stop it at once
    with pytest.raises(ConvertctlError, match=r"pnnx did not finish converting in 0\.001 s"):
        cv.run_pnnx(model, tmp_path / "scratch", cv.command([([1, 4, 8, 8], 1)], None, False, 2), timeout=0.001)


# ------------------------------------------------------------------------------------------------- whole runs
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ncnn_small")
    (folder / "models.py").write_text(SMALL_MODELS)
    recipe = {"name": "small_cnn", "source": {"framework": "pytorch", "factory": "models.py:small_cnn"},
              "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32], "range": [-1.0, 1.0]}],
              "samples": {"count": 6, "seed": 3},
              "targets": [{"runtime": "ncnn", "precision": "fp32", "num_threads": 1},
                          {"runtime": "ncnn", "precision": "fp16"}], "output": "out"}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", folder / "recipe.yaml", "--json")
    return folder, res


@pytest.mark.slow
def test_small_cnn_fp32_and_fp16_are_verified_against_pytorch(small_run):
    folder, res = small_run
    assert res.code == 0, res.stderr
    arts = {a["id"]: a for a in load_manifest(folder / "out")["artifacts"]}
    fp32, fp16 = arts["ncnn_fp32"], arts["ncnn_fp16"]
    for a in (fp32, fp16):
        assert a["status"] == "ok", a["reason"]
        out = a["verification"][0]["outputs"]
        assert a["verification"][0]["against"] == "pytorch" and len(out) == 1
    (o32,), (o16,) = fp32["verification"][0]["outputs"].values(), fp16["verification"][0]["outputs"].values()
    assert o32["cosine"] > 0.999999 and o32["max_abs"] < 1e-5  # measured 1.000000, 6e-08
    assert o16["cosine"] > 0.9999 and o16["max_abs"] < 1e-2  # measured 1.000000, 4.4e-05 (FP16 weights)
    assert o16["max_abs"] > o32["max_abs"]  # the FP16 weights really are FP16
    assert fp32["effective"]["num_threads"] == 1 and fp32["effective"]["options_on"] == "no fp16/bf16 option"
    assert fp16["effective"]["options_on"] == ["use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic"]
    assert "FP16 weights" in fp16["effective"]["fp16_here"]
    assert fp32["effective"]["batch"] == "loop over single samples"


@pytest.mark.slow
def test_the_artifact_is_the_ncnn_layout_and_its_pnnx_command(small_run):
    folder, _ = small_run
    for precision, flag in (("fp32", "fp16=0"), ("fp16", "fp16=1")):
        art = folder / "out" / "targets" / f"ncnn_{precision}"
        assert sorted(p.name for p in art.iterdir()) == ["kit.json", "model.ncnn.bin", "model.ncnn.param"]
        kit = _kit(art)
        assert kit["converter"]["command"] == (
            f"pnnx model.onnx inputshape=[1,3,32,32]f32 {flag} optlevel=2 device=cpu ncnnparam=model.ncnn.param "
            "ncnnbin=model.ncnn.bin")
        assert kit["blobs"]["inputs"] == [{"onnx": "image", "blob": "in0", "batch_axis": 0}]
        assert [o["blob"] for o in kit["blobs"]["outputs"]] == ["out0"]
        assert (art / "model.ncnn.param").read_text().startswith("7767517\n")
    size32 = (folder / "out/targets/ncnn_fp32/model.ncnn.bin").stat().st_size
    size16 = (folder / "out/targets/ncnn_fp16/model.ncnn.bin").stat().st_size
    assert size16 < 0.6 * size32  # FP16 weights: about half


@pytest.mark.slow
def test_digits_fp32_and_fp16_keep_the_top1_accuracy(tmp_path):
    train_digits(tmp_path)
    recipe = {**digits_recipe("digits_ncnn"),
              "targets": [{"runtime": "onnxruntime", "precision": "fp32"}, {"runtime": "ncnn", "precision": "fp32"},
                          {"runtime": "ncnn", "precision": "fp16"}]}
    recipe["verify"] = {"latency": {"enabled": False}}  # accuracy only: timing is not asserted
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", tmp_path / "recipe.yaml", "--json", cwd=tmp_path)
    assert res.code == 0, res.stderr
    arts = {a["id"]: a for a in load_manifest(tmp_path / "out")["artifacts"]}
    assert arts["onnxruntime_fp32"]["accuracy"]["reference_top1"] > 0.95
    for aid in ("ncnn_fp32", "ncnn_fp16"):
        acc = arts[aid]["accuracy"]
        assert arts[aid]["status"] == "ok" and acc["samples"] >= 500
        assert acc["top1_drop"] <= 0.01, (aid, acc)  # measured 0.0 for both
    (o,) = arts["ncnn_fp32"]["verification"][0]["outputs"].values()
    assert o["cosine"] > 0.999999
    # blob by blob on the first calibration digit: every ncnn blob (fused Conv+ReLU, pooling, InnerProduct) found
    layers = arts["ncnn_fp32"]["settings"]["per_layer"]
    assert layers["blobs"] == layers["matched"] == 7 and layers["first_divergence"] is None
    assert "InnerProduct" in arts["ncnn_fp16"]["effective"]["fp16_here"]


# ------------------------------------------------------------------------------------------------ real corpus
def _corpus_build(model_id: str, tmp_path: Path, *precisions: str) -> dict:
    args = ["build", RECIPES / f"{model_id}.yaml", "-t", "ncnn", "-o", tmp_path / "out", "--json"]
    for p in precisions or ("fp32",):
        args += ["-p", p]
    res = run_cli(*args, timeout=1500, subprocess=True)  # a native crash of a real model is reported, not fatal
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr[-2000:]
    return {a["id"]: a for a in load_manifest(tmp_path / "out")["artifacts"]} | {"_code": res.code}


def _worst_cosine(art: dict) -> float:
    return min(o["cosine"] for o in art["verification"][0]["outputs"].values() if o["cosine"] is not None)


@pytest.mark.corpus
@needs_corpus
def test_text_orientation_classifies_like_onnx_runtime(tmp_path):
    arts = _corpus_build("text_orientation", tmp_path)
    a = arts["ncnn_fp32"]
    assert a["status"] == "ok", a["reason"]
    assert _worst_cosine(a) > 0.99999  # measured 1.000000, max abs 1.2e-07
    assert a["accuracy"]["top1_drop"] == 0.0


@pytest.mark.corpus
@needs_corpus
def test_ppocrv4_det_runs_at_any_height_and_width(tmp_path):
    """Dynamic H/W: pnnx traces at opt (320) with inputshape2 at max (1280); the artifact is then run at a size it
    was never traced at and compared with ONNX Runtime on the source model."""
    import onnxruntime as ort

    arts = _corpus_build("ppocrv4_det_onnx", tmp_path)
    a = arts["ncnn_fp32"]
    assert a["status"] == "ok", a["reason"]
    assert _worst_cosine(a) > 0.9999  # measured 1.000000, max abs 5.8e-05
    folder = tmp_path / "out" / "targets" / "ncnn_fp32"
    assert "inputshape=[1,3,320,320]f32 inputshape2=[1,3,1280,1280]f32" in _kit(folder)["converter"]["command"]
    runner = TARGET.open(folder, NcnnOptions(runtime="ncnn"), a["settings"])
    x = np.random.default_rng(0).uniform(-2, 2, (2, 3, 224, 416)).astype(np.float32)
    source = CORPUS / "ppocrv4_det_onnx" / "ch_PP-OCRv4_det_infer.onnx"
    ref = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    (got,) = runner.run({"x": x})
    assert got.shape == ref.shape == (2, 1, 224, 416)
    assert np.abs(got - ref).max() < 1e-3


@pytest.mark.corpus
@needs_corpus
def test_ppocrv4_rec_transformer(tmp_path):
    arts = _corpus_build("ppocrv4_rec_onnx", tmp_path, "fp32", "fp16")
    a = arts["ncnn_fp32"]
    assert a["status"] == "ok", a["reason"]
    assert _worst_cosine(a) > 0.9999
    assert arts["ncnn_fp16"]["status"] == "ok" and _worst_cosine(arts["ncnn_fp16"]) > 0.999


@pytest.mark.corpus
@needs_corpus
def test_magika_crashes_pnnx_and_the_operator_is_named(tmp_path):
    """pnnx 20261020 segfaults in its ncnn pass on Magika (int32 bytes, one-hot by Equal/Expand): the crash is
    contained in its child process, and one-node trials name the Expand of the one-hot as the operator."""
    arts = _corpus_build("magika", tmp_path)
    a = arts["ncnn_fp32"]
    assert arts["_code"] == 1 and a["status"] == "error"
    assert "pnnx was killed by signal 11" in a["reason"]
    assert "Expand (jax2tf_get_logits_/pjit_get_logits_/pjit__one_hot_/BroadcastTo)" in a["reason"]


@pytest.mark.corpus
@needs_corpus
def test_mtcnn_pnet_from_pytorch_with_its_blob_by_blob_comparison(tmp_path):
    """A PyTorch state dict (dynamic H/W, PReLU, ceil-mode pooling, two outputs): FP32 and FP16 against PyTorch, and
    the per-layer comparison on the first calibration photo matches every ncnn blob to an ONNX tensor."""
    arts = _corpus_build("mtcnn_pnet", tmp_path, "fp32", "fp16")
    fp32, fp16 = arts["ncnn_fp32"], arts["ncnn_fp16"]
    assert fp32["status"] == fp16["status"] == "ok", (fp32["reason"], fp16["reason"])
    assert fp32["verification"][0]["against"] == "pytorch"
    assert _worst_cosine(fp32) > 0.99999 and _worst_cosine(fp16) > 0.9999  # measured 1.000000, 0.999998
    assert set(fp32["settings"]["blobs"]) == {"image", "boxes", "probs"}
    for a in (fp32, fp16):
        layers = a["settings"]["per_layer"]
        assert layers["blobs"] == layers["matched"] == 12 and layers["first_divergence"] is None


def test_int8_asked_of_ncnn_by_name_is_refused_with_the_reason_never_a_silent_fp32_build(tmp_path):
    from onnx import TensorProto
    from onnx import helper as oh

    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"])], "relu",
                          [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = tmp_path / "relu.onnx"
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), model)
    for args in (("quantize", model, "--int8", "--calib", tmp_path, "-t", "ncnn"),
                 ("build", model, "-t", "ncnn", "-p", "int8")):
        res = run_cli(*args, "-o", tmp_path / "out")
        assert res.code == 2 and not (tmp_path / "out").exists(), res.stderr
        assert res.stderr.startswith("error: ncnn does not build int8: the ncnn 1.0.20261020 and pnnx 20261020 "
                                     "wheels carry no ncnn2table/ncnn2int8"), res.stderr
        assert "(it builds fp32, fp16)" in res.stderr
