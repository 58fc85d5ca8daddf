"""The recipe options of a `runtime: tensorrt` target (typed, validated at recipe load, no TensorRT needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class TensorRTOptions(TargetOptions):
    runtime: Literal["tensorrt"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "The ONNX the engine is built from. `fp32`: the FP32 ONNX. `fp16`: the FP16-typed ONNX (the FP32 one with "
        "`strongly_typed: false`). `int8`: the symmetric S8 Q/DQ ONNX (`qdq_s8`) made from the calibration table. "
        "Strongly typed, the engine computes in the types that ONNX has."))
    strongly_typed: bool = Field(True, description=(
        "true: a strongly typed network, which computes in the ONNX's own types (as TensorRT 11 always does). "
        "false: a weakly typed network with builder precision flags (FP16; INT8 and FP16 for a Q/DQ ONNX), whose "
        "layers may then run in other precisions; TensorRT 10.x only (deprecated since 10.12, removed in 11.0), "
        "refused on 11.x."))
    tf32: bool = Field(False, description=(
        "Allow TF32 tensor cores for FP32 layers, as TensorRT does by default. Off by default: `fp32` means FP32, "
        "and TF32 alone moves outputs by about 1e-3 relative."))
    workspace_mib: int | None = Field(None, ge=1, description=(
        "Limit of TensorRT's WORKSPACE memory pool, in MiB; null: TensorRT's default (the GPU's whole memory)."))
    builder_optimization_level: int = Field(3, ge=0, le=5, description=(
        "TensorRT's builder optimization level: a higher level tries more tactics and builds longer. 3 is "
        "TensorRT's default; 5 searches longest."))
    hardware_compatibility_level: Literal["none", "ampere+", "same_compute_capability"] = Field("none", description=(
        "Which GPUs the engine runs on. `none`: the kind of GPU it was built on; `ampere+`: every GPU from Ampere "
        "(sm 8.0) on; `same_compute_capability`: any GPU of the same compute capability."))
    version_compatible: bool = Field(False, description=(
        "The engine embeds a lean runtime and also loads in newer TensorRT of the same major "
        "(`BuilderFlag.VERSION_COMPATIBLE`)."))
    timing_cache: Path | None = Field(None, description=(
        "File the timing cache is loaded from before the build and saved to after it, so a rebuild on the same GPU "
        "and TensorRT skips kernel timing; a copy ships with the engine as `timing.cache` either way. A relative "
        "path is taken from the current folder. null: "
        "`<cache dir>/tensorrt/timing-<TensorRT version>-sm<compute capability>.cache`."))
    device: int = Field(0, ge=0, description="CUDA device index the engine is built, verified and timed on.")
    kit_test_build: bool = Field(True, description=(
        "Where TensorRT is not installed but NVIDIA's TensorRT for RTX is, the build kit's ONNX is parsed and built "
        "with it, with the kit's profile, and a kit it cannot build makes the artifact an error. `false`: no such "
        "trial (for a model that TensorRT 10/11 takes and TensorRT for RTX refuses)."))
