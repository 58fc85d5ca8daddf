"""The inputs a run feeds and the size of every dynamic dim, settled before any work.

A dynamic dim is never silently 1. Its size comes, in this order, from
  1. the recipe's `dims` (or `--dim` on the command line),
  2. the data: the calibration data (its images' crop, its tensors' shape) or `samples.images` (the crop the
     recipe sets, else the images' own size),
  3. the model's own metadata (ONNX metadata_props: a key named like the dim, or `imgsz` / `image_size` /
     `input_size` for the height and width of an image input),
and a *batch dim* (at an input's batch axis: its size is the number of samples per run) may keep the default
range 1..8. Any other dim left without a size stops the run before any work (exit 2), naming each dim and how to
set it. A `dims` entry that names no dim of the inputs is refused the same way: it would be ignored.
"""

from __future__ import annotations

import ast
import re

from convertctl.data.dims import batch_dims, dim_name
from convertctl.errors import UsageError

IMAGE_SIZE_KEYS = ("imgsz", "img_size", "image_size", "input_size")


def inputs_from_model(tensors) -> tuple[list[dict], list[str]]:
    """Input declarations ({name, shape, dtype[, batch_axis]}) from a model's inputs (objects with name, shape,
    dtype; a shape holds ints, dim names, "?" or -1 for unnamed dims), with convertctl's dim names
    (data/dims.py), and notes on what was inferred."""
    from convertctl.recipe import DTYPES

    specs = []
    for t in tensors:
        shape = [dim_name(t.name, axis, d) for axis, d in enumerate(t.shape)]
        specs.append({"name": t.name, "shape": shape, "dtype": t.dtype if t.dtype in DTYPES else "float32"})
    return specs, infer_batch_axes(specs)


def infer_batch_axes(specs: list[dict]) -> list[str]:
    """Batch axes of inputs read from a model: a scalar is not batched; an input whose first dim is fixed but
    that has, at exactly one other axis, the dynamic first dim of another input (a recurrent state [2, batch, 128]
    beside input [batch, N]) is batched along that axis. Everything else along axis 0."""
    notes = []
    firsts = {s["shape"][0] for s in specs if s["shape"] and isinstance(s["shape"][0], str)}
    for s in specs:
        shape = s["shape"]
        if not shape:
            s["batch_axis"] = None
            continue
        if isinstance(shape[0], int):
            axes = [k for k, d in enumerate(shape) if k > 0 and isinstance(d, str) and d in firsts]
            if len(axes) == 1:
                s["batch_axis"] = axes[0]
                notes.append(f"input {s['name']!r} {shape} is batched along axis {axes[0]} (its dim "
                             f"{shape[axes[0]]!r} is another input's first dim); set inputs[].batch_axis to change it")
    return notes


def dims_problem(inputs, dims) -> str | None:
    from convertctl.recipe import unknown_dims_problem

    return unknown_dims_problem(inputs, dims)


def resolve_dims(recipe, inputs, metadata: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """Give every dynamic dim of `inputs` a size (the module docstring's order): returns the recipe's `dims` with
    the sizes found in the data or the metadata added as fixed ranges (a new dict: the recipe is not changed) and
    notes saying where each came from. Raises UsageError for a `dims` entry no input has, or for dims left
    without a size."""
    from convertctl.recipe import DimRange

    problem = dims_problem(inputs, recipe.dims)
    if problem:
        raise UsageError(problem, hint="name dims as `convertctl check MODEL -t onnxruntime` lists them, or as the "
                                       "recipe's inputs[].shape does (docs/recipe.md#dims)")
    dims = dict(recipe.dims)
    for spec in inputs:
        for d in spec.dynamic_dims:
            dims.setdefault(d, DimRange())
    explicit = {name for name, r in dims.items() if r.model_fields_set}
    batch = batch_dims(inputs)
    uses = _uses(inputs)
    need = [d for d in uses if d not in explicit and d not in batch]
    if not need:
        return dims, []
    found = {**metadata_sizes(metadata or {}, inputs), **_data_sizes(recipe, inputs)}  # the data comes first
    notes, missing = [], []
    by_origin: dict[str, list[str]] = {}
    for d in need:
        if d in found:
            size, origin = found[d]
            dims[d] = DimRange(min=size, opt=size, max=size)
            by_origin.setdefault(origin, []).append(f"{d} = {size}")
        else:
            missing.append(d)
    for origin, sizes in by_origin.items():
        notes.append(f"dims: {', '.join(sizes)} from {origin}; set dims (or --dim) to verify at another size or "
                     "to give a range")
    if missing:
        raise UsageError(missing_message(missing, uses), hint=MISSING_HINT)
    return dims, notes


MISSING_HINT = ("a batch dim (at an input's batch axis) may stay unset (1..8); every other dynamic dim (height, "
                "width, sequence length) needs the size the model is used at, or real data (samples.images, "
                "calibration.data) whose size gives it; see docs/recipe.md#dims")


def missing_message(missing: list[str], uses: dict[str, tuple[str, int]]) -> str:
    where = ", ".join(f"{d} (input {uses[d][0]!r} axis {uses[d][1]})" for d in missing)
    flags = " ".join(f"--dim {d}=N" for d in missing)
    yaml = ", ".join(f"{d}: N" for d in missing)
    return (f"dynamic dim{'s' if len(missing) > 1 else ''} without a size to verify at: {where}; set "
            f"{'each' if len(missing) > 1 else 'it'} with {flags} or in the recipe: dims: {{{yaml}}}")


def _uses(inputs) -> dict[str, tuple[str, int]]:
    """Every symbolic dim -> its first (input, axis), in input order."""
    out: dict[str, tuple[str, int]] = {}
    for spec in inputs:
        for axis, d in enumerate(spec.shape):
            if isinstance(d, str):
                out.setdefault(d, (spec.name, axis))
    return out


def _image_dims(spec, pre, hw: tuple[int, int]) -> dict[str, int]:
    """The symbolic dims of an image input that images of height x width (and 1 or 3 channels) give."""
    from convertctl.data.samples import image_layout

    layout = image_layout(spec, pre)
    if layout is None:
        return {}
    c, (h, w) = layout
    out = {}
    for axis, size in ((h, hw[0]), (w, hw[1]), (c, 3)):
        d = spec.shape[axis]
        if isinstance(d, str):
            out.setdefault(d, size)
    return out


def _data_sizes(recipe, inputs) -> dict[str, tuple[int, str]]:
    """Sizes the data gives: the calibration data for its input (it is also the verification data when it holds
    samples out), `samples.images` for the image input."""
    from pathlib import Path

    out: dict[str, tuple[int, str]] = {}
    names = [spec.name for spec in inputs]
    cal = recipe.calibration
    if cal is not None and cal.data is not None and Path(cal.data).exists():
        spec = next((s for s in inputs if s.name == (cal.input or names[0])), None)
        if spec is not None:
            for d, (size, origin) in _calibration_sizes(cal, spec, recipe.samples.preprocess).items():
                out.setdefault(d, (size, origin))
    images = recipe.samples.images
    if images is not None and Path(images).is_dir():
        spec = next((s for s in inputs if s.name == (recipe.samples.input or names[0])), None)
        pre = recipe.samples.preprocess
        if spec is not None and any(isinstance(d, str) and d not in out for d in spec.shape):
            if {"resize", "crop"} & pre.model_fields_set:
                hw, origin = (pre.crop, pre.crop), f"samples.preprocess.crop {pre.crop}"
            else:
                from convertctl.data.images import common_size, list_images

                hw, same, looked = common_size(list_images(Path(images)))
                origin = (f"the size of the images in {images} ({hw[0]}x{hw[1]}"
                          f"{'' if same == looked else f', {same} of {looked}; the others are resized to cover it and centre-cropped'})")
            for d, size in _image_dims(spec, pre, hw).items():
                out.setdefault(d, (size, origin))
    return out


def _calibration_sizes(cal, spec, samples_pre) -> dict[str, tuple[int, str]]:
    from pathlib import Path

    from convertctl.quantize.calib_data import discover_files, read_header

    files, kind = discover_files(Path(cal.data))
    if kind == "image":
        pre = cal.preprocess or samples_pre
        origin = f"calibration.preprocess.crop {pre.crop} (the calibration images are cropped to it)"
        return {d: (size, origin) for d, size in _image_dims(spec, pre, (pre.crop, pre.crop)).items()}
    f = files[0]
    read_header(f, spec.name)
    stored = list(f.shape)
    plain = [k for k in range(len(spec.shape)) if k != spec.batch_axis]
    if len(stored) == len(spec.shape) and spec.batch_axis is not None:
        stored = [n for k, n in enumerate(stored) if k != 0]  # a batch of samples per file (axis 0)
    elif len(stored) != len(plain):
        return {}  # calib_data says what is wrong with the file
    origin = f"the shape of the calibration tensors ({f.path.name}: {list(f.shape)})"
    out = {}
    for k, size in zip(plain, stored, strict=True):
        d = spec.shape[k]
        if isinstance(d, str) and size >= 1:
            out.setdefault(d, (int(size), origin))
    return out


def metadata_sizes(metadata: dict[str, str], inputs) -> dict[str, tuple[int, str]]:
    """Sizes the model's own metadata states: `<dim name>: N`, or an image size (`imgsz: 640`, `[480, 640]`)."""
    out: dict[str, tuple[int, str]] = {}
    names = {d for spec in inputs for d in spec.dynamic_dims}
    for key, text in metadata.items():
        value = _literal(text)
        if key in names and isinstance(value, int) and value >= 1:
            out[key] = (value, f"the model's metadata ({key}: {text.strip()})")
    for key in IMAGE_SIZE_KEYS:
        value = _literal(metadata.get(key, ""))
        if isinstance(value, int):
            value = [value, value]
        if not (isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int) and v >= 1
                                                                            for v in value)):
            continue
        for spec in inputs:
            if len(spec.shape) != 4:
                continue
            if spec.shape[1] in (1, 3):
                axes = (2, 3)  # NCHW
            elif spec.shape[3] in (1, 3):
                axes = (1, 2)  # NHWC
            else:
                continue
            for axis, size in zip(axes, value, strict=True):
                d = spec.shape[axis]
                if isinstance(d, str):
                    out.setdefault(d, (size, f"the model's metadata ({key}: {metadata[key].strip()})"))
        break
    return out


def _literal(text: str):
    text = (text or "").strip()
    if not text or len(text) > 64 or not re.fullmatch(r"[\d\s,\[\]()]+", text):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
