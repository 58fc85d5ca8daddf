"""Engine facts read without TensorRT: plan header version, inspector JSON of 10.x and 11.x, loadability here.

TensorRT cannot be installed on this project's machines, so engine headers are built byte by byte from the
layout trtexec's printPlanVersion reads, and inspector documents are written as the two releases emit them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from convertctl.errors import UsageError
from convertctl.targets.tensorrt.engine_info import (
    PLAN_TAG,
    compatibility_problem,
    read_plan_version,
    read_plan_version_file,
    summarize_inspector,
)

REPO = Path(__file__).resolve().parents[1]


def plan_header(major, minor, patch, build, serialization=0, tail=b"\xab" * 64):
    return (
        struct.pack("<II", PLAN_TAG, serialization) + bytes(16) + bytes([major, minor, patch, build]) + tail
    )


# --- (a) plan header ---------------------------------------------------------------------------------------


def test_plan_version_from_header():
    assert read_plan_version(plan_header(10, 16, 1, 11)) == "10.16.1.11"
    assert read_plan_version(plan_header(11, 1, 0, 106)) == "11.1.0.106"
    # exactly the header, nothing after it
    assert read_plan_version(plan_header(8, 6, 1, 6, tail=b"")) == "8.6.1.6"
    # the tag is little-endian: its bytes on disk spell "ftrt"
    assert plan_header(10, 0, 0, 0)[:4] == b"ftrt"


def test_real_non_engine_file_is_refused():
    with pytest.raises(UsageError) as err:
        read_plan_version_file(REPO / "pyproject.toml")
    assert "not a TensorRT engine" in err.value.message
    assert "no plan tag" in err.value.message
    assert "pyproject.toml" in err.value.message
    assert "--saveEngine" in err.value.hint


def test_short_data_is_refused():
    with pytest.raises(UsageError) as err:
        read_plan_version(plan_header(10, 16, 1, 11)[:27], name="model.engine")
    assert err.value.message == "model.engine is not a TensorRT engine: only 27 bytes"
    with pytest.raises(UsageError, match="only 0 bytes"):
        read_plan_version(b"")


def test_unknown_serialization_version():
    with pytest.raises(UsageError) as err:
        read_plan_version(plan_header(12, 0, 0, 1, serialization=3), name="new.engine")
    assert err.value.message == (
        "new.engine: unknown TensorRT plan serialization version 3 (engines from TensorRT >= 8.6 use 0)"
    )
    assert "--getPlanVersionOnly" in err.value.hint


def test_plan_version_file(tmp_path):
    engine = tmp_path / "resnet.engine"
    engine.write_bytes(plan_header(10, 16, 1, 11, tail=b"\x00" * 4096))
    assert read_plan_version_file(engine) == "10.16.1.11"
    with pytest.raises(UsageError, match="cannot read"):
        read_plan_version_file(tmp_path / "missing.engine")


# --- (b) inspector JSON ------------------------------------------------------------------------------------


def t10(name, dims, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


INSPECTOR_10 = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to conv1",
            "LayerType": "Reformat",
            "Inputs": [t10("input_0", [1, 3, 224, 224], "Row major linear FP32 format")],
            "Outputs": [t10("conv1_in", [1, 3, 224, 224], "Int8 NC/32HW32")],
            "TacticName": "",
        },
        {
            "Name": "conv1 + relu1",
            "LayerType": "CaskConvolution",
            "Inputs": [t10("conv1_in", [1, 3, 224, 224], "Int8 NC/32HW32")],
            "Outputs": [
                t10("relu1_out", [1, 64, 112, 112], "Four wide channel vectorized row major Int8 format")
            ],
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32",
        },
        {
            "Name": "conv2",
            "LayerType": "CaskConvolution",
            "Inputs": [
                t10("relu1_out", [1, 64, 112, 112], "Four wide channel vectorized row major Int8 format")
            ],
            "Outputs": [
                t10("conv2_out", [1, 64, 112, 112], "Channel major FP16 format where channel % 8 == 0")
            ],
            "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16",
        },
        {
            "Name": "gemm_myl0_0",
            "LayerType": "gemm",
            "Inputs": [
                t10("conv2_out", [1, 64, 112, 112], "Channel major FP16 format where channel % 8 == 0")
            ],
            "Outputs": [t10("logits", [1, 1000], "Half")],
            "TacticName": "sm80_xmma_gemm_f16f16",
        },
        {
            "Name": "Reformatting CopyNode for Output Tensor 0",
            "LayerType": "Reformat",
            "Inputs": [t10("logits", [1, 1000], "Half")],
            "Outputs": [t10("output_0", [1, 1000], "Row major linear FP32 format")],
            "TacticName": "",
        },
        {
            "Name": "shape_of_mask",
            "LayerType": "Shape",
            "Inputs": [t10("mask", [1, 1000], "Row major linear UInt8 format")],
            "Outputs": [t10("mask_shape", [2], "Row major linear Int64 format")],
        },
    ],
    "Bindings": ["input_0", "mask", "output_0", "not_in_any_layer"],
}


def test_summarize_10x_bindings():
    summary = summarize_inspector(json.dumps(INSPECTOR_10))
    assert summary["schema"] == "10.x (Bindings)"
    assert summary["detailed"] is True
    assert summary["layers"] == 6
    # bindings get mode, dtype and shape from the detailed layers that consume or produce them
    assert summary["io_tensors"] == [
        {"name": "input_0", "mode": "input", "dtype": "fp32", "shape": [1, 3, 224, 224]},
        {"name": "mask", "mode": "input", "dtype": "uint8", "shape": [1, 1000]},
        {"name": "output_0", "mode": "output", "dtype": "fp32", "shape": [1, 1000]},
        {"name": "not_in_any_layer", "mode": None, "dtype": None, "shape": None},
    ]
    assert summary["layer_output_precisions"] == {"int8": 2, "fp16": 2, "fp32": 1, "int64": 1}


def t11(name, dims, dtype, fmt="Row major linear format (kLINEAR)", key="DataType"):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format": fmt, key: dtype}


def profile(shape, fmt):
    return {"MinShape": shape, "OptShape": shape, "MaxShape": shape, "Format": fmt}


INSPECTOR_11 = {
    "Layers": [
        {
            "Name": "conv1",
            "LayerType": "CaskConvolution",
            "Inputs": [t11("images", [-1, 3, 640, 640], "Float")],
            "Outputs": [
                t11("conv1_out", [-1, 32, 320, 320], "Half", "Channel major format where channel % 8 == 0")
            ],
            "TacticName": "sm89_xmma_fprop_f16",
        },
        {
            "Name": "conv2",
            "LayerType": "CaskConvolution",
            "Inputs": [t11("conv1_out", [-1, 32, 320, 320], "Half")],
            "Outputs": [t11("conv2_out", [-1, 64, 160, 160], "BFloat16", key="Datatype")],
        },
        {
            "Name": "q",
            "LayerType": "Quantize",
            "Inputs": [t11("conv2_out", [-1, 64, 160, 160], "BFloat16")],
            "Outputs": [t11("q_out", [-1, 64, 160, 160], "FP8")],
        },
        {
            "Name": "head",
            "LayerType": "gemm",
            "Inputs": [t11("q_out", [-1, 64, 160, 160], "FP8")],
            "Outputs": [t11("boxes", [-1, 100, 4], "Float"), t11("ids", [-1, 100], "Int32")],
        },
        {
            "Name": "topk_ids",
            "LayerType": "TopK",
            "Inputs": [t11("boxes", [-1, 100, 4], "Float")],
            "Outputs": [t11("ids", [-1, 100], "Int32")],
        },
        {"Name": "no_outputs_listed", "LayerType": "NoOp"},
    ],
    "I/O Tensors": [
        {
            "Name": "images",
            "IOMode": "Input",
            "DataType": "Float",
            "Dimensions": [-1, 3, 640, 640],
            "Location": "Device",
            "IsShapeInferenceIO": False,
            "ProfileInfo": [
                {
                    "MinShape": [1, 3, 640, 640],
                    "OptShape": [4, 3, 640, 640],
                    "MaxShape": [8, 3, 640, 640],
                    "Format": "Row major linear FP32 format (kLINEAR)",
                }
            ],
        },
        {"Name": "boxes", "IOMode": "Output", "DataType": "Float", "Dimensions": [-1, 100, 4]},
        # no DataType: the profile's format names it
        {
            "Name": "ids",
            "IOMode": "Output",
            "ProfileInfo": [profile([1, 100], "Row major linear Int32 format")],
        },
        {"Name": "extra"},  # nothing but a name: None everywhere, never a KeyError
    ],
}


def test_summarize_11x_io_tensors():
    summary = summarize_inspector(json.dumps(INSPECTOR_11))
    assert summary["schema"] == "11.x (I/O Tensors)"
    assert summary["detailed"] is True
    assert summary["layers"] == 6
    assert summary["io_tensors"] == [
        {"name": "images", "mode": "input", "dtype": "fp32", "shape": [-1, 3, 640, 640]},
        {"name": "boxes", "mode": "output", "dtype": "fp32", "shape": [-1, 100, 4]},
        {"name": "ids", "mode": "output", "dtype": "int32", "shape": None},
        {"name": "extra", "mode": None, "dtype": None, "shape": None},
    ]
    # first output only: "head" counts as fp32 though its second output is int32; "no_outputs_listed" never
    assert summary["layer_output_precisions"] == {"fp16": 1, "bf16": 1, "fp8": 1, "fp32": 1, "int32": 1}


@pytest.mark.parametrize(
    "text, dtype",
    [
        ("Row major linear FP32 format", "fp32"),
        ("Row major linear BF16 format", "bf16"),
        ("Two wide channel vectorized row major FP16 format", "fp16"),
        ("Int8 NC/32HW32", "int8"),
        ("Row major linear INT8 format", "int8"),
        ("Row major linear UInt8 format", "uint8"),
        ("Row major linear Int4 format", "int4"),
        ("Row major linear Bool format", "bool"),
        ("Float", "fp32"),
        ("Row major linear FP4 format", "fp4"),
        ("Some future layout", "other"),
        ("N/A", None),
    ],
)
def test_10x_format_strings(text, dtype):
    doc = {"Bindings": [], "Layers": [{"Name": "l", "Outputs": [{"Name": "t", "Format/Datatype": text}]}]}
    expected = {dtype: 1} if dtype else {}
    assert summarize_inspector(json.dumps(doc))["layer_output_precisions"] == expected


def test_names_only_layers():
    doc = {"Layers": ["conv1 + relu1", "pool1", "fc"], "Bindings": ["input", "output"]}
    summary = summarize_inspector(json.dumps(doc))
    assert summary == {
        "schema": "10.x (Bindings)",
        "io_tensors": [
            {"name": "input", "mode": None, "dtype": None, "shape": None},
            {"name": "output", "mode": None, "dtype": None, "shape": None},
        ],
        "layers": 3,
        "layer_output_precisions": {},
        "detailed": False,
    }


def test_missing_keys_and_unknown_schema():
    assert summarize_inspector("{}") == {
        "schema": "unknown",
        "io_tensors": [],
        "layers": 0,
        "layer_output_precisions": {},
        "detailed": False,
    }


def test_malformed_json():
    with pytest.raises(UsageError) as err:
        summarize_inspector('{"Layers": [')
    assert err.value.message.startswith("engine inspector output is not JSON: ")
    assert "line 1" in err.value.message
    with pytest.raises(UsageError, match="not a JSON object"):
        summarize_inspector('"just a string"')


# --- (c) can the engine load here? -------------------------------------------------------------------------

ADA = {"name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}
AMPERE = {"name": "NVIDIA GeForce RTX 3090", "compute_capability": "8.6"}
HOPPER = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
TURING = {"name": "Tesla T4", "compute_capability": "7.5"}


def meta(version="10.16.1.11", gpu=ADA, version_compatible=None, level=None):
    options = {}
    if version_compatible is not None:
        options["version_compatible"] = version_compatible
    if level is not None:
        options["hardware_compatibility_level"] = level
    return {"tensorrt": {"version": version}, "gpu": dict(gpu), "build_options": options}


def test_same_version_same_gpu_is_compatible():
    assert compatibility_problem(meta(), "10.16.1.11", ADA) is None
    # another card of the same compute capability loads the engine by default
    assert (
        compatibility_problem(meta(), "10.16.1.11", {"name": "NVIDIA L4", "compute_capability": "8.9"})
        is None
    )


def test_patch_difference_is_a_problem():
    problem = compatibility_problem(meta(), "10.16.0.5", ADA)
    assert problem is not None
    assert "10.16.1.11" in problem and "10.16.0.5" in problem
    assert "convertctl build" in problem and "--target tensorrt" in problem and "build kit" in problem


def test_build_number_difference_is_allowed():
    assert compatibility_problem(meta(), "10.16.1.12", ADA) is None
    assert compatibility_problem(meta(), "10.16.1", ADA) is None


def test_version_compatible_engines():
    built = meta(version="10.8.0.43", version_compatible=True)
    assert compatibility_problem(built, "10.8.0.43", ADA) is None
    assert compatibility_problem(built, "10.16.1.11", ADA) is None
    older = compatibility_problem(built, "10.7.0.23", ADA)
    assert older is not None and "10.8.0.43" in older and "10.7.0.23" in older
    other_major = compatibility_problem(built, "11.1.0.106", ADA)
    assert other_major is not None and "10.8.0.43" in other_major and "11.1.0.106" in other_major
    # without the flag a newer minor is refused
    assert compatibility_problem(meta(version="10.8.0.43"), "10.16.1.11", ADA) is not None


def test_compute_capability_difference_is_a_problem():
    for level in (None, "none", "same_compute_capability"):
        problem = compatibility_problem(meta(level=level), "10.16.1.11", AMPERE)
        assert problem is not None
        assert "NVIDIA GeForce RTX 4090" in problem and "8.9" in problem
        assert "NVIDIA GeForce RTX 3090" in problem and "8.6" in problem
        assert "convertctl build" in problem


def test_ampere_plus_engines():
    built = meta(gpu=AMPERE, level="ampere+")
    assert compatibility_problem(built, "10.16.1.11", HOPPER) is None
    assert compatibility_problem(built, "10.16.1.11", ADA) is None
    problem = compatibility_problem(built, "10.16.1.11", TURING)
    assert problem is not None and "Tesla T4" in problem and "7.5" in problem and "8.0" in problem


def test_no_gpu_visible():
    problem = compatibility_problem(meta(), "10.16.1.11", None)
    assert problem is not None and problem.startswith("no NVIDIA GPU is visible here: ")
    assert "NVIDIA GeForce RTX 4090" in problem and "8.9" in problem


def test_compute_capabilities_compare_numerically():
    future = {"name": "Future GPU", "compute_capability": "8.10"}
    # as strings "8.10" < "8.9"; as capabilities they differ and 8.10 is not 8.1
    problem = compatibility_problem(meta(), "10.16.1.11", future)
    assert problem is not None and "8.10" in problem and "8.9" in problem
    assert compatibility_problem(meta(gpu=future), "10.16.1.11", dict(future)) is None
    assert compatibility_problem(meta(gpu=future), "10.16.1.11", {"name": "x", "compute_capability": "8.1"})
    # under ampere+ the ordering decides: 8.10 is newer than 8.0, 7.10 still older
    ampere_plus = meta(gpu=AMPERE, level="ampere+")
    assert compatibility_problem(ampere_plus, "10.16.1.11", future) is None
    assert compatibility_problem(ampere_plus, "10.16.1.11", {"name": "x", "compute_capability": "7.10"})


def test_missing_metadata_skips_checks_it_cannot_make():
    assert compatibility_problem({}, "10.16.1.11", ADA) is None
    assert compatibility_problem({"tensorrt": {"version": "10.16.1.11"}}, "10.16.1.11", ADA) is None
