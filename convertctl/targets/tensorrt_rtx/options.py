"""The recipe options of a `runtime: tensorrt_rtx` target (typed, validated at recipe load, no TensorRT-RTX needed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions

ComputeCapability = Literal["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]


class TensorRTRTXOptions(TargetOptions):
    runtime: Literal["tensorrt_rtx"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "The ONNX the engine is built from: `fp32` the FP32 ONNX, `fp16` the FP16-typed ONNX, `int8` the symmetric "
        "S8 Q/DQ ONNX (`qdq_s8`) made from the calibration table. TensorRT-RTX networks are always strongly typed: "
        "the engine computes in the types that ONNX has."))
    compute_capabilities: list[ComputeCapability] | None = Field(None, description=(
        "The GPU compute capabilities the engine is built for (`IBuilderConfig.set_compute_capability`). null: "
        "TensorRT-RTX's default, a portable engine for compute capability 8.0, 8.6, 8.9 and 12.x; Turing (7.5) "
        "needs it named (and has no FP32 GEMM: an FP32 Gemm/MatMul fails the build there). Recorded in engine.json "
        "either way."))
    tf32: bool = Field(False, description=(
        "Allow TF32 tensor cores for FP32 layers. Off by default: `fp32` means FP32."))
    workspace_mib: int | None = Field(None, ge=1, description=(
        "Limit of the WORKSPACE memory pool, in MiB; null: TensorRT-RTX's default."))
    builder_optimization_level: int = Field(3, ge=0, le=5, description=(
        "The builder optimization level (TensorRT-RTX's default is 3)."))
    device: int = Field(0, ge=0, description=(
        "CUDA device index the engine is verified and timed on, where a supported GPU is present (the build "
        "itself needs no GPU)."))
