"""The recipe options of a `runtime: tensorrt` target (typed, validated at recipe load, no TensorRT needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class TensorRTOptions(TargetOptions):
    runtime: Literal["tensorrt"]
    # fp32: the FP32 ONNX; fp16: the FP16-typed ONNX (quantize/emit.py keeps overflow-prone tensors FP32);
    # int8: the symmetric S8 Q/DQ ONNX made from the calibration table. Strongly typed: the engine runs the
    # types the ONNX has, which is how TensorRT 11 works and what convertctl verifies against ONNX Runtime.
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # false: a weakly typed network with builder precision flags (FP16; INT8+FP16 for a Q/DQ ONNX). TensorRT
    # 10.x only (deprecated since 10.12, removed in 11.0); the engine then may run layers in other precisions.
    strongly_typed: bool = True
    # Allow TF32 tensor cores for FP32 layers (TensorRT's default is on). Off by default: "fp32" means FP32,
    # and TF32 alone moves outputs by ~1e-3 relative.
    tf32: bool = False
    workspace_mib: int | None = Field(None, ge=1)  # WORKSPACE memory-pool limit; None = TensorRT's default (all)
    builder_optimization_level: int = Field(3, ge=0, le=5)  # TensorRT's default is 3; 5 searches longest
    hardware_compatibility_level: Literal["none", "ampere+", "same_compute_capability"] = "none"
    version_compatible: bool = False  # the engine also runs on newer TensorRT of the same major (lean runtime)
    # Where the timing cache is loaded from and saved to, so rebuilds on the same GPU and TensorRT are fast.
    # Default: <cache dir>/tensorrt/timing-<TensorRT version>-sm<compute capability>.cache. A copy ships
    # with the engine either way.
    timing_cache: Path | None = None
    device: int = Field(0, ge=0)  # CUDA device index used to build, verify and time the engine
