"""What convertctl calls the dynamic dims of a model's inputs: one convention for `check`, `--dim` and recipes.

A dynamic dim that the model names with an identifier someone chose (`batch`, `seq_len`) keeps that name. One
that is unnamed (ONNX `dim_param` empty, a `-1` or `0` dim value), or named by a converter (`?`,
`p2o.DynamicDimension.3`, tf2onnx's `unk__12`), is called `batch` at axis 0 and `<input>_<axis>` elsewhere
(`x_2`, `x_3` for the height and width of an NCHW input `x`). The Paddle and TensorFlow front ends name the
dims they read from a model's signature the same way. Stdlib only: the check imports this.
"""

from __future__ import annotations

import re

_CONVERTER_NAME = re.compile(r"unk__\d+")


def chosen_name(name: str | None) -> bool:
    """A dim name someone chose: an identifier, and not a converter's numbered placeholder (unk__N)."""
    return bool(name) and name.isidentifier() and not _CONVERTER_NAME.fullmatch(name)


def auto_name(input_name: str, axis: int) -> str:
    """The name of an unnamed dynamic dim: `batch` at axis 0, else `<input>_<axis>` (the input name made an
    identifier: `images/0` -> `images_0_2`)."""
    if axis == 0:
        return "batch"
    base = re.sub(r"\W", "_", input_name) or "input"
    if not base.isidentifier():  # starts with a digit
        base = "_" + base
    return f"{base}_{axis}"


def dim_name(input_name: str, axis: int, dim: int | str | None) -> int | str:
    """What convertctl calls dim `axis` of an input, given the model's dim: a positive int stays a fixed dim; a
    chosen name stays; anything else (None, "", "?", -1, 0, a converter's name) gets auto_name()."""
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return dim
    if isinstance(dim, str) and chosen_name(dim):
        return dim
    return auto_name(input_name, axis)


def onnx_input_dims(value_info) -> list[int | str]:
    """An ONNX graph input's shape in convertctl's names (a ValueInfoProto; no shape at all -> [])."""
    t = value_info.type.tensor_type
    shape: list[int | str] = []
    for axis, d in enumerate(t.shape.dim):
        raw = d.dim_value if d.HasField("dim_value") else d.dim_param
        shape.append(dim_name(value_info.name, axis, raw))
    return shape


def parse_dim_option(text: str, option: str = "--dim") -> tuple[str, tuple[int, int, int]]:
    """`NAME=N` (a fixed value), `NAME=MIN:MAX` (opt = min) or `NAME=MIN:OPT:MAX` -> (name, (min, opt, max))."""
    from convertctl.data.limits import MAX_DIM
    from convertctl.errors import UsageError

    name, _, spec = text.partition("=")
    name = name.strip()
    parts = spec.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not name.isidentifier() or len(values) not in (1, 2, 3):
        raise UsageError(f"{option} {text!r}: expected NAME=VALUE, NAME=MIN:MAX or NAME=MIN:OPT:MAX with NAME a dim "
                         "name such as x_2 or batch, e.g. --dim x_2=640 or --dim batch=1:4:16",
                         hint="`convertctl check MODEL -t onnxruntime` names every dynamic dim of a model")
    if not all(1 <= v <= MAX_DIM for v in values):
        raise UsageError(f"{option} {text!r}: a dim must be 1..{MAX_DIM}")
    lo, opt, hi = (values * 3)[:3] if len(values) == 1 else (
        (values[0], values[0], values[1]) if len(values) == 2 else tuple(values))
    if not lo <= opt <= hi:
        raise UsageError(f"{option} {text!r}: need MIN <= OPT <= MAX")
    return name, (lo, opt, hi)


# ------------------------------------------------------------------------------------------- batch dims
# The samples are stacked along each input's `batch_axis` (None: the input is not batched, every run gets the same
# tensor). The dim at a batch axis is a *batch dim*: its size is the number of samples in a run, so it may take
# its range's default (1..8); every other dynamic dim needs a real size (data/inputs.py).


def batch_dims(inputs) -> set[str]:
    """The symbolic dims that sit at the batch axis of a batched input."""
    return {spec.shape[spec.batch_axis] for spec in inputs
            if spec.batch_axis is not None and isinstance(spec.shape[spec.batch_axis], str)}


def pinned_batch_dims(inputs) -> set[str]:
    """Batch dims that some input also has at another axis (a recurrent state [2, batch, 128] fed as given): a run
    must then hold exactly that dim's value of samples."""
    batch = batch_dims(inputs)
    return {d for spec in inputs for axis, d in enumerate(spec.shape)
            if d in batch and axis != spec.batch_axis}


def fixed_batch_sizes(inputs, dims) -> dict[str, int]:
    """Input name -> the exact number of samples each run must hold, for the batched inputs whose batch dim is
    fixed (an int) or pinned (pinned_batch_dims: its value in `dims`, opt else min)."""
    pinned = pinned_batch_dims(inputs)
    out = {}
    for spec in inputs:
        if spec.batch_axis is None:
            continue
        d = spec.shape[spec.batch_axis]
        if isinstance(d, int):
            out[spec.name] = d
        elif d in pinned:
            r = dims.get(d)
            out[spec.name] = 1 if r is None else (r.opt if r.opt is not None else r.min)
    return out


def batch_axes(inputs) -> dict[str, int | None]:
    return {spec.name: spec.batch_axis for spec in inputs}
