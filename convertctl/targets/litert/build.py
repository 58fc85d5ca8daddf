"""The litert build: the ONNX -> onnx2tf (converter.py, its own environment) -> model.tflite of the precision,
described against the ONNX (signature.json), with the command that reproduces it (kit.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, UsageError
from convertctl.targets.base import BuildContext, BuiltArtifact
from convertctl.targets.litert import converter
from convertctl.targets.litert.options import LiteRTOptions
from convertctl.targets.litert.signature import channels_last, describe

# what onnx2tf writes for each precision (<stem>_<suffix>.tflite); the int8 one depends on int8_io
_OUTPUTS = {"fp32": "float32", "fp16": "float16", ("int8", "float32"): "integer_quant",
            ("int8", "int8"): "full_integer_quant"}


def _inputs(onnx_path: Path, ctx: BuildContext) -> list[dict]:
    """Every graph input: name, dtype, shape (symbolic dims as None) and the static shape it gets: batch 1, the
    other dynamic dims the recipe's opt (dims), else 1."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    specs = {s.name: s for s in ctx.inputs}
    found = []
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        spec = specs.get(value.name)
        batch_axis = spec.batch_axis if spec is not None else 0
        shape, static = [], []
        for axis, d in enumerate(dims):
            shape.append(d.dim_value if d.HasField("dim_value") else None)
            name = spec.shape[axis] if spec is not None and axis < len(spec.shape) else d.dim_param
            if d.HasField("dim_value"):
                static.append(d.dim_value)
            elif axis == batch_axis:
                static.append(1)
            else:
                static.append(ctx.dims[name][1] if isinstance(name, str) and name in ctx.dims else 1)
        found.append({"name": value.name, "elem_type": value.type.tensor_type.elem_type, "shape": shape,
                      "static": static})
    return found


def _argv(spec: LiteRTOptions, inputs: list[dict], calib: dict[str, str]) -> list[str]:
    argv = ["-i", "model.onnx", "-o", "saved_model", "-n"]
    # inputs kept as they are: all of them for input_layout onnx; else the ones onnx2tf would transpose although
    # they are not images (3-D sequences NCW -> NWC would surprise a caller)
    keep = [i["name"] for i in inputs if spec.input_layout == "onnx" or len(i["shape"]) not in (4, 5)]
    if keep:
        argv += ["-kat", *keep]
    if spec.precision == "int8":
        argv += ["-oiqt", "-qt", "per-channel"]
        for name, path in calib.items():  # the samples are already preprocessed: mean 0, std 1
            argv += ["-cind", name, path, "[0.0]", "[1.0]"]
    return argv


def _fix_shapes(onnx_path: Path, inputs: list[dict]) -> None:
    """The copy's dynamic input dims fixed in place (static_shapes). Not onnx2tf's -ois: with it, PP-OCRv4 det kept a
    dynamic input in the .tflite and a ConvTranspose output size from another shape (the interpreter refused it:
    "computed_input_height != SizeOfDimension"); with the ONNX itself static it converts and matches (measured).
    Output and intermediate shapes are cleared for onnx2tf's own inference to fill in."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    static = {i["name"]: i["static"] for i in inputs}
    for value in model.graph.input:
        for dim, size in zip(value.type.tensor_type.shape.dim, static.get(value.name, []), strict=False):
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = size
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    del model.graph.value_info[:]
    onnx.save(model, str(onnx_path))  # external data, if any, stays in the files copy_model wrote beside it


def _calibration(ctx: BuildContext, spec: LiteRTOptions, inputs: list[dict], work: Path) -> dict[str, str]:
    """The calibration samples as onnx2tf's -cind takes them: one .npy per input, samples along axis 0, in the
    .tflite's layout (channels-last where onnx2tf transposes the input)."""
    if ctx is None or ctx.calibration is None:
        raise UsageError("a litert int8 target needs calibration data (a `calibration` section, or --calib)")
    per_input: dict[str, list[np.ndarray]] = {i["name"]: [] for i in inputs}
    for feeds in ctx.calibration():
        for name in per_input:
            per_input[name].append(np.asarray(feeds[name]))
    (work / "calibration").mkdir()
    paths = {}
    for item in inputs:
        data = np.concatenate(per_input[item["name"]], axis=0).astype(np.float32)
        if spec.input_layout == "nhwc" and data.ndim in (4, 5):
            data = np.transpose(data, channels_last(data.ndim))
        rel = f"calibration/{item['name'].replace('/', '_')}.npy"
        np.save(work / rel, data)
        paths[item["name"]] = rel
    return paths


# onnx2tf's sample images: for a model whose inputs are all static 4-D images it loads this file from its working
# folder for its test inference, and downloads it from GitHub when the file is not there (common_functions.py
# download_test_image_data). convertctl downloads nothing at run time: the file is written first, from a seeded
# generator (uniform in [0, 1), what the downloaded images are scaled to).
_SAMPLE_IMAGES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _no_download(work: Path) -> None:
    np.save(work / _SAMPLE_IMAGES, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))


def _probe(inputs: list[dict], spec: LiteRTOptions) -> dict[str, np.ndarray]:
    """One input for telling ambiguous layouts apart (signature.py): random floats, zeros for integer inputs."""
    from onnx import helper

    rng = np.random.default_rng(0)
    feeds = {}
    for item in inputs:
        shape = item["static"] if spec.static_shapes else [d if d is not None else s
                                                             for d, s in zip(item["shape"], item["static"], strict=True)]
        dtype = helper.tensor_dtype_to_np_dtype(item["elem_type"])
        feeds[item["name"]] = (rng.uniform(-1, 1, shape).astype(dtype) if np.dtype(dtype).kind == "f"
                               else np.zeros(shape, dtype))
    return feeds


def build(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext | None = None) -> BuiltArtifact:
    from convertctl.model import copy_model

    ctx = ctx or BuildContext()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "onnx2tf"
    if work.exists():  # left by an earlier build of this artifact, in convertctl's own output folder
        shutil.rmtree(work)
    work.mkdir()
    copy_model(onnx_path, work)
    _no_download(work)
    inputs = _inputs(work / "model.onnx", ctx)
    fixed = spec.static_shapes and any(None in i["shape"] for i in inputs)
    if fixed:
        _fix_shapes(work / "model.onnx", inputs)
    calib = _calibration(ctx, spec, inputs, work) if spec.precision == "int8" else {}
    argv = _argv(spec, inputs, calib)
    ran = converter.run(argv, work, str((work / "model.onnx").resolve()), spec.converter_timeout_s)
    suffix = _OUTPUTS[spec.precision] if spec.precision != "int8" else _OUTPUTS[("int8", spec.int8_io)]
    made = work / "saved_model" / f"model_{suffix}.tflite"
    if not made.exists():  # onnx2tf logs a failed quantization as a warning and goes on
        raise ConvertctlError(f"onnx2tf wrote no model_{suffix}.tflite" +
                              (f": {converter.last_error(work / 'onnx2tf.log')}" if spec.precision != "int8" else
                               ": TFLite's full-integer quantization failed (see the log's 'INT8 Quantization' "
                               "warning)"), hint=f"full log: {work / 'onnx2tf.log'}")
    shutil.copyfile(made, out_dir / "model.tflite")
    try:
        sig = describe(out_dir / "model.tflite", work / "model.onnx", _probe(inputs, spec), spec.num_threads)
    except ValueError as exc:
        raise ConvertctlError(_load_error(exc)) from None
    settings = {
        "converter": f"onnx2tf {ran['onnx2tf']} (tensorflow {ran['tensorflow']})",
        "converter_seconds": ran["seconds"],
        "precision": {"fp32": "float32", "fp16": "float16 weights",
                      "int8": f"int8 per-channel, {spec.int8_io} input/output"}[spec.precision],
        "layout": spec.input_layout, "static_shapes": spec.static_shapes,
        **({"fixed_input_shapes": {i["name"]: i["static"] for i in inputs}} if fixed else {}),
        "num_threads": spec.num_threads,
        **({"calibration_samples": int(np.load(work / next(iter(calib.values()))).shape[0])} if calib else {}),
    }
    # the conversion's time stays out of the artifact's files: same recipe and inputs, same bytes
    signature = {**sig, **{k: v for k, v in settings.items() if k != "converter_seconds"}}
    (out_dir / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
    held = ("the ONNX with its dynamic input dims fixed to " + ", ".join(
        f"{i['name']}:{'x'.join(map(str, i['static']))}" for i in inputs) + ", as model.onnx") if fixed else \
        "the ONNX as model.onnx"
    kit = {"command": converter.command(argv), "run_in": f"a folder holding {held}"
           + (" and the calibration .npy files under calibration/" if calib else ""),
           "environment": f"pip install -r convertctl/targets/litert/env.txt (onnx2tf {ran['onnx2tf']})",
           "writes": f"saved_model/model_{suffix}.tflite, shipped as model.tflite",
           "python_origin": ran["python_origin"]}
    (out_dir / "kit.json").write_text(json.dumps(kit, indent=2) + "\n")
    shutil.copyfile(work / "onnx2tf.log", out_dir / "onnx2tf.log")
    shutil.rmtree(work)  # the SavedModel, the other precisions' .tflite, the copies: not the artifact
    return BuiltArtifact(files=[Path("model.tflite"), Path("signature.json"), Path("kit.json")],
                         settings={**settings, "command": kit["command"]})


def _load_error(exc: Exception) -> str:
    """The interpreter's refusal in one line; TensorFlow (Flex) ops named: the ai-edge-litert interpreter has none."""
    import re

    text = str(exc)
    flex = sorted(set(re.findall(r"Flex\w+", text)))
    if flex or "Select TensorFlow op" in text:
        return ("the .tflite needs TensorFlow (Flex) ops, which the ai-edge-litert interpreter does not include"
                + (f": {', '.join(flex)}" if flex else ""))
    return "the LiteRT interpreter cannot load the converted model: " + " ".join(text.split())[:300]
