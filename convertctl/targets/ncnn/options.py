"""The ncnn target's recipe options, and why it has no INT8."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from convertctl.schema import TargetOptions

# ncnn's INT8 path is its C++ tools: ncnn2table (a calibration table from images) and ncnn2int8 (the quantized
# .param/.bin). Checked in the installed wheels (RECORD files, the pnnx binary's usage): neither carries them.
NO_INT8 = ("the ncnn 1.0.20261020 and pnnx 20261020 wheels carry no ncnn2table/ncnn2int8 (ncnn's INT8 path is "
           "those two C++ tools, built from ncnn's sources), so convertctl cannot quantize an ncnn model from its "
           "calibration data here; build fp32 or fp16, or build ncnn's tools and run ncnn2table + ncnn2int8 on "
           "the fp32 model.ncnn.param/.bin")


class NcnnOptions(TargetOptions):
    runtime: Literal["ncnn"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "`fp32`: FP32 weights in `model.ncnn.bin` (pnnx `fp16=0`) and every FP16/BF16 option of the net off. "
        "`fp16`: FP16 weights in `model.ncnn.bin` (written by convertctl from pnnx's FP32 weights, rounded to "
        "nearest with FP16's subnormals kept; a blob FP16 cannot hold stays FP32 and its layer gets `31=3`) and "
        "ncnn's `use_fp16_storage`, "
        "`use_fp16_packed` and (with `fp16_arithmetic`) `use_fp16_arithmetic` on. What of it ncnn really uses "
        "depends on the CPU: ncnn stores activations in FP16 only on ARM (asimdhp) and RISC-V (zfh); on x86 "
        "only the weights are FP16 (InnerProduct keeps them so with F16C) and it computes in FP32 (recorded in "
        "`effective.fp16_here`). `int8` is refused: " + NO_INT8 + "."))
    num_threads: int | None = Field(None, ge=1, description=(
        "`net.opt.num_threads` (recorded in `kit.json`); null: ncnn's default (the physical big cores)."))
    fp16_arithmetic: bool = Field(True, description=(
        "With `precision: fp16`, also `use_fp16_arithmetic` (FP16 multiply-accumulate, on ARMv8.2 CPUs; x86 "
        "CPUs have none and ignore it)."))
    optlevel: Literal[0, 1, 2] = Field(2, description=(
        "pnnx's graph optimization level (`optlevel=`): 0 none, 1 fusions that keep the layers, 2 all (its "
        "default)."))
    per_layer: bool = Field(True, description=(
        "Compare the built model blob by blob with ONNX Runtime on the first calibration sample and record the "
        "first diverging layer in the artifact's settings (`per_layer`); blobs are matched to ONNX tensors by "
        "value, since pnnx renames and fuses them. Needs a `calibration` section; costs one run of each."))
    convert_timeout_s: int = Field(600, ge=10, description=(
        "Seconds pnnx may take to convert the model in its child process before it is stopped."))

    @field_validator("precision")
    @classmethod
    def _no_int8(cls, value: str) -> str:
        if value == "int8":
            raise ValueError(f"precision int8 is not available for ncnn: {NO_INT8}")
        return value
