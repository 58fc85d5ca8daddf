"""LiteRT (formerly TensorFlow Lite): `model.tflite` for phones and boards, verified here on the CPU with
ai-edge-litert's Interpreter (XNNPACK). x86 timings of a mobile runtime are indicative, not what a phone sees.

Built from the FP32 ONNX by onnx2tf, in a Python environment of its own (converter.py); FP16 and INT8 are onnx2tf's
float16 and full-integer outputs, INT8 calibrated on the run's calibration samples (never onnx2tf's default
download). A TensorFlow source is converted itself, by TensorFlow's TFLiteConverter (tflite.py, option `converter`).
The folder holds model.tflite, signature.json (names, shapes, dtypes, quantization, the layout transposes), kit.json
(the onnx2tf command line or TFLiteConverter snippet that reproduces it); the settings hold the per-layer comparison
with the ONNX (layers.py)."""

from __future__ import annotations

from pathlib import Path

from convertctl.targets.base import BuildContext, BuiltArtifact, Runner, Target
from convertctl.targets.litert.options import LiteRTOptions


def _build(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext | None = None) -> BuiltArtifact:
    from convertctl.targets.litert.build import build

    return build(onnx_path, spec, out_dir, ctx)


def _open(out_dir: Path, spec: LiteRTOptions, settings: dict) -> Runner:
    from convertctl.targets.litert.runner import open_model

    return open_model(out_dir, spec, settings)


def _usage_problem(spec: LiteRTOptions, ctx: BuildContext) -> str | None:
    from convertctl.targets.litert.tflite import usage_problem

    return usage_problem(spec, ctx)


def _check(facts):
    from convertctl.targets.litert.check import check_litert

    return check_litert(facts)


TARGET = Target(
    name="litert",
    summary="LiteRT / TensorFlow Lite (.tflite, converted by onnx2tf or TFLiteConverter) for phones and boards",
    module="ai_edge_litert",
    distribution="ai-edge-litert",
    extra="litert",
    precisions=("fp32", "fp16", "int8"),
    options_model=LiteRTOptions,
    build=_build,
    open=_open,
    title="LiteRT",
    check=_check,
    environment=("ai-edge-litert",),
    int8_quantizer="TFLite's converter (onnx2tf -oiqt, or TFLiteConverter on a TensorFlow source)",
    model_suffixes=(".tflite",),
    # converter tflite_converter reads the TensorFlow source itself (BuildContext.source_path)
    reads_source=True,
    usage_problem=_usage_problem,
)
