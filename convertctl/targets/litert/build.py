"""The litert build: the ONNX -> onnx2tf (converter.py, its own environment) -> model.tflite of the precision, or
for a TensorFlow source the source itself -> TFLiteConverter (tflite.py); described against the ONNX
(signature.json), with the command that reproduces it (kit.json), and compared with it tensor by tensor (layers.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from convertctl.errors import ConvertctlError, UsageError
from convertctl.targets.base import BuildContext, BuiltArtifact
from convertctl.targets.litert import converter, tflite
from convertctl.targets.litert.options import LiteRTOptions
from convertctl.targets.litert.prepare_onnx2tf import dynamic, fix_shapes, tf_safe_names, write_sample_images
from convertctl.targets.litert.signature import channels_last, describe, to_tflite

# what onnx2tf writes for each precision (<stem>_<suffix>.tflite); the int8 one depends on int8_io
_OUTPUTS = {"fp32": "float32", "fp16": "float16", ("int8", "float32"): "integer_quant",
            ("int8", "int8"): "full_integer_quant"}


def _inputs(onnx_path: Path, ctx: BuildContext) -> list[dict]:
    """Every graph input: name, dtype, shape (dynamic dims as None: a dim_param, no value, or a dim_value <= 0, as
    Paddle2ONNX writes a dynamic batch) and the static shape it gets: the size the recipe's input shape gives it (a
    literal int), else batch 1, else the recipe's opt of the dim it names (dims), else 1."""
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
            wanted = spec.shape[axis] if spec is not None and axis < len(spec.shape) else None
            if not dynamic(d):
                shape.append(d.dim_value)
                static.append(d.dim_value)
                continue
            shape.append(None)
            if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted > 0:
                static.append(wanted)  # the recipe fixes this size
            elif axis == batch_axis:
                static.append(1)
            else:
                name = wanted if isinstance(wanted, str) else d.dim_param
                static.append(ctx.dims[name][1] if name in ctx.dims else 1)
        found.append({"name": value.name, "elem_type": value.type.tensor_type.elem_type, "shape": shape,
                      "static": static, "batch_axis": batch_axis})
    return found


def _kept(spec: LiteRTOptions, inputs: list[dict]) -> list[str]:
    """The inputs onnx2tf is told to keep as they are (-kat): all of them for input_layout onnx; else the ones it
    would transpose although they are not images (3-D sequences NCW -> NWC would surprise a caller)."""
    return [i["name"] for i in inputs if spec.input_layout == "onnx" or len(i["shape"]) not in (4, 5)]


def _argv(spec: LiteRTOptions, inputs: list[dict], calib: dict[str, str]) -> list[str]:
    argv = ["-i", "model.onnx", "-o", "saved_model", "-n"]
    keep = _kept(spec, inputs)
    if keep:
        argv += ["-kat", *keep]
    if spec.precision == "int8":
        argv += ["-oiqt", "-qt", "per-channel"]
        for name, path in calib.items():  # the samples are already preprocessed: mean 0, std 1
            argv += ["-cind", name, path, "[0.0]", "[1.0]"]
    return argv


def _prepare_copy(onnx_path: Path, inputs: list[dict], fixed: bool) -> dict[str, str]:
    """The copy onnx2tf converts, changed in place: node names TensorFlow refuses as scope names renamed (returned,
    new -> old), and with `fixed` (static_shapes) its dynamic input dims fixed. Not onnx2tf's -ois: with it, PP-OCRv4
    det kept a dynamic input in the .tflite and a ConvTranspose output size from another shape (the interpreter
    refused it: "computed_input_height != SizeOfDimension"); with the ONNX itself static it converts and matches
    (measured). Output and intermediate shapes are cleared for onnx2tf's own inference to fill in. The code is
    prepare_onnx2tf's, which the artifact ships so that its kit does the same."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    renamed = tf_safe_names(model)
    if fixed:
        fix_shapes(model, {i["name"]: i["static"] for i in inputs})
    if renamed or fixed:
        onnx.save(model, str(onnx_path))  # external data, if any, stays in the files copy_model wrote beside it
    return renamed


def _calibration(ctx: BuildContext, spec: LiteRTOptions, inputs: list[dict], work: Path) -> dict[str, str]:
    """The calibration samples as onnx2tf's -cind takes them: one .npy per input, samples along axis 0, in the
    .tflite's layout (channels-last where onnx2tf transposes the input), float32. onnx2tf cuts every input's array
    along axis 0 (batch 1 at a time) and casts it to float32, so an input it cannot take that way is refused,
    named, before the conversion: a scalar, a non-float input, one whose sample is not of size 1 on axis 0 (a
    batch axis other than 0, such as a recurrent state [2, batch, 128])."""
    from onnx import helper

    if ctx is None or ctx.calibration is None:
        raise UsageError("a litert int8 target needs calibration data (a `calibration` section, or --calib)")
    keep = set(_kept(spec, inputs))
    perms = {i["name"]: channels_last(len(i["shape"])) if i["name"] not in keep else None for i in inputs}
    problems = []
    for item in inputs:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(item["elem_type"]))
        if not item["shape"]:
            problems.append(f"{item['name']!r} is a scalar (-cind takes samples stacked along axis 0 of a tensor)")
        elif dtype.kind != "f":
            problems.append(f"{item['name']!r} is {dtype.name} (-cind feeds every calibration input as float32)")
        elif item["batch_axis"] not in (0, None):
            problems.append(f"{item['name']!r} is batched on axis {item['batch_axis']} (-cind cuts the samples "
                            "along axis 0)")
    per_input: dict[str, list[np.ndarray]] = {i["name"]: [] for i in inputs}
    if not problems:
        for feeds in ctx.calibration():
            for name, parts in per_input.items():
                x = np.asarray(feeds[name])
                parts.append(np.transpose(x, perms[name]) if perms[name] else x)
        for name, parts in per_input.items():
            shape = parts[0].shape if parts else ()
            if parts and shape[0] != 1:  # an unbatched input (batch_axis null) not of size 1 on axis 0
                problems.append(f"{name!r} takes a {list(shape)} tensor per sample in the .tflite's layout (-cind "
                                "cuts the samples along axis 0, one of size 1 at a time)")
    if problems:
        raise ConvertctlError(
            "litert int8 (onnx2tf): onnx2tf's calibration data (-cind) cannot express the input"
            + ("s: " if len(problems) > 1 else ": ") + "; ".join(problems),
            hint="onnx2tf's int8 takes models whose inputs are all float tensors batched on axis 0; litert fp32 and "
                 "fp16 need no calibration")
    (work / "calibration").mkdir()
    paths = {}
    for item in inputs:
        data = np.concatenate(per_input[item["name"]], axis=0).astype(np.float32)
        rel = f"calibration/{item['name'].replace('/', '_')}.npy"
        np.save(work / rel, data)
        paths[item["name"]] = rel
    return paths


# onnx2tf's sample images: for a model whose inputs are all static 4-D images it loads this file from its working
# folder for its test inference, and downloads it from GitHub when the file is not there (common_functions.py
# download_test_image_data). convertctl downloads nothing at run time: the file is written first, from a seeded
# generator (uniform in [0, 1), what the downloaded images are scaled to): prepare_onnx2tf.write_sample_images.
_no_download = write_sample_images


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
    ctx = ctx or BuildContext()
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = tflite.choose(spec, ctx)
    if chosen in ("tflite_converter", "litert_torch"):
        problem = tflite.usage_problem(spec, ctx)  # built without a run (the build stage asked before)
        if problem or (chosen == "tflite_converter" and ctx.source_path is None):
            raise UsageError(problem or "converter: tflite_converter needs the run's TensorFlow source")
        build_from_source = _build_tflite_converter if chosen == "tflite_converter" else _build_litert_torch
        return build_from_source(onnx_path, spec, out_dir, ctx)
    return _build_onnx2tf(onnx_path, spec, out_dir, ctx)


def _fresh(work: Path) -> Path:
    if work.exists():  # left by an earlier build of this artifact, in convertctl's own output folder
        shutil.rmtree(work)
    work.mkdir()
    return work


def _build_onnx2tf(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext) -> BuiltArtifact:
    from convertctl.model import copy_model

    work = _fresh(out_dir / "onnx2tf")
    copy_model(onnx_path, work)
    _no_download(work)
    inputs = _inputs(work / "model.onnx", ctx)
    fixed = spec.static_shapes and any(None in i["shape"] for i in inputs)
    renamed = _prepare_copy(work / "model.onnx", inputs, fixed)
    calib = _calibration(ctx, spec, inputs, work) if spec.precision == "int8" else {}
    argv = _argv(spec, inputs, calib)
    try:
        ran = converter.run(argv, work, str((work / "model.onnx").resolve()), spec.converter_timeout_s)
    except ConvertctlError as exc:  # the node named as the ONNX names it
        message = exc.message
        for new, old in renamed.items():
            message = message.replace(f"'{new}'", f"'{old}'")
        raise ConvertctlError(message, hint=exc.hint) from None
    suffix = _OUTPUTS[spec.precision] if spec.precision != "int8" else _OUTPUTS[("int8", spec.int8_io)]
    made = work / "saved_model" / f"model_{suffix}.tflite"
    if not made.exists():  # onnx2tf logs a failed quantization as a warning and goes on
        raise ConvertctlError(f"onnx2tf wrote no model_{suffix}.tflite" +
                              (f": {converter.last_error(work / 'onnx2tf.log')}" if spec.precision != "int8" else
                               ": TFLite's full-integer quantization failed (see the log's 'INT8 Quantization' "
                               "warning)"), hint=f"full log: {work / 'onnx2tf.log'}")
    shutil.copyfile(made, out_dir / "model.tflite")
    probe = _probe(inputs, spec)
    sig = _describe(out_dir, work / "model.onnx", probe, spec, channels_last_inputs=True)
    settings = {
        "converter": f"onnx2tf {ran['onnx2tf']} (tensorflow {ran['tensorflow']})",
        "converter_seconds": ran["seconds"],
        "precision": _precision(spec),
        "layout": spec.input_layout, "static_shapes": spec.static_shapes,
        **({"fixed_input_shapes": {i["name"]: i["static"] for i in inputs}} if fixed else {}),
        "num_threads": spec.num_threads,
        **({"calibration_samples": int(np.load(work / next(iter(calib.values()))).shape[0])} if calib else {}),
    }
    held = ("the ONNX with its dynamic input dims fixed to " + ", ".join(
        f"{i['name']}:{'x'.join(map(str, i['static']))}" for i in inputs) + ", as model.onnx") if fixed else \
        "the ONNX as model.onnx"
    if renamed:
        held += f" (its {len(renamed)} node names TensorFlow refuses as scope names, such as {next(iter(renamed.values()))!r}, renamed)"
    kit = {"prepare": f"python {_PREPARE} && cd onnx2tf_kit",
           "command": converter.command(argv),
           "run_in": f"a folder holding {held}, and onnx2tf's sample-image file (else onnx2tf downloads it)"
           + (", and the calibration .npy files under calibration/" if calib else "")
           + f": what `{_PREPARE}` writes to onnx2tf_kit/ beside it, from the run's output folder's model.onnx"
           + (" and samples.npz" if calib else "") + " (--model, --samples, --out to take others)",
           **({"not_reproduced": f"the {settings['calibration_samples']} calibration samples the build used are not "
               "in the output folder: prepare_onnx2tf.py writes calibration/ from samples.npz (the run's verification "
               "samples) instead, so the int8 model it gives may differ from model.tflite in its quantization "
               "scales; for the same model, write the same samples there (per input, along axis 0, float32, "
               "channels-last for an input onnx2tf transposes)"} if calib else {}),
           "environment": f"pip install -r convertctl/targets/litert/env.txt (onnx2tf {ran['onnx2tf']})",
           "writes": f"saved_model/model_{suffix}.tflite, shipped as model.tflite",
           "python_origin": ran["python_origin"]}
    keep = set(_kept(spec, inputs))
    _write_prepare(out_dir / _PREPARE, onnx_path, {i["name"]: i["static"] for i in inputs} if fixed else {},
                   {i["name"]: {"file": calib[i["name"]], "batch_axis": i["batch_axis"],
                                "perm": None if i["name"] in keep else channels_last(len(i["shape"]))}
                    for i in inputs} if calib else {})
    shutil.copyfile(work / "onnx2tf.log", out_dir / "onnx2tf.log")
    return _finish(onnx_path, spec, out_dir, ctx, sig, settings, kit, probe, work,
                   extra=[Path("onnx2tf.log"), Path(_PREPARE)])


_PREPARE = "prepare_onnx2tf.py"


def _write_prepare(path: Path, onnx_path: Path, static: dict, calibration: dict) -> None:
    """prepare_onnx2tf.py (this package's file) with the artifact's SETTINGS: what it fixes, what it calibrates
    with, the sha256 of the ONNX converted."""
    import hashlib

    from convertctl.targets.litert import prepare_onnx2tf

    marker = "SETTINGS: dict = {}"
    text = Path(prepare_onnx2tf.__file__).read_text()
    assert marker in text
    with open(onnx_path, "rb") as f:
        sha = hashlib.file_digest(f, "sha256").hexdigest()
    settings = json.dumps({"onnx_sha256": sha, "static": static, "calibration": calibration}, indent=4)
    path.write_text(text.replace(marker, f"SETTINGS: dict = {settings}", 1))


def _build_tflite_converter(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext) -> BuiltArtifact:
    """TensorFlow's TFLiteConverter on the TensorFlow source itself (tflite.py). The run's ONNX (tf2onnx's, with the
    source's names and layout) is what the signature is described against and the per-layer reference."""
    work = _fresh(out_dir / "tflite_converter")
    ran = tflite.convert(spec, ctx, work, out_dir / "model.tflite")
    inputs = _inputs(onnx_path, ctx)
    probe = _probe(inputs, spec)
    sig = _describe(out_dir, onnx_path, probe, spec, channels_last_inputs=False)
    settings = {
        "converter": f"TFLiteConverter (tensorflow {ran['tensorflow']})",
        "converter_seconds": ran["seconds"],
        "source": f"{ran['format']}, loaded with {ran['loaded']}",
        "precision": _precision(spec),
        # the source's own layout and shapes: a TensorFlow model is NHWC already, its dynamic dims stay dynamic
        "layout": "source", "static_shapes": False,
        "num_threads": spec.num_threads,
        **({"calibration_samples": ran["calibration_samples"]} if ran["calibration_samples"] else {}),
        **({"converter_warnings": ran["warnings"]} if ran["warnings"] else {}),
    }
    kit = {"command": tflite.command(spec, ran["format"], ran),
           "run_in": f"a folder holding the {ran['format']} source as `{tflite.SOURCE_NAME[ran['format']]}`"
           + (" and the calibration samples as calibration/<input>.npy (sample i is array[i], one run's input)"
              if spec.precision == "int8" else ""),
           **({"not_reproduced": "the calibration samples the build used are not in the output folder"}
              if spec.precision == "int8" else {}),
           "environment": f"tensorflow {ran['tensorflow']} (pip install 'convertctl[tf]')",
           "writes": "model.tflite"}
    shutil.copyfile(work / "tflite_converter.log", out_dir / "tflite_converter.log")
    return _finish(onnx_path, spec, out_dir, ctx, sig, settings, kit, probe, work,
                   extra=[Path("tflite_converter.log")])


def _build_litert_torch(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext) -> BuiltArtifact:
    """Google's litert-torch on the PyTorch module itself (torch_convert.py, its own environment), at the static
    shape the onnx2tf path converts at (batch 1, the dims' opt). Inputs keep the module's layout and the ONNX's
    names; the run's ONNX is what the signature is described against and the per-layer reference."""
    import onnx

    from convertctl.targets.litert import torch_convert

    work = _fresh(out_dir / "litert_torch")
    inputs = _inputs(onnx_path, ctx)
    probe = _probe(inputs, spec.model_copy(update={"static_shapes": True}))
    calibration = None
    if spec.precision == "int8":
        if ctx.calibration is None:
            raise UsageError("a litert int8 target needs calibration data (a `calibration` section, or --calib)")
        calibration = [{i["name"]: np.asarray(feeds[i["name"]]) for i in inputs} for feeds in ctx.calibration()]
    source = {"kind": "state_dict" if ctx.source_path is not None else "factory",
              "path": str(ctx.source_path) if ctx.source_path is not None else None,
              "factory": ctx.source_factory, "factory_args": ctx.source_factory_args}
    outputs = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    ran = torch_convert.convert(source, probe, spec.precision, work, spec.converter_timeout_s, calibration,
                                output_names=outputs, int8_io=spec.int8_io)
    shutil.copyfile(work / "model.tflite", out_dir / "model.tflite")
    sig = _describe(out_dir, onnx_path, probe, spec, channels_last_inputs=False)
    settings = {
        "converter": f"litert-torch {ran['litert_torch']} (torch {ran['torch']}"
                     + (f", ai-edge-quantizer {ran['ai_edge_quantizer']})" if spec.precision != "fp32" else ")"),
        "converter_seconds": ran["seconds"],
        "precision": _precision(spec),
        # the module's own layout, at one static shape: what torch.export traced
        "layout": "source", "static_shapes": True, "fixed_input_shapes": ran["input_shapes"],
        "num_threads": spec.num_threads,
        **({"calibration_samples": ran["calibration_samples"]} if ran.get("calibration_samples") else {}),
    }
    (out_dir / "convert_litert_torch.py").write_text(ran["snippet"] + "\n")
    samples = f"{torch_convert.LOG_NAME}.samples.npz"  # the one input it traced with: small, shipped
    shutil.copyfile(work / samples, out_dir / samples)
    kit = {"command": "python convert_litert_torch.py",
           "run_in": f"this folder ({samples}: the input it traced with)"
           + (f", with the run's {ran['calibration_samples']} calibration samples as litert_torch.calibration.npz "
              "(per input, stacked along axis 0; not shipped)" if spec.precision == "int8" else ""),
           "environment": "pip install torch==2.13.0 && pip install -r convertctl/targets/litert/torch-env.txt "
                          f"(litert-torch {ran['litert_torch']})",
           "writes": "model.tflite", "python_origin": ran["python_origin"]}
    shutil.copyfile(work / f"{torch_convert.LOG_NAME}.log", out_dir / f"{torch_convert.LOG_NAME}.log")
    return _finish(onnx_path, spec, out_dir, ctx, sig, settings, kit, probe, work,
                   extra=[Path("convert_litert_torch.py"), Path(samples), Path(f"{torch_convert.LOG_NAME}.log")])


def _precision(spec: LiteRTOptions) -> str:
    return {"fp32": "float32", "fp16": "float16 weights",
            "int8": f"int8 per-channel, {spec.int8_io} input/output"}[spec.precision]


def _describe(out_dir: Path, onnx_path: Path, probe: dict, spec: LiteRTOptions, channels_last_inputs: bool) -> dict:
    try:
        return describe(out_dir / "model.tflite", onnx_path, probe, spec.num_threads, channels_last_inputs)
    except ValueError as exc:
        raise ConvertctlError(_load_error(exc)) from None


def _finish(onnx_path: Path, spec: LiteRTOptions, out_dir: Path, ctx: BuildContext, sig: dict, settings: dict,
            kit: dict, probe: dict, work: Path, extra: list[Path]) -> BuiltArtifact:
    """signature.json, kit.json, the per-layer comparison; the converter's working folder removed. The artifact's
    files: those three and `extra` (the converter's log, the kit's scripts), all in out_dir."""
    # the conversion's time stays out of the artifact's files: same recipe and inputs, same bytes
    signature = {**sig, **{k: v for k, v in settings.items() if k != "converter_seconds"}}
    # each input's batch axis in the ONNX layout (the run's input specs; 0 when built without a run): where the
    # runner splits a batch, e.g. a recurrent state [layers, batch, hidden]
    axes = {i.name: i.batch_axis for i in ctx.inputs}
    signature["inputs"] = [{**i, "batch_axis": axes.get(i["onnx"], 0)} for i in signature["inputs"]]
    (out_dir / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")
    (out_dir / "kit.json").write_text(json.dumps(kit, indent=2) + "\n")
    shutil.rmtree(work)  # the SavedModel, the other precisions' .tflite, the copies: not the artifact
    if spec.per_layer:
        settings["per_layer"] = _per_layer(out_dir, onnx_path, spec, ctx, sig, probe)
    return BuiltArtifact(files=[Path("model.tflite"), Path("signature.json"), Path("kit.json"), *extra],
                         settings={**settings, "command": kit["command"]})


def _per_layer(out_dir: Path, onnx_path: Path, spec: LiteRTOptions, ctx: BuildContext, sig: dict,
               probe: dict) -> dict | str:
    """layers.compare on the first calibration sample (else the probe), summarised for the manifest. A diagnosis:
    its failure never fails the build, it says why it is missing."""
    from convertctl.targets.litert import layers

    if onnx_path.stat().st_size > 1_500_000_000:
        return "not run: the ONNX is too large to load with every node output (protobuf 2 GB)"
    feeds, sample = probe, "one random probe input (no calibration samples)"
    if ctx.calibration is not None:
        feeds = {k: np.asarray(v) for k, v in next(iter(ctx.calibration())).items()}
        sample = "the first calibration sample"
    try:
        tflite_feeds = {i["name"]: to_tflite(np.asarray(feeds[i["onnx"]]), i) for i in sig["inputs"]}
        report = layers.compare(out_dir / "model.tflite", onnx_path, feeds, tflite_feeds, spec.precision)
    except Exception as exc:
        return f"not run: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return layers.summary(report, sample)


def _load_error(exc: Exception) -> str:
    """The interpreter's refusal in one line; TensorFlow (Flex) ops named: the ai-edge-litert interpreter has none."""
    import re

    text = str(exc)
    flex = sorted(set(re.findall(r"Flex\w+", text)))
    if flex or "Select TensorFlow op" in text:
        return ("the .tflite needs TensorFlow (Flex) ops, which the ai-edge-litert interpreter does not include"
                + (f": {', '.join(flex)}" if flex else ""))
    return "the LiteRT interpreter cannot load the converted model: " + " ".join(text.split())[:300]
