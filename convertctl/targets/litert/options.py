"""The litert target's recipe options."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convertctl.schema import TargetOptions


class LiteRTOptions(TargetOptions):
    runtime: Literal["litert"] = Field(description=TargetOptions.model_fields["runtime"].description)
    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description=(
        "Precision of `model.tflite`. `fp32`: the converter's float32 model. `fp16`: its float16 model (weights stored "
        "in FP16 and dequantized to FP32 when the interpreter loads them on a CPU; a GPU delegate computes in FP16). "
        "`int8`: full-integer post-training quantization (TFLite's converter with a representative dataset made of "
        "the run's calibration samples; per-channel weights, int8 activations), with the input and output types "
        "`int8_io` says."))
    int8_io: Literal["float32", "int8"] = Field("float32", description=(
        "Input and output types of an int8 model (`precision: int8` only). `float32`: float in and out, quantized "
        "inside (onnx2tf's `*_integer_quant.tflite`: a drop-in for the float model). `int8`: int8 in and out "
        "(onnx2tf's `*_full_integer_quant.tflite`, TFLiteConverter's `inference_input_type`/`inference_output_type` "
        "int8; what integer-only accelerators such as Edge TPU want; the caller quantizes "
        "inputs and dequantizes outputs with the scales in `signature.json`, as convertctl's runner does)."))
    input_layout: Literal["nhwc", "onnx"] = Field("nhwc", description=(
        "Layout of the model's inputs. `nhwc`: onnx2tf's default, channels last for 3-D, 4-D and 5-D inputs (NCHW "
        "becomes NHWC), TFLite's native layout that its kernels and delegates expect; convertctl feeds its NCHW "
        "samples transposed and maps 4-D outputs back (the transposes are in `signature.json`). `onnx`: every input "
        "keeps the ONNX shape (onnx2tf `-kat`); the model then starts with a Transpose."))
    static_shapes: bool = Field(True, description=(
        "Fix every dynamic input dim before converting (onnx2tf `-ois`): the batch to 1 and every other dim to the "
        "recipe's `opt` value (`dims`). What mobile deployments and TFLite's delegates want, and what onnx2tf converts "
        "reliably: with dynamic spatial dims it aborted natively in oneDNN on PP-OCRv4 det and failed at a MatMul on "
        "PP-OCRv4 rec (measured). The runner feeds a batch one sample at a time. `false`: dynamic dims stay dynamic "
        "and the interpreter resizes its inputs per run."))
    num_threads: int | None = Field(None, ge=1, description=(
        "Interpreter threads (`num_threads` of `ai_edge_litert.interpreter.Interpreter`, recorded in "
        "`signature.json`); null: one per CPU core this process may use, set explicitly (the interpreter's own default "
        "is not reported back)."))
    converter: Literal["auto", "onnx2tf", "tflite_converter", "litert_torch"] = Field("auto", description=(
        "What converts the model to .tflite. `onnx2tf`: the run's ONNX, by onnx2tf in its own environment (NCHW "
        "inputs become NHWC). `tflite_converter`: a TensorFlow source (SavedModel, .keras, .h5) itself, by "
        "TensorFlow's own `tf.lite.TFLiteConverter` in convertctl's tensorflow (the source's layout and shapes "
        "kept; `static_shapes` and `input_layout` do not apply); refused for other sources. `litert_torch`: a "
        "PyTorch source built by `source.factory` (not TorchScript), by Google's litert-torch (torch.export, no ONNX) "
        "in its own environment (`make frameworks`), at the static shape of batch 1 and the dims' `opt`, inputs kept "
        "as the module takes them (NCHW); fp16 and int8 by ai-edge-quantizer (float16 weights; full-integer static "
        "min/max on the calibration samples). `auto`: `tflite_converter` for a TensorFlow source, `onnx2tf` "
        "otherwise (litert_torch is asked for by name: it is newer, and keeps NCHW inputs)."))
    per_layer: bool = Field(True, description=(
        "Compare the .tflite with ONNX Runtime tensor by tensor on one sample (the interpreter keeps every "
        "intermediate tensor) and record the first diverging layer in the artifact's settings (`per_layer`); "
        "tensors are matched to ONNX tensors by value, through the NHWC -> NCHW transpose where there is one."))
    converter_timeout_s: int = Field(1800, ge=10, description=(
        "Seconds the conversion (onnx2tf or TFLiteConverter, each in a child process) may take before its process "
        "is stopped and the build fails."))
