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
    feeds: dict[str, np.ndarray]  # every sample stacked along dim 0
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
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _batch(inputs, samples) -> tuple[int, list[str]]:
    """Samples are stacked along dim 0 and run in chunks the model accepts (data/batching.py).
    A fixed first dim b needs a multiple of b: the count is rounded down (at least b), and says so."""
    count, notes = samples.count, []
    for spec in inputs:
        first = spec.shape[0]
        if isinstance(first, int) and count % first:
            new = max(first, count - count % first)
            notes.append(f"samples.count {count} changed to {new}: input {spec.name!r} has a fixed first dim of {first}")
            count = new
    return count, notes


def build_samples(inputs, dims, samples) -> SampleSet:
    """inputs: list of InputSpec-like (name, shape, dtype, range); dims: name -> DimRange."""
    if not inputs:
        raise UsageError("the model has no inputs to feed")
    names = [spec.name for spec in inputs]
    if samples.input and samples.input not in names:
        raise UsageError(f"samples.input {samples.input!r} is not an input of the model; its inputs are {names}")
    count, notes = _batch(inputs, samples)
    _check_budget(inputs, dims, count)
    rng = np.random.default_rng(samples.seed)
    image_input = (samples.input or inputs[0].name) if samples.images else None
    feeds: dict[str, np.ndarray] = {}
    parts = []
    for spec in inputs:
        shape = feed_shape(spec.shape, dims, count)
        if spec.name == image_input:
            feeds[spec.name] = _image_batch(samples, shape, count, spec, rng)
            parts.append(f"{spec.name}: {count} real images from {samples.images}")
        else:
            feeds[spec.name] = random_tensor(rng, shape, spec)
            parts.append(f"{spec.name}: seeded random {spec.dtype} in {list(spec.range)} (seed {samples.seed})")
    return SampleSet(feeds=feeds, description="; ".join(parts), sha256=_hash(feeds), notes=notes)


def _check_budget(inputs, dims, count: int) -> None:
    """Refuse before allocating: the recipe schema checks declared inputs, this also covers the inputs read from
    an ONNX, Paddle or TensorFlow model (whose dims may be absurd)."""
    problem = tensor_problem(inputs, dims, count, "samples.count")
    if problem:
        raise UsageError(problem, hint=budget_hint())


def _image_batch(samples, shape, count, spec, rng) -> np.ndarray:
    pre = samples.preprocess
    expected = [count, 3, pre.crop, pre.crop] if pre.layout == "NCHW" else [count, pre.crop, pre.crop, 3]
    if shape != expected:
        raise UsageError(
            f"input {spec.name!r} has shape {spec.shape} but the image preprocessing gives {expected[1:]} per image",
            hint="make samples.preprocess (crop, layout) match the input shape",
        )
    files = list_images(samples.images)
    order = rng.permutation(len(files))[: min(count, len(files))]
    if len(order) < count:
        raise UsageError(f"samples.count is {count} but {samples.images} holds only {len(files)} images")
    return np.stack([preprocess(files[i], pre) for i in order]).astype(spec.dtype)


def random_tensor(rng, shape, spec) -> np.ndarray:
    lo, hi = spec.range
    if spec.dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if spec.dtype.startswith(("int", "uint")):
        return rng.integers(int(lo), int(hi) + 1, size=shape).astype(spec.dtype)
    return rng.uniform(lo, hi, size=shape).astype(spec.dtype)
