"""The openvino target's recipe options, and the NNCF overflow fix they resolve to on this CPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class OpenVINOOptions(TargetOptions):
    runtime: Literal["openvino"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "Precision of the IR. `fp32`: the FP32 IR. `fp16`: weights compressed to FP16 while saving the IR (half the "
        "`.bin`); the precision it computes in is `inference_precision`. `int8`: an INT8 IR, quantized as "
        "`int8_method` says."))
    int8_method: Literal["nncf", "qdq"] = Field("nncf", description=(
        "How an int8 IR is quantized (`precision: int8` only). `nncf`: NNCF post-training quantization "
        "(`nncf.quantize`) of the FP32 IR on all the calibration samples, with full bias correction (fast bias "
        "correction for a model with an If operation, the only kind NNCF applies to it); needs the `nncf` package. "
        "`qdq`: the IR is converted from the `qdq_s8` Q/DQ ONNX (symmetric INT8 from the shared calibration "
        "table), which OpenVINO runs as INT8."))
    inference_precision: Literal["f32", "bf16", "f16"] = Field("f32", description=(
        "Execution precision hint (`INFERENCE_PRECISION_HINT`), set explicitly: on CPUs with AMX or AVX512-BF16 "
        "OpenVINO's own default is bf16. Left to OpenVINO, an FP32 IR would silently run in bf16 there. The IR "
        "does not store the hint: it travels in `runtime.json`. The tolerance follows `precision`, not this hint."))
    device: Literal["CPU"] = Field("CPU", description="OpenVINO device the IR is compiled for and verified on.")
    num_threads: int | None = Field(None, ge=1, description=(
        "`INFERENCE_NUM_THREADS` of the compiled model (recorded in `runtime.json`); null: OpenVINO's default."))
    overflow_fix: Literal["auto", "disable", "first_layer", "enable"] = Field("auto", description=(
        "NNCF's fix for the INT8 saturation of x86 CPUs without VNNI, which gives up one bit of the weights "
        "(`int8_method: nncf` only). `first_layer`: in the first layer only (NNCF's default); `enable`: in every "
        "layer; `disable`: nowhere. `auto`: `disable` when the CPU building and verifying the IR has VNNI "
        "(`avx512_vnni`, `avx_vnni` or `amx_int8`), else `enable`."))


def resolve_overflow_fix(choice: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(NNCF overflow fix, why). OpenVINO documents the saturation as absent on CPUs with VNNI.

    Without VNNI, `enable` rather than NNCF's default `first_layer`: on EfficientNet-Lite0 (91 held-out views,
    AMD EPYC Zen 3, AVX2 only) enable gave cosine vs PyTorch 0.9953 and top-1 agreement 0.945, first_layer
    0.9886 / 0.923, disable 0.9861 / 0.890 (measured 2026-12)."""
    from convertctl.cpu import vnni_flags

    if choice != "auto":
        return choice, "set in the recipe"
    have = vnni_flags(flags)
    if have:
        return "disable", (f"this CPU has {', '.join(have)}: no int8 saturation; on a CPU without VNNI "
                           "rebuild with overflow_fix: enable")
    return "enable", ("this CPU has no VNNI (avx512_vnni, avx_vnni, amx_int8): 7-bit weights in every layer, "
                      "so its int8 kernels cannot saturate")
