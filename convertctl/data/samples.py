"""Build the sample feeds (one batch per input) from a recipe: real images or seeded random data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convertctl.data.images import list_images, preprocess
from convertctl.data.limits import budget_hint
from convertctl.errors import UsageError
from convertctl.recipe import feed_shape, tensor_problem


@dataclass
class SampleSet:
    feeds: dict[str, np.ndarray]  # every sample stacked along its input's batch axis (unbatched inputs as given)
    description: str
    sha256: str
    notes: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        np.savez(path, **self.feeds)


def load_feeds(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _hash(feeds: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.asarray(feeds[name], order="C")  # a scalar stays 0-d
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _batch(inputs, dims, samples) -> tuple[int, list[str]]:
    """Samples are stacked along each input's batch axis and run in chunks the model accepts (data/batching.py).
    A fixed batch dim b (an int, or a batch dim another input has as a plain dim) needs a multiple of b: the count
    is rounded down (at least b), and says so. Without any batched input the inputs are fed once, as given."""
    from convertctl.data.dims import fixed_batch_sizes

    count, notes = samples.count, []
    if all(spec.batch_axis is None for spec in inputs):
        if count != 1:
            notes.append(f"samples.count {count} changed to 1: no input is batched (batch_axis null or a scalar), so "
                         "the inputs are fed once, as given")
        return 1, notes
    for name, first in fixed_batch_sizes(inputs, dims).items():
        spec = next(s for s in inputs if s.name == name)
        what = "first dim" if spec.batch_axis == 0 else f"batch dim (axis {spec.batch_axis})"
        if isinstance(spec.shape[spec.batch_axis], str):
            what = f"batch dim {spec.shape[spec.batch_axis]!r} fixed to {first} (another input has it as a plain dim)"
            phrase = f"input {name!r} has its {what}"
        else:
            phrase = f"input {name!r} has a fixed {what} of {first}"
        if count % first:
            new = max(first, count - count % first)
            notes.append(f"samples.count {count} changed to {new}: {phrase}")
            count = new
    return count, notes


def build_samples(inputs, dims, samples) -> SampleSet:
    """inputs: list of InputSpec-like (name, shape, dtype, range, value, batch_axis); dims: name -> DimRange,
    resolved (data/inputs.py)."""
    if not inputs:
        raise UsageError("the model has no inputs to feed")
    names = [spec.name for spec in inputs]
    if samples.input and samples.input not in names:
        raise UsageError(f"samples.input {samples.input!r} is not an input of the model; its inputs are {names}")
    count, notes = _batch(inputs, dims, samples)
    _check_budget(inputs, dims, count)
    rng = np.random.default_rng(samples.seed)
    image_input = (samples.input or inputs[0].name) if samples.images else None
    feeds: dict[str, np.ndarray] = {}
    parts = []
    for spec in inputs:
        shape = feed_shape(spec, dims, count)
        how = "" if spec.batch_axis == 0 else (" (not batched: the same for every run)" if spec.batch_axis is None
                                                 else f" (batched along axis {spec.batch_axis})")
        if spec.name == image_input:
            feeds[spec.name], what = _image_batch(samples, shape, count, spec, rng)
            parts.append(f"{spec.name}: {count} real images from {samples.images}{what}")
        elif spec.value is not None:
            feeds[spec.name] = np.full(shape, spec.value, dtype=spec.dtype)
            parts.append(f"{spec.name}: {shape} filled with {spec.value!r}{how}")
        else:
            feeds[spec.name] = random_tensor(rng, shape, spec)
            span = [int(v) for v in spec.range] if spec.dtype.startswith(("int", "uint")) else list(spec.range)
            parts.append(f"{spec.name}: seeded random {spec.dtype} in {span} (seed {samples.seed}){how}")
    return SampleSet(feeds=feeds, description="; ".join(parts), sha256=_hash(feeds), notes=notes)


def _check_budget(inputs, dims, count: int) -> None:
    """Refuse before allocating: the recipe schema checks declared inputs, this also covers the inputs read from
    an ONNX, Paddle or TensorFlow model (whose dims may be absurd)."""
    problem = tensor_problem(inputs, dims, count, "samples.count")
    if problem:
        raise UsageError(problem, hint=budget_hint())


def image_layout(spec, pre) -> tuple[int, tuple[int, int]] | None:
    """(channel axis, (height axis, width axis)) of an image input with the preprocessing's layout, or None when
    the input cannot take images (not 4-D, or not batched along axis 0)."""
    if len(spec.shape) != 4 or spec.batch_axis != 0:
        return None
    return (1, (2, 3)) if pre.layout == "NCHW" else (3, (1, 2))


def square_crop(spec, pre, shape) -> bool:
    """Whether images take the preprocessing's resize + square crop (else they are fitted to the input's height
    and width, data/images.fit): when the input's height and width are fixed, or they are the crop's size."""
    layout = image_layout(spec, pre)
    if layout is None:
        return True
    _, (h, w) = layout
    fixed = isinstance(spec.shape[h], int) and isinstance(spec.shape[w], int)
    return fixed or (shape[h], shape[w]) == (pre.crop, pre.crop)


def _image_batch(samples, shape, count, spec, rng) -> tuple[np.ndarray, str]:
    from convertctl.data.images import fit

    pre = samples.preprocess
    layout = image_layout(spec, pre)
    channels = shape[layout[0]] if layout else 3
    if layout is None or channels not in (1, 3):
        raise UsageError(f"input {spec.name!r} has shape {spec.shape}{_axis_note(spec)}: images need a 4-D input "
                         f"batched along axis 0 with 1 or 3 channels ([batch, C, H, W] or [batch, H, W, C], "
                         f"samples.preprocess.layout)", hint="give samples.input the image input, or leave out "
                                                             "samples.images for random data")
    square = square_crop(spec, pre, shape)
    if square:
        expected = [count, channels, pre.crop, pre.crop] if pre.layout == "NCHW" else \
            [count, pre.crop, pre.crop, channels]
        if shape != expected:
            raise UsageError(
                f"input {spec.name!r} has shape {spec.shape} but the image preprocessing gives {expected[1:]} per image",
                hint="make samples.preprocess (crop, layout) match the input shape",
            )
    files = list_images(samples.images)
    order = rng.permutation(len(files))[: min(count, len(files))]
    if len(order) < count:
        raise UsageError(f"samples.count is {count} but {samples.images} holds only {len(files)} images")
    if square:
        batch = [preprocess(files[i], pre, channels=channels) for i in order]
        return np.stack(batch).astype(spec.dtype), ""
    h, w = shape[layout[1][0]], shape[layout[1][1]]
    batch = [fit(files[i], pre, h, w, channels=channels) for i in order]
    return np.stack(batch).astype(spec.dtype), f" at {h}x{w} (an image of another size is resized to cover it and " \
                                               "centre-cropped)"


def _axis_note(spec) -> str:
    return "" if spec.batch_axis == 0 else f" (batch_axis {spec.batch_axis})"


def random_tensor(rng, shape, spec) -> np.ndarray:
    lo, hi = spec.range
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if spec.dtype.startswith(("int", "uint")):
        return rng.integers(int(lo), int(hi) + 1, size=shape).astype(spec.dtype)
    return rng.uniform(lo, hi, size=shape).astype(spec.dtype)


def one_sample(spec, dims, rng) -> np.ndarray:
    """One sample of an input that no data feeds (e.g. the inputs beside the calibration input): a batch of 1
    along its batch axis (the tensor as given when it is not batched), filled with `value`, else seeded random
    in `range`. Stack such samples with data/batching.stack, which follows the batch axes too."""
    shape = feed_shape(spec, dims, 1)
    if spec.value is not None:
        return np.full(shape, spec.value, dtype=spec.dtype)
    return random_tensor(rng, shape, spec)
