"""The mnn target's recipe options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class MNNOptions(TargetOptions):
    runtime: Literal["mnn"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "What `model.mnn` holds. `fp32`: MNNConvert's FP32 model of the FP32 ONNX. `fp16`: the same with "
        "`--fp16`, the weights stored as FP16 (half the file); they are widened back when the model loads, so it "
        "computes in the precision `runtime_precision` gives (FP32 on x86 with `high`/`normal`). `int8`: the FP32 "
        "model quantized by MNN's offline quantizer (`quantized.out`/`mnnquant`) on the run's calibration samples: "
        "INT8 weights and activations (symmetric, per-channel weights), computed with MNN's INT8 kernels."))
    runtime_precision: Literal["high", "normal", "low"] = Field("high", description=(
        "MNN's `BackendConfig::PrecisionMode` for the session (`precision` in `runtime.json`). `high`: FP32 "
        "arithmetic everywhere; `normal`: MNN's default, which may use FP16 arithmetic on CPUs that have it (ARMv8.2; "
        "not x86); `low`: FP16 (or BF16) arithmetic where the CPU has it. Set explicitly so the FP32 artifact "
        "verified here computes in FP32; the tolerance follows `precision`, not this."))
    num_threads: int | None = Field(None, ge=1, le=64, description=(
        "MNN's `numThread` for the CPU backend (in `runtime.json`); null: the CPUs this process may run on (at most "
        "4, MNN's own default). The number the session reports using is recorded in the artifact's `effective`."))
    int8_feature_method: Literal["auto", "KL", "ADMM", "EMA"] = Field("auto", description=(
        "How MNN's quantizer picks the activation scales (`feature_quantize_method`; `precision: int8` only). `KL`: "
        "KL-divergence calibration on histograms (MNN's default); `ADMM`: ADMM optimisation over the samples; "
        "`EMA`: exponential moving averages of asymmetric ranges (MNN switches to it by itself when the converted "
        "model still has a BatchNorm). `auto`: `KL`, and `ADMM` when the quantizer crashes natively with `KL` (MNN "
        "3.6.1 does on models with a ReduceMean, e.g. global average pooling written as a mean: measured); the "
        "method used and why are recorded."))
    int8_weight_method: Literal["MAX_ABS", "ADMM"] = Field("MAX_ABS", description=(
        "How MNN's quantizer quantizes the weights (`weight_quantize_method`; `precision: int8` only): symmetric "
        "per-channel from the largest absolute value (`MAX_ABS`), or ADMM."))
    converter_timeout_s: int = Field(900, ge=10, description=(
        "Seconds MNNConvert (and the quantizer) may take in their child process before they are stopped."))
