"""The TensorRT target: everything that runs without TensorRT is tested here for real (profiles, trtexec command
lines for 10.x and 11.x, version dispatch, the build kit a run leaves, the engine checks done before TensorRT
loads a file, the errors when TensorRT or a GPU is missing). The tests at the end build and run real engines;
they are skipped unless `tensorrt` imports, and are written to run unchanged on a GPU machine with TensorRT.
No stand-in `tensorrt` module is used anywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from convertctl.errors import MissingDependencyError, UsageError
from convertctl.recipe import load_recipe
from convertctl.targets.tensorrt.kit import check_qdq_for_tensorrt, graph_precision
from convertctl.targets.tensorrt.options import TensorRTOptions
from convertctl.targets.tensorrt.profiles import compute_profiles
from convertctl.targets.tensorrt.runner import EngineMismatchError, check_engine_here
from convertctl.targets.tensorrt.trtexec import bench_argv, shell_line, trtexec_argv
from convertctl.targets.tensorrt.version import api_major, explicit_strong_typing, weak_typing_available

from .conftest import SMALL_MODELS, load_manifest, run_cli

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
NEEDS_TRT = pytest.mark.skipif(not HAVE_TRT, reason="tensorrt is not installed (it cannot be on this project's "
                                                    "machines): the engine itself is not built or run here")
IMAGES = Path(__file__).resolve().parents[1] / "calib_data" / "images"


@dataclass
class Tensor:
    name: str
    shape: list


def spec(**kw) -> TensorRTOptions:
    return TensorRTOptions(runtime="tensorrt", **kw)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- profiles ---------------------------------------------------------------------------------------------
def test_profiles_take_the_recipe_ranges_and_say_which_are_defaults():
    model = [Tensor("image", ["batch", 3, "h", "h"]), Tensor("scale", [1])]
    recipe = [Tensor("image", ["batch", 3, "h", "h"])]
    profiles = compute_profiles(model, recipe, {"batch": (1, 4, 16), "h": (224, 224, 320)}, explicit={"h"})
    image, scale = profiles.inputs
    assert (image.min, image.opt, image.max) == ((1, 3, 224, 224), (4, 3, 224, 224), (16, 3, 320, 320))
    assert image.dynamic and not scale.dynamic and [p.name for p in profiles.dynamic] == ["image"]
    assert (scale.min, scale.max) == ((1,), (1,))
    assert len(profiles.notes) == 1 and profiles.notes[0].startswith("dims.batch: no range in the recipe")


def test_profiles_name_unnamed_onnx_dims_from_the_recipe_and_refuse_what_has_no_range():
    unnamed = [Tensor("x", ["?", 8])]
    profiles = compute_profiles(unnamed, [Tensor("x", ["n", 8])], {"n": (2, 2, 6)})
    assert profiles.inputs[0].max == (6, 8) and profiles.inputs[0].dims == ("n", 8) and profiles.notes == []
    fixed = compute_profiles(unnamed, [Tensor("x", [3, 8])], {})  # the recipe fixes the ONNX's open dim
    assert fixed.inputs[0].min == fixed.inputs[0].max == (3, 8) and not fixed.dynamic
    with pytest.raises(UsageError, match="input 'x' dim 0 is dynamic \\(unnamed\\) and has no range"):
        compute_profiles(unnamed, [], {})


# -- trtexec command lines --------------------------------------------------------------------------------
def _dynamic_profiles():
    return compute_profiles([Tensor("image", ["batch", 3, 224, 224])], [], {"batch": (1, 8, 32)})


def test_trtexec_int8_from_qdq_differs_between_10_and_11_only_in_strong_typing():
    profiles = _dynamic_profiles()
    ten = trtexec_argv(10, spec(precision="int8"), profiles)
    eleven = trtexec_argv(11, spec(precision="int8"), profiles)
    shapes = ["--minShapes=image:1x3x224x224", "--optShapes=image:8x3x224x224", "--maxShapes=image:32x3x224x224"]
    tail = ["--builderOptimizationLevel=3", "--timingCacheFile=timing.cache", "--profilingVerbosity=detailed",
            "--exportLayerInfo=layers.json", "--skipInference"]
    assert ten == ["trtexec", "--onnx=model.onnx", "--saveEngine=model.engine", "--stronglyTyped", "--noTF32",
                   *shapes, *tail]
    assert eleven == [a for a in ten if a != "--stronglyTyped"]
    for argv in (ten, eleven):  # flags TensorRT 11 removed never appear in a strongly typed build
        assert not {"--fp16", "--int8", "--best", "--calib"} & {a.split("=")[0] for a in argv}


def test_trtexec_options_map_to_their_flags_on_both_versions():
    static = compute_profiles([Tensor("input", [1, 3, 224, 224])], [], {})
    options = spec(precision="fp32", tf32=True, workspace_mib=2048, builder_optimization_level=5,
                   hardware_compatibility_level="same_compute_capability", version_compatible=True, device=1)
    for major in (10, 11):
        argv = trtexec_argv(major, options, static)
        assert "--noTF32" not in argv and not any(a.startswith("--minShapes") for a in argv)  # static: no profile
        for flag in ("--memPoolSize=workspace:2048M", "--builderOptimizationLevel=5", "--versionCompatible",
                     "--hardwareCompatibilityLevel=sameComputeCapability", "--device=1"):
            assert flag in argv
        assert ("--stronglyTyped" in argv) is (major == 10)


def test_weak_typing_is_10x_only_and_refused_for_11x_with_the_qdq_path():
    profiles = _dynamic_profiles()
    weak = spec(precision="int8", strongly_typed=False)
    ten = trtexec_argv(10, weak, profiles, graph_int8=True)
    assert "--stronglyTyped" not in ten and ten[3:5] == ["--fp16", "--int8"]
    assert trtexec_argv(10, spec(precision="fp16", strongly_typed=False), profiles)[3] == "--fp16"
    with pytest.raises(UsageError) as err:
        trtexec_argv(11, weak, profiles)
    assert "TensorRT 11.x has no weakly typed networks" in err.value.message
    assert "symmetric Q/DQ ONNX (precision: int8" in err.value.message


def test_trtexec_shape_specs_quote_colons_and_refuse_commas():
    odd = compute_profiles([Tensor("input:0", ["n", 4]), Tensor("mask", ["n", 4])], [], {"n": (1, 2, 3)})
    argv = trtexec_argv(11, spec(), odd)
    assert "--optShapes='input:0':2x4,mask:2x4" in argv
    assert "'\"'\"'input:0'\"'\"'" in shell_line(argv)  # survives the shell: the quotes reach trtexec
    assert bench_argv(odd) == ["trtexec", "--loadEngine=model.engine", "--shapes='input:0':2x4,mask:2x4"]
    comma = compute_profiles([Tensor("a,b", ["n"])], [], {"n": (1, 1, 2)})
    with pytest.raises(UsageError, match="cannot be written in trtexec's shape flags"):
        trtexec_argv(10, spec(), comma)


# -- version dispatch -------------------------------------------------------------------------------------
def test_version_dispatch():
    assert api_major("10.16.1.11") == 10 and api_major("11.1.0.106") == 11 and api_major("10.0") == 10
    assert explicit_strong_typing(10) and not explicit_strong_typing(11)
    assert weak_typing_available(10) and not weak_typing_available(11)
    with pytest.raises(UsageError, match="TensorRT 8.6.1 is not supported"):
        api_major("8.6.1")
    with pytest.raises(UsageError, match="TensorRT 12.0.0 is not supported"):
        api_major("12.0.0")
    with pytest.raises(UsageError, match="cannot read the TensorRT version"):
        api_major("unknown")


# -- a run without TensorRT leaves build kits -------------------------------------------------------------
@pytest.fixture(scope="module")
def kit_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trt_kit")
    (root / "models.py").write_text(SMALL_MODELS)
    recipe = {
        "name": "small_trt",
        "source": {"framework": "pytorch", "factory": "models.py:small_cnn"},
        "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32]}],
        "dims": {"batch": {"min": 1, "opt": 4, "max": 16}},
        "samples": {"count": 8, "seed": 1},
        "calibration": {"data": str(IMAGES), "num_samples": 16, "preprocess": {"resize": 36, "crop": 32}},
        "targets": [{"runtime": "tensorrt", "precision": "fp32", "workspace_mib": 1024},
                    {"runtime": "tensorrt", "precision": "fp16"},
                    {"runtime": "tensorrt", "precision": "int8"},
                    # a gate no INT8 model meets: the kit's Q/DQ ONNX fails it, so the run fails (exit 4)
                    {"runtime": "tensorrt", "name": "trt_weak", "precision": "int8", "strongly_typed": False,
                     "tolerance": {"min_cosine": 0.9999999}}],
        "output": "out",
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = run_cli("run", root / "recipe.yaml", "--json")
    return root, result


@pytest.mark.skipif(HAVE_TRT, reason="tests the machine without TensorRT")
@pytest.mark.slow
def test_without_tensorrt_every_target_is_skipped_never_ok(kit_run):
    root, result = kit_run
    assert result.code == 4, result.stderr  # trt_weak's Q/DQ ONNX fails its gate (below)
    manifest = load_manifest(root / "out")
    assert manifest["status"] == "failed" and manifest["exit_code"] == 4
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    assert set(by_id) == {"tensorrt_fp32", "tensorrt_fp16", "tensorrt_int8", "trt_weak"}
    for artifact in by_id.values():
        assert artifact["status"] == ("failed" if artifact["id"] == "trt_weak" else "skipped")
        assert "skipped: tensorrt not installed (pip install 'convertctl[tensorrt]')" in artifact["reason"]
        assert "no engine built: build kit in targets/" in artifact["reason"]
        assert not artifact.get("accuracy")
        assert not (root / "out" / "targets" / artifact["id"] / "model.engine").exists()
        # the ONNX a kit ships is judged by its precision's gate (an FP32 kit's ONNX is the verified FP32 model)
        if artifact["built_from"] == "fp32":
            assert not artifact["verification"]
        else:
            (gate,) = artifact["verification"]
            assert "no engine built" in gate["against"] and gate["passed"] is (artifact["id"] != "trt_weak")
    weak = by_id["trt_weak"]
    assert weak["reason"].startswith("the qdq_s8 ONNX this kit builds from fails the int8 gate: ")
    assert "cosine" in weak["reason"] and "< 0.9999999" in weak["reason"]
    assert "skipped: tensorrt not installed" in result.stderr
    report = (root / "out" / "report.md").read_text()
    assert "skipped" in report and "tensorrt_int8" in report


@pytest.mark.skipif(HAVE_TRT or importlib.util.find_spec("tensorrt_rtx") is None,
                    reason="tests the machine without TensorRT and with TensorRT-RTX (make install)")
@pytest.mark.slow
def test_each_kit_is_parsed_and_built_with_tensorrt_rtx_with_its_own_precision(kit_run):
    root, _ = kit_run
    by_id = {a["id"]: a for a in load_manifest(root / "out")["artifacts"]}
    for aid, artifact in by_id.items():
        trial = artifact["settings"]["test_build"]
        assert trial["result"] == "parses and builds", (aid, trial)
        assert trial == json.loads((root / "out" / "targets" / aid / "test_build.json").read_text())
        assert "TensorRT 10/11 itself not run" in artifact["reason"]
    types = {aid: a["settings"]["test_build"]["layer_output_types"] for aid, a in by_id.items()}
    assert "float" in types["tensorrt_fp32"] and not {"half", "int8"} & set(types["tensorrt_fp32"])
    assert "half" in types["tensorrt_fp16"] and "int8" in types["tensorrt_int8"]  # strongly typed: the ONNX's types
    assert "int8" in types["trt_weak"] and "precision flags were not tried" in by_id["trt_weak"]["settings"][
        "test_build"]["note"]


@pytest.mark.skipif(HAVE_TRT, reason="tests the machine without TensorRT")
@pytest.mark.slow
def test_kits_hold_the_emitted_onnx_the_profile_and_both_trtexec_lines(kit_run):
    root, _ = kit_run
    out = root / "out"
    manifest = load_manifest(out)
    emitted = {"tensorrt_fp32": out / "model.onnx", "tensorrt_fp16": out / "quantize" / "model.fp16.onnx",
               "tensorrt_int8": out / "quantize" / "model.qdq_s8.onnx", "trt_weak": out / "quantize" / "model.qdq_s8.onnx"}
    graph = {"tensorrt_fp32": "fp32", "tensorrt_fp16": "fp16-typed", "tensorrt_int8": "int8 (Q/DQ)",
             "trt_weak": "int8 (Q/DQ)"}
    for artifact in manifest["artifacts"]:
        kit_dir = out / "targets" / artifact["id"]
        kit = json.loads((kit_dir / "kit.json").read_text())
        assert kit["format"] == "convertctl.tensorrt-kit/1" and kit["engine"] is None
        assert kit["onnx_sha256"] == sha256(kit_dir / "model.onnx") == sha256(emitted[artifact["id"]])
        assert kit["precision"]["graph"] == graph[artifact["id"]]
        assert kit["profiles"]["dynamic"] == ["image"]
        image = kit["profiles"]["inputs"][0]
        assert (image["min"], image["opt"], image["max"]) == ([1, 3, 32, 32], [4, 3, 32, 32], [16, 3, 32, 32])
        recorded = {f["path"] for f in artifact["files"]}
        assert {f"targets/{artifact['id']}/{n}" for n in ("model.onnx", "kit.json", "README.md", "recipe.yaml")} <= recorded
        for version, command in kit["trtexec"].items():
            script = kit_dir / command["script"]
            assert os.access(script, os.X_OK) and command["line"] in script.read_text()
            assert "--optShapes=image:4x3x32x32" in command["argv"]
            assert ("--stronglyTyped" in command["argv"]) is (version == "10.x" and artifact["id"] != "trt_weak")
            assert artifact["settings"]["trtexec"][version] == command["line"]
        # the kit's ONNX runs, and gives what ONNX Runtime gave for the emission
        x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
        got = ort.InferenceSession(str(kit_dir / "model.onnx")).run(None, {"image": x})[0]
        assert got.shape == (4, 10) and np.isfinite(got).all()
    assert set(json.loads((out / "targets" / "tensorrt_int8" / "kit.json").read_text())["trtexec"]) == {"10.x", "11.x"}
    int8 = json.loads((out / "targets" / "tensorrt_int8" / "kit.json").read_text())
    assert int8["qdq_rules"]["ok"] is True and int8["precision"]["qdq_nodes"] > 0
    weak = json.loads((out / "targets" / "trt_weak" / "kit.json").read_text())
    assert set(weak["trtexec"]) == {"10.x"} and "11.x" in weak["not_possible"]
    assert "--fp16" in weak["trtexec"]["10.x"]["argv"] and "--int8" in weak["trtexec"]["10.x"]["argv"]
    assert not (out / "targets" / "trt_weak" / "build_trt11.sh").exists()
    fp32 = json.loads((out / "targets" / "tensorrt_fp32" / "kit.json").read_text())
    assert "--memPoolSize=workspace:1024M" in fp32["trtexec"]["11.x"]["argv"]


@pytest.mark.skipif(HAVE_TRT, reason="tests the machine without TensorRT")
@pytest.mark.slow
def test_kit_recipe_rebuilds_the_same_onnx_with_the_same_profile(kit_run, tmp_path):
    root, _ = kit_run
    kit_dir = root / "out" / "targets" / "tensorrt_int8"
    recipe, _ = load_recipe(kit_dir / "recipe.yaml")
    target = recipe.targets[0]
    assert (target.runtime, target.id, target.precision) == ("tensorrt", "tensorrt_int8", "fp32")
    assert (recipe.dims["batch"].min, recipe.dims["batch"].opt, recipe.dims["batch"].max) == (1, 4, 16)
    assert target.tolerance.min_cosine == 0.99  # the int8 gate travels with the kit
    result = run_cli("run", kit_dir / "recipe.yaml", "-o", tmp_path / "again")
    assert result.code == 0, result.stderr
    again = json.loads((tmp_path / "again" / "targets" / "tensorrt_int8" / "kit.json").read_text())
    assert again["onnx_sha256"] == sha256(kit_dir / "model.onnx")
    assert again["precision"]["graph"] == "int8 (Q/DQ)" and again["profiles"]["inputs"][0]["max"] == [16, 3, 32, 32]


# -- bad inputs -------------------------------------------------------------------------------------------
def test_onnx_runtime_u8s8_qdq_is_refused_for_tensorrt(tmp_path):
    """TensorRT needs symmetric INT8 (zero-point 0): the U8S8 Q/DQ made for ONNX Runtime on x86 breaks it."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("z", TensorProto.UINT8, [], [128])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=9)
    path = tmp_path / "u8.onnx"
    onnx.save(model, path)
    assert graph_precision(path) == ("int8 (Q/DQ)", 2)
    with pytest.raises(UsageError) as err:
        check_qdq_for_tensorrt(path)
    assert "u8.onnx breaks TensorRT's Q/DQ rules" in err.value.message and "symmetric S8" in err.value.hint


@pytest.mark.slow
def test_cli_build_of_a_qdq_onnx_without_tensorrt_leaves_an_int8_kit(kit_run, tmp_path):
    root, _ = kit_run
    qdq = root / "out" / "quantize" / "model.qdq_s8.onnx"
    result = run_cli("build", qdq, "--target", "tensorrt", "-o", tmp_path / "b", "--json")
    assert result.code == 0, result.stderr
    artifact = result.json()["artifacts"][0]
    if HAVE_TRT:
        assert artifact["status"] in ("ok", "failed")
        return
    assert artifact["status"] == "skipped" and artifact["settings"]["graph_precision"] == "int8 (Q/DQ)"
    kit = json.loads((tmp_path / "b" / "targets" / "tensorrt_fp32" / "kit.json").read_text())
    assert kit["onnx_sha256"] == sha256(tmp_path / "b" / "model.onnx")
    # the ONNX's batch dim has no range on the command line: the default is used and said so
    assert kit["profiles"]["notes"] and "no range in the recipe" in kit["profiles"]["notes"][0]


@pytest.mark.skipif(HAVE_TRT, reason="tests the machine without TensorRT")
def test_running_an_engine_without_tensorrt_names_the_extra(tmp_path):
    from convertctl.targets import registry

    target = registry.get("tensorrt")
    assert not target.installed() and target.version() is None
    with pytest.raises(MissingDependencyError) as err:
        target.open(tmp_path, spec(), {})
    assert err.value.message == "the Python package 'tensorrt' is not installed"
    assert "convertctl[tensorrt]" in err.value.hint


def test_gpu_query_reports_cuda_s_own_reason():
    """cuda-python is installed here (make install): with no NVIDIA driver the query fails with CUDA's reason."""
    if importlib.util.find_spec("cuda") is None:
        pytest.skip("cuda-python is not installed")
    from convertctl.targets.tensorrt.cuda_device import CudaError, gpu_info

    try:
        info = gpu_info(0)
    except CudaError as exc:  # this project's machines: no GPU, no driver
        assert exc.message.startswith("cudaGetDeviceCount failed: ") and "(cudaError" in exc.message
        assert "driver" in exc.hint
        return
    assert info["name"] and info["compute_capability"].count(".") == 1 and info["memory_mib"] > 0


# -- the checks made before TensorRT sees an engine file ----------------------------------------------------
def _plan(version: tuple[int, int, int, int]) -> bytes:
    return struct.pack("<II", 0x74727466, 0) + bytes(16) + bytes(version) + bytes(64)


def _engine_folder(tmp_path: Path, built: tuple, meta: dict | None) -> Path:
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "model.engine").write_bytes(_plan(built))
    if meta is not None:
        (folder / "engine.json").write_text(json.dumps(meta))
    return folder


def test_engine_for_another_tensorrt_or_gpu_is_refused_before_tensorrt_loads_it(tmp_path):
    meta = {"tensorrt": {"version": "10.16.1.11"}, "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
            "build_options": {"version_compatible": False, "hardware_compatibility_level": "none"}}
    folder = _engine_folder(tmp_path, (10, 16, 1, 11), meta)
    l4 = {"name": "NVIDIA L4", "compute_capability": "8.9"}
    assert check_engine_here(folder, "10.16.1.11", l4) == meta
    with pytest.raises(EngineMismatchError) as err:
        check_engine_here(folder, "11.1.0.106", l4)
    assert "10.16.1" in err.value.message and "11.1.0" in err.value.message and "kit.json" in err.value.hint
    with pytest.raises(EngineMismatchError, match="8.9"):
        check_engine_here(folder, "10.16.1.11", {"name": "NVIDIA A100", "compute_capability": "8.0"})
    (folder / "engine.json").unlink()  # without metadata the plan header still tells the version
    assert check_engine_here(folder, "10.16.1.5", l4) is None
    with pytest.raises(EngineMismatchError, match="built by TensorRT 10.16.1.11; this is TensorRT 10.15.1"):
        check_engine_here(folder, "10.15.1", l4)


def test_a_file_that_is_not_an_engine_is_named(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    with pytest.raises(UsageError, match="no engine in"):
        check_engine_here(folder, "10.16.1", None)
    (folder / "model.engine").write_bytes(Path(__file__).read_bytes())
    with pytest.raises(UsageError, match="not a TensorRT engine"):
        check_engine_here(folder, "10.16.1", None)


# -- with TensorRT (a GPU machine): real engines ----------------------------------------------------------
@NEEDS_TRT
@pytest.mark.slow
def test_engines_are_built_verified_and_described(kit_run):
    import tensorrt as trt

    root, result = kit_run
    assert result.code == 0, result.stderr
    out = root / "out"
    manifest = load_manifest(out)
    for artifact in manifest["artifacts"]:
        if artifact["id"] == "trt_weak" and api_major(trt.__version__) == 11:
            assert artifact["status"] == "error" and "no weakly typed networks" in artifact["reason"]
            continue
        assert artifact["status"] == "ok", artifact.get("reason")
        folder = out / "targets" / artifact["id"]
        meta = json.loads((folder / "engine.json").read_text())
        assert meta["tensorrt"]["version"] == trt.__version__
        assert meta["gpu"]["name"] and meta["gpu"]["compute_capability"]
        image = next(t for t in meta["io_tensors"] if t["name"] == "image")
        assert image["profile"] == {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}
        assert (folder / "timing.cache").stat().st_size > 0 and meta["layers"] > 0
        precisions = meta["precision"]["layer_output_precisions"]
        if artifact["id"] == "tensorrt_int8":
            assert precisions.get("int8", 0) > 0
        if artifact["id"] == "tensorrt_fp16":
            assert precisions.get("fp16", 0) > 0
        assert artifact["verification"][0]["passed"] is True


@NEEDS_TRT
@pytest.mark.slow
def test_timing_cache_is_reused_and_the_runner_enforces_the_profile(kit_run, tmp_path):
    from convertctl.targets import registry

    root, _ = kit_run
    kit_dir = root / "out" / "targets" / "tensorrt_fp32"
    result = run_cli("run", kit_dir / "recipe.yaml", "-o", tmp_path / "again")
    assert result.code == 0, result.stderr
    meta = json.loads((tmp_path / "again" / "targets" / "tensorrt_fp32" / "engine.json").read_text())
    assert meta["build_options"]["timing_cache"]["state"] == "loaded"
    runner = registry.get("tensorrt").open(kit_dir, spec(), {})
    for batch in (1, 16):
        (logits,) = runner.run({"image": np.zeros((batch, 3, 32, 32), np.float32)})
        assert logits.shape == (batch, 10)
    with pytest.raises(UsageError, match="outside the engine's profile"):
        runner.run({"image": np.zeros((17, 3, 32, 32), np.float32)})


def test_target_version_reads_the_first_installed_distribution():
    """TensorRT's module comes from tensorrt, tensorrt-cu12 or tensorrt-cu13 (and their *_bindings)."""
    import dataclasses
    import importlib.metadata

    from convertctl.targets import registry

    trt = registry.get("tensorrt")
    assert trt.distribution[0] == "tensorrt" and "tensorrt-cu12" in trt.distribution
    probe = dataclasses.replace(registry.get("onnxruntime"), distribution=("no-such-dist", "onnxruntime"))
    assert probe.version() == importlib.metadata.version("onnxruntime")
    assert dataclasses.replace(probe, distribution=("no-such-dist",)).version() is None
