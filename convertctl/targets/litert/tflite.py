"""The converter `tflite_converter`: TensorFlow's own tf.lite.TFLiteConverter on a TensorFlow source (SavedModel,
.keras, .h5), run in a child of convertctl's own Python (tflite_worker.py), instead of source -> ONNX -> onnx2tf.

Why: for a model that already is TensorFlow, the detour through ONNX and back (tf2onnx, then onnx2tf's layout
inference) only adds ways to fail; TensorFlow's converter reads the graph it was written in, keeps its NHWC layout
and its names, and needs no environment of its own (convertctl's tensorflow-cpu has it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, UsageError
from convertctl.targets.base import BuildContext
from convertctl.targets.litert.options import LiteRTOptions

WORKER = "convertctl.targets.litert.tflite_worker"


def choose(spec: LiteRTOptions, ctx: BuildContext | None) -> str:
    """"onnx2tf" or "tflite_converter": `auto` takes TensorFlow's own converter for a TensorFlow source."""
    framework = ctx.source_framework if ctx is not None else None
    if spec.converter == "auto":
        return "tflite_converter" if framework == "tensorflow" and ctx.source_path is not None else "onnx2tf"
    return spec.converter


def usage_problem(spec: LiteRTOptions, ctx: BuildContext) -> str | None:
    """The TFLiteConverter asked for on a source it cannot read (Target.usage_problem): one line."""
    if spec.converter == "tflite_converter" and ctx.source_framework != "tensorflow":
        return (f"{spec.id}: converter: tflite_converter converts TensorFlow sources (SavedModel, .keras, .h5) only; "
                f"this run's source is {ctx.source_framework or 'an ONNX file'}: use converter: onnx2tf (or auto)")
    if spec.converter == "litert_torch" and (ctx.source_framework != "pytorch" or not ctx.source_factory):
        what = ("a TorchScript file (torch.export cannot trace it)" if ctx.source_framework == "pytorch"
                else ctx.source_framework or "an ONNX file")
        return (f"{spec.id}: converter: litert_torch converts PyTorch modules built by source.factory only; this "
                f"run's source is {what}: use converter: onnx2tf (or auto)")
    return None


def _format(path: Path) -> str:
    from convertctl.frontends.tensorflow.files import detect

    found = detect(path)
    if found is None:
        raise UsageError(f"{path} is not a TensorFlow model (SavedModel folder, .keras, .h5)")
    return found.format


def _calibration(ctx: BuildContext, work: Path) -> dict[str, str]:
    """The calibration samples, one .npy per input: the samples stacked along a new axis 0, each as the model takes
    it for one run (batch 1 on its own batch axis, whichever that is; a scalar stays a scalar), in its own dtype, as
    the source takes them (a TensorFlow source's own layout: no transpose). Sample i is array[i]."""
    if ctx.calibration is None:
        raise UsageError("a litert int8 target needs calibration data (a `calibration` section, or --calib)")
    per_input: dict[str, list[np.ndarray]] = {}
    for feeds in ctx.calibration():
        for name, value in feeds.items():
            per_input.setdefault(name, []).append(np.asarray(value))
    (work / "calibration").mkdir(exist_ok=True)
    paths = {}
    for name, parts in per_input.items():
        path = work / "calibration" / f"{name.replace('/', '_')}.npy"
        if len({(p.shape, p.dtype) for p in parts}) != 1:
            raise ConvertctlError(f"the calibration samples of input {name!r} differ in shape or dtype: "
                                  f"{sorted({(p.shape, p.dtype.name) for p in parts})[:3]}")
        np.save(path, np.stack(parts))
        paths[name] = str(path.resolve())
    return paths


def convert(spec: LiteRTOptions, ctx: BuildContext, work: Path, output: Path) -> dict:
    """model.tflite from the source into `output`; {tensorflow, loaded, warnings, seconds, calibration_samples,
    format}. The child's output goes to work/tflite_converter.log."""
    from convertctl import processes
    from convertctl.frontends.child import exit_description

    fmt = _format(ctx.source_path)
    calib = _calibration(ctx, work) if spec.precision == "int8" else {}
    request = work / "tflite.request.json"
    request.write_text(json.dumps({"format": fmt, "model": str(ctx.source_path), "precision": spec.precision,
                                   "int8_io": spec.int8_io, "calibration": calib, "output": str(output.resolve())}))
    result, error, log = work / "tflite.result.json", work / "tflite.error.json", work / "tflite_converter.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_USE_LEGACY_KERAS", None)  # the worker decides from the file, as the tensorflow front end does
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = processes.run([sys.executable, "-m", WORKER, str(request.resolve())],
                                 timeout=spec.converter_timeout_s, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=work)
        except subprocess.TimeoutExpired:
            raise ConvertctlError(f"TFLiteConverter did not finish within converter_timeout_s "
                                  f"({spec.converter_timeout_s} s) and was stopped",
                                  hint=f"raise converter_timeout_s; full log: {log}") from None
    seconds = round(time.perf_counter() - t0, 3)
    if error.exists():
        err = json.loads(error.read_text())
        detail = next((d for d in err.get("detail", []) if "error:" in d), "")  # MLIR's own reason, if any
        raise ConvertctlError(f"TFLiteConverter cannot convert the {fmt} source: {err['message']}"
                              + (f" ({detail})" if detail else ""), hint=f"full log: {log}")
    if proc.returncode != 0 or not result.exists() or not output.exists():
        raise ConvertctlError(f"the TFLiteConverter process {exit_description(proc.returncode)} without a result",
                              hint=f"full log: {log}")
    found = json.loads(result.read_text())
    samples = int(np.load(next(iter(calib.values()))).shape[0]) if calib else None
    return {**found, "seconds": seconds, "format": fmt, "calibration_samples": samples}


SOURCE_NAME = {"saved_model": "source", "h5": "source.h5", "keras": "source.keras"}  # Keras 3 wants the suffix


def command(spec: LiteRTOptions, fmt: str, ran: dict) -> str:
    """A Python snippet that reproduces model.tflite with tensorflow (kit.json), in a folder holding the source as
    SOURCE_NAME[fmt] (and for int8 the calibration samples as calibration/<input>.npy, sample i being array[i])."""
    legacy = ran.get("loaded", "").startswith("tf-keras")
    name = SOURCE_NAME[fmt]
    if fmt == "saved_model":
        load = f"c = tf.lite.TFLiteConverter.from_saved_model('{name}', signature_keys=['serving_default'])"
    elif legacy:
        load = (f"import tf_keras; c = tf.lite.TFLiteConverter.from_keras_model(tf_keras.models.load_model('{name}', "
                "compile=False))")
    else:
        load = (f"import keras; keras.saving.load_model('{name}', compile=False).export('exported'); "
                "c = tf.lite.TFLiteConverter.from_saved_model('exported')")
    lines = [("TF_USE_LEGACY_KERAS=1 " if legacy else "") + "python - <<'EOF'", "import tensorflow as tf", load]
    if spec.precision == "fp16":
        lines += ["c.optimizations = [tf.lite.Optimize.DEFAULT]", "c.target_spec.supported_types = [tf.float16]"]
    elif spec.precision == "int8":
        names = ran.get("input_order") or []
        # a SavedModel's signature takes its samples by name, a Keras model in its input order
        sample = "dict(zip(names, [a[i] for a in x]))" if ran.get("by_name") else "[a[i] for a in x]"
        lines += ["import numpy as np", f"names = {names!r}",
                  "x = [np.load(f'calibration/{n}.npy') for n in names]",
                  "c.optimizations = [tf.lite.Optimize.DEFAULT]",
                  f"c.representative_dataset = lambda: ({sample} for i in range(len(x[0])))",
                  "c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]"]
        if spec.int8_io == "int8":
            lines += ["c.inference_input_type = c.inference_output_type = tf.int8"]
    lines += ["open('model.tflite', 'wb').write(c.convert())", "EOF"]
    return "\n".join(lines)
