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
    # the kit says the net options each artifact was verified with: FP16 all off for fp32 (ncnn's defaults are on)
    kits = {p: _kit(folder / "out" / "targets" / f"ncnn_{p}") for p in ("fp32", "fp16")}
    assert kits["fp32"]["fp16_arithmetic"] is False and kits["fp32"]["net_options"] == {
        "use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False, "use_bf16_storage": False,
        "num_threads": 1}
    assert kits["fp16"]["net_options"]["use_fp16_arithmetic"] is True and kits["fp16"]["fp16_arithmetic"] is True


@pytest.mark.slow
def test_the_artifact_is_the_ncnn_layout_and_its_pnnx_command(small_run):
    folder, _ = small_run
    for precision in ("fp32", "fp16"):  # pnnx writes FP32 weights for both: convertctl writes the FP16 ones
        art = folder / "out" / "targets" / f"ncnn_{precision}"
        assert sorted(p.name for p in art.iterdir()) == ["kit.json", "model.ncnn.bin", "model.ncnn.param"]
        kit = _kit(art)
        assert kit["converter"]["command"] == (
            "pnnx model.onnx inputshape=[1,3,32,32]f32 fp16=0 optlevel=2 device=cpu ncnnparam=model.ncnn.param "
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


# ---------------------------------------------------------------------------------------- FP16 weights, written here
def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _pnnx_own_fp16(model: Path, shape: list[int], folder: Path, x: np.ndarray) -> np.ndarray:
    """The model converted by pnnx with its own fp16=1, run with every FP16 option off: only its weights differ."""
    import ncnn

    from convertctl.targets.ncnn import convert as cv

    cv.run_pnnx(model, folder, cv.command([(shape, 1)], None, True, 2), timeout=120)
    net = ncnn.Net()
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    assert net.load_param(str(folder / cv.PARAM)) == 0 and net.load_model(str(folder / cv.BIN)) == 0
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
    return np.array(ex.extract("out0")[1])[None]


def _conv_bn(name: str, cin: int, cout: int, var: tuple[float, float], eps: float, rng) -> tuple[list, list]:
    """Conv -> BatchNormalization with running variances in `var`: pnnx folds the BN into the conv, scaling its
    weights by gamma / sqrt(var + eps)."""
    inits = [oh.make_tensor(f"{name}_{k}", TensorProto.FLOAT, list(v.shape), v.ravel().tolist()) for k, v in (
        ("w", rng.normal(0, 0.1, (cout, cin, 3, 3))), ("gamma", rng.uniform(0.75, 1.1, cout)),
        ("beta", rng.normal(0, 0.1, cout)), ("mean", np.zeros(cout)), ("var", rng.uniform(*var, cout)))]
    stats = [f"{name}_{k}" for k in ("gamma", "beta", "mean", "var")]
    nodes = [oh.make_node("Conv", [f"{name}_in", f"{name}_w"], [f"{name}_c"], pads=[1, 1, 1, 1], name=f"{name}_conv"),
             oh.make_node("BatchNormalization", [f"{name}_c", *stats], [f"{name}_out"], epsilon=eps, name=f"{name}_bn")]
    return nodes, inits


def _conv_bn_model(folder: Path, var: tuple[float, float], eps: float) -> tuple[Path, np.ndarray, np.ndarray]:
    """A Conv+BatchNorm+ReLU model, an input of PP-OCRv4 det's head's magnitude (up to 3339 there) and ONNX Runtime's
    output on it."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    nodes, inits = _conv_bn("a", 8, 16, var, eps, rng)
    nodes = [oh.make_node("Identity", ["x"], ["a_in"]), *nodes, oh.make_node("Relu", ["a_out"], ["y"])]
    model = _save(folder / "conv_bn.onnx", nodes, [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                  [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 16, 16])], inits)
    x = rng.uniform(0, 3000, (1, 8, 16, 16)).astype(np.float32)
    return model, x, ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _fp16_build(model: Path, folder: Path, x: np.ndarray):
    spec = NcnnOptions(runtime="ncnn", precision="fp16", per_layer=False)
    built = TARGET.build(model, spec, folder, None)
    (got,) = TARGET.open(folder, spec, built.settings).run({"x": x})
    return built.settings, got


def test_fp16_keeps_the_folded_weights_below_fp16s_normal_range(tmp_path):
    """PP-OCRv4 det's defect, small: a BatchNorm with running variance 1e6..1e7 (PP-OCRv4 det's DB head: 1e7..1e8)
    folds into conv weights of ~3e-5, below FP16's smallest normal (6.1e-5). pnnx's own fp16=1 writes them as 0;
    convertctl rounds them to FP16 subnormals."""
    model, x, ref = _conv_bn_model(tmp_path, (1e6, 1e7), 1e-5)
    assert _cosine(_pnnx_own_fp16(model, [1, 8, 16, 16], tmp_path / "pnnx", x), ref) < 0.9  # the defect is here
    settings, got = _fp16_build(model, tmp_path / "art", x)
    assert _cosine(got, ref) > 0.9999
    assert "fp32_layers" not in settings and settings["weights"].startswith("fp16, written by convertctl")
    assert "fp16=0" in settings["pnnx_command"]
    assert "31=" not in (tmp_path / "art" / "model.ncnn.param").read_text()


def test_fp16_weights_fp16_cannot_hold_stay_fp32_and_their_layer_too(tmp_path):
    """Variance and epsilon 1e-12 fold into conv weights above FP16's 65504: pnnx's own fp16=1 writes inf (the output
    is NaN). That blob stays FP32 in the .bin and its layer gets featmask 31=3 (no FP16 storage or arithmetic), so a
    CPU that does compute in FP16 (ARM asimdhp) keeps that layer in FP32 too."""
    model, x, ref = _conv_bn_model(tmp_path, (1e-12, 2e-12), 1e-12)
    assert not np.isfinite(_pnnx_own_fp16(model, [1, 8, 16, 16], tmp_path / "pnnx", x)).all()
    settings, got = _fp16_build(model, tmp_path / "art", x)
    assert _cosine(got, ref) > 0.99999
    param = (tmp_path / "art" / "model.ncnn.param").read_text().splitlines()
    (conv,) = [ln.split()[1] for ln in param if ln.startswith("Convolution")]
    assert list(settings["fp32_layers"]) == [conv] and param[-1].split()[1] == conv and param[-1].endswith(" 31=3")


@pytest.mark.corpus
@needs_corpus
def test_fp16_ppocrv4_det_head_keeps_its_tiny_folded_weights(tmp_path):
    """PP-OCRv4 det's DB head (Conv+BN+ReLU, ConvTranspose x2, Sigmoid) with its real weights, fed the activations
    the full model makes on a corpus page: pnnx's own FP16 weights give cosine 0.03 (the whole model's FP16 failure,
    measured 0.031); convertctl's give 0.9999998 (the whole model: 0.999996, docs/ncnn.md)."""
    import onnxruntime as ort
    from PIL import Image

    full = onnx.load(str(CORPUS / "ppocrv4_det_onnx" / "ch_PP-OCRv4_det_infer.onnx"))
    g = full.graph
    producer = {t: n for n in g.node for t in n.output}
    node = next(n for n in g.node if n.op_type == "ConvTranspose")  # the head's first upsampling
    for _ in range(3):  # <- Relu <- BatchNormalization <- Conv (ncnn's convrelu_0)
        node = producer[node.input[0]]
    assert node.op_type == "Conv"
    start = node.input[0]
    needed, keep = {g.output[0].name}, []
    for node in reversed(g.node):  # the nodes between the conv's input and the output
        if needed & set(node.output):
            keep.insert(0, node)
            needed |= {i for i in node.input if i and i != start}
    head = oh.make_graph(keep, "db_head", [oh.make_tensor_value_info(start, TensorProto.FLOAT, [1, 96, 80, 80])],
                         [oh.make_tensor_value_info(g.output[0].name, TensorProto.FLOAT, [1, 1, 320, 320])],
                         [t for t in g.initializer if t.name in needed])
    model = tmp_path / "db_head.onnx"
    onnx.save(oh.make_model(head, opset_imports=full.opset_import, ir_version=full.ir_version), model)

    page = sorted((CORPUS / "ppocrv4_det_onnx" / "data").glob("*.png"))[0]
    img = np.asarray(Image.open(page).convert("RGB").resize((320, 320)), np.float32)[:, :, ::-1] / 255.0
    img = ((img - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None].astype(np.float32)
    full.graph.output.append(onnx.ValueInfoProto(name=start))
    x = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"]).run([start], {"x": img})[0]
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {start: x})[0]

    assert _cosine(_pnnx_own_fp16(model, [1, 96, 80, 80], tmp_path / "pnnx", x), ref) < 0.1  # measured 0.027
    spec = NcnnOptions(runtime="ncnn", precision="fp16", per_layer=False)
    built = TARGET.build(model, spec, tmp_path / "art", None)
    (got,) = TARGET.open(tmp_path / "art", spec, built.settings).run({start: x})
    assert _cosine(got, ref) > 0.99999  # measured 0.9999998
    assert "fp32_layers" not in built.settings  # rounded correctly, FP16 holds them (relative error 5.7e-4)


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
