"""The onnxruntime target's recipe options, and the INT8 Q/DQ form they resolve to on this CPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class OnnxRuntimeOptions(TargetOptions):
    runtime: Literal["onnxruntime"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "The ONNX the artifact is. `fp32`: the FP32 ONNX. `fp16`: the FP16-typed ONNX (`fp16` emission: inputs and "
        "outputs stay FP32, and so do the nodes that would overflow or lose accuracy in FP16). `int8`: the Q/DQ "
        "ONNX of `int8_form` (`qdq_u8s8`: U8 asymmetric per-tensor activations, S8 symmetric per-channel weights, "
        "INT32 bias; `qdq_u8u8` with `int8_form: u8u8`)."))
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = Field("all", description=(
        "ONNX Runtime's graph optimization level for the session (recorded in `session.json`). `disable`: the "
        "graph runs as written (a Q/DQ model then computes in float, not with INT8 kernels); `basic`: constant "
        "folding, redundant-node elimination and other semantics-preserving rewrites; `extended`: also complex "
        "node fusions; `all`: also layout optimizations."))
    intra_op_threads: int | None = Field(None, ge=1, description=(
        "Intra-op threads of the session (`intra_op_num_threads` in `session.json`); null: 0 there, ONNX "
        "Runtime's default (all cores)."))
    int8_form: Literal["auto", "u8s8", "u8s8_reduce_range", "u8u8"] = Field("auto", description=(
        "The INT8 Q/DQ form (`precision: int8` only); `auto`: `u8s8` on a CPU with VNNI, else `u8s8_reduce_range`. "
        "`u8s8`: S8 weights in 8 bits, which can saturate in ONNX Runtime's U8S8 kernels on x86 CPUs without "
        "VNNI. `u8s8_reduce_range`: S8 weights in 7 bits (`reduce_range`), which cannot; the same "
        "`qdq_u8s8` emission and speed, a little more rounding error. `u8u8`: U8 asymmetric per-channel weights "
        "(`qdq_u8u8` emission), 8 bits without saturation, but slower than FP32 on an AVX2-only CPU. `auto` looks "
        "at the CPU building and verifying the artifact (`avx512_vnni`, `avx_vnni` or `amx_int8`). The "
        "onnxruntime int8 targets of a recipe share one `qdq_u8s8` model: they must resolve to the same one of "
        "`u8s8` and `u8s8_reduce_range`."))


def resolve_int8_form(choice: str, flags: set[str] | None = None) -> tuple[str, str]:
    """(INT8 Q/DQ form, why). ONNX Runtime's docs: on x86 AVX2/AVX-512 without VNNI the U8S8 kernels use
    VPMADDUBSW, which can saturate; reduce_range (7-bit weights) or U8U8 avoid it. Measured on
    EfficientNet-Lite0 (91 held-out views, AMD EPYC Zen 3, AVX2 only), cosine / top-1 agreement vs PyTorch:
    u8s8 0.9875 / 0.890, u8s8_reduce_range 0.9929 / 0.923, u8u8 0.9974 / 0.956 (but 3x slower than FP32)."""
    from convertctl.cpu import vnni_flags

    if choice != "auto":
        return choice, "set in the recipe"
    have = vnni_flags(flags)
    if have:
        return "u8s8", (f"this CPU has {', '.join(have)}: its U8S8 kernels do not saturate; on a CPU without "
                        "VNNI rebuild with int8_form: u8s8_reduce_range")
    return "u8s8_reduce_range", ("this CPU has no VNNI (avx512_vnni, avx_vnni, amx_int8): its U8S8 kernels "
                                 "(VPMADDUBSW) saturate with 8-bit weights, not with 7-bit ones")


def int8_emission(spec: OnnxRuntimeOptions) -> str:
    """The quantize stage's emission an int8 target is built from: u8s8 with or without reduce_range is
    `qdq_u8s8` (S8-typed weights either way; the stage reads the form from the targets), u8u8 `qdq_u8u8`."""
    return "qdq_u8u8" if spec.int8_form == "u8u8" else "qdq_u8s8"
