"""Run a model over many samples in chunks the model accepts (its fixed batch, or its batch dim's max).

The samples of every input are stacked along that input's batch axis (`inputs[].batch_axis`: 0 unless the recipe
says otherwise; None = not batched, the same tensor goes to every run). A chunk cuts each batched input along its
own axis and passes the unbatched ones whole; the outputs of the chunks are joined along their axis 0 (a 0-d
output: stacked), the same way for the reference and for every artifact, so their comparison lines up.

A model that takes *exactly* b samples per run (a fixed batch dim, or one pinned by an unbatched input: an `exact`
Chunk) gets a last, shorter chunk padded to b with copies of its last sample (along each input's batch axis), and
the padded rows are dropped from that run's outputs (pad_to, trim). This is the one implementation of padding: the
quantize stages (quantize/batches.py) use it too.
Numpy only: the framework workers (other environments) import this too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Feeds = dict[str, np.ndarray]


class Chunk(int):
    """A chunk size (samples per run) that also carries each input's batch axis, and whether the model takes
    exactly that many samples per run (`exact`: a fixed or pinned batch dim) or at most that many.

    It is an int, so code that only needs the size (a cache key, a worker request, `range(0, n, chunk)`) keeps
    working; run_in_chunks() reads `axes` to cut every input along its own batch axis, and `exact` to pad a short
    last chunk. A plain int (or a Chunk whose inputs are all batched along axis 0) cuts along axis 0 and never
    pads."""

    axes: dict[str, int | None]
    exact: bool

    def __new__(cls, size: int, axes: dict[str, int | None] | None = None, exact: bool = False):
        obj = super().__new__(cls, size)
        obj.axes = dict(axes or {})
        obj.exact = bool(exact)
        return obj

    def __reduce__(self):
        return (Chunk, (int(self), self.axes, self.exact))

    def __repr__(self) -> str:
        return f"Chunk({int(self)}, axes={self.axes}{', exact=True' if self.exact else ''})"

    def __str__(self) -> str:  # in messages and f-strings: the size, as a plain int
        return str(int(self))


def axes_of(chunk) -> dict[str, int | None]:
    return dict(getattr(chunk, "axes", None) or {})


def is_exact(chunk) -> bool:
    """Whether every run must hold exactly `chunk` samples (a Chunk marked exact)."""
    return bool(getattr(chunk, "exact", False))


def chunk_size(inputs, dims) -> int | None:
    """The largest batch every batched input accepts along its batch axis, or None when unbounded (no input is
    batched). A Chunk when some input is not batched along axis 0."""
    from convertctl.data.dims import batch_axes, pinned_batch_dims

    pinned = pinned_batch_dims(inputs)
    limits = []  # (size, whether a run must hold exactly that many)
    for spec in inputs:
        if spec.batch_axis is None:
            continue
        first = spec.shape[spec.batch_axis]
        if isinstance(first, int):
            limits.append((first, True))
        elif first in pinned:  # a run must hold exactly this many: the input that has it as a plain dim says so
            limits.append((dims[first].opt if dims[first].opt is not None else dims[first].min, True))
        else:
            limits.append((dims[first].max, False))
    if not limits:
        return None
    size = min(n for n, _ in limits)
    exact = any(fixed and n == size for n, fixed in limits)
    axes = batch_axes(inputs)
    return Chunk(size, axes, exact) if exact or any(a != 0 for a in axes.values()) else size


def sample_count(feeds: Feeds, axes: dict[str, int | None] | None = None) -> int:
    """How many samples the feeds hold: the size of the first batched input along its batch axis (1 when no input
    is batched: the feeds are one run)."""
    axes = axes or {}
    for name, array in feeds.items():
        axis = axes.get(name, 0)
        if axis is not None and np.ndim(array) > axis:
            return int(np.shape(array)[axis])
    return 1


def take(feeds: Feeds, start: int, stop: int, axes: dict[str, int | None] | None = None) -> Feeds:
    """Samples start..stop of every batched input (cut along its batch axis); unbatched inputs whole."""
    axes = axes or {}
    out = {}
    for name, array in feeds.items():
        axis = axes.get(name, 0)
        if axis is None or np.ndim(array) <= axis:
            out[name] = array
        else:
            index = [slice(None)] * np.ndim(array)
            index[axis] = slice(start, stop)
            out[name] = array[tuple(index)]
    return out


def split(feeds: Feeds, chunk: int | None, axes: dict[str, int | None] | None = None) -> list[Feeds]:
    """The feeds cut into runs of at most `chunk` samples (one run when chunk is None or large enough)."""
    axes = axes if axes is not None else axes_of(chunk)
    n = sample_count(feeds, axes)
    if chunk is None or n <= chunk:
        return [feeds]
    return [take(feeds, i, i + int(chunk), axes) for i in range(0, n, int(chunk))]


def join(parts: list[list[np.ndarray]], sizes: list[int] | None = None) -> list[np.ndarray]:
    """The outputs of several runs, output by output: concatenated along axis 0 where the parts allow it (all runs
    of the same size, or a batch-first output); else along the axis whose size is each run's sample count
    (`sizes`: a state output [2, B, 128] after a shorter last run joins along axis 1), else the first axis they
    can be joined along. 0-d outputs are stacked; outputs that fit no axis are flattened and concatenated.
    Deterministic in the parts' shapes, so a reference and an artifact run in the same chunks join the same way."""
    if len(parts) == 1:
        return list(parts[0])
    out = []
    for j in range(len(parts[0])):
        arrays = [np.asarray(p[j]) for p in parts]
        if arrays[0].ndim == 0:
            out.append(np.stack(arrays))
            continue
        axis = _join_axis([a.shape for a in arrays], sizes)
        out.append(np.concatenate(arrays, axis=axis) if axis is not None else
                   np.concatenate([a.ravel() for a in arrays]))
    return out


def _join_axis(shapes: list[tuple[int, ...]], sizes: list[int] | None) -> int | None:
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        return None
    joinable = [k for k in range(rank) if all(s[:k] + s[k + 1:] == shapes[0][:k] + shapes[0][k + 1:] for s in shapes)]
    if 0 in joinable:  # what every stage did before batch axes existed: keep it wherever it works
        return 0
    if sizes is not None and len(sizes) == len(shapes):
        batch = [k for k in joinable if all(s[k] == n for s, n in zip(shapes, sizes, strict=True))]
        if batch:
            return batch[0]
    return joinable[0] if joinable else None


def pad_to(part: Feeds, size: int, axes: dict[str, int | None] | None = None) -> Feeds:
    """`part` grown to `size` samples by repeating its last sample along each batched input's batch axis (a model
    with a fixed batch takes no fewer); unbatched inputs as they are."""
    axes = axes or {}
    n = sample_count(part, axes)
    if n >= size:
        return part
    out = {}
    for name, array in part.items():
        axis = axes.get(name, 0)
        if axis is None or np.ndim(array) <= axis:
            out[name] = array
            continue
        last = np.take(array, [np.shape(array)[axis] - 1], axis=axis)
        out[name] = np.concatenate([array, np.repeat(last, size - n, axis=axis)], axis=axis)
    return out


def trim(output: np.ndarray, size: int, keep: int) -> np.ndarray:
    """The rows of the `keep` real samples of one output of a run padded to `size` samples (pad_to). The output's
    batch axis is the axis of length `size` (axis 0 first, as join() prefers it); when several axes have that
    length, the one along which the padded rows repeat the last real one (a state [2, 2, 128] of a run of 2: axis
    1). An output with no axis of that length does not hold the samples (a reduction, a constant): kept whole."""
    output = np.asarray(output)
    candidates = [k for k in range(output.ndim) if output.shape[k] == size]
    if not candidates or keep >= size:
        return output
    if len(candidates) > 1:
        repeating = [k for k in candidates if _repeats(output, k, keep)]
        candidates = repeating or candidates
    index = [slice(None)] * output.ndim
    index[candidates[0]] = slice(0, keep)
    return output[tuple(index)]


def _repeats(output: np.ndarray, axis: int, keep: int) -> bool:
    """Whether the rows keep.. of `output` along `axis` repeat row keep-1 (what padded copies of a sample give)."""
    last = np.take(output, [keep - 1], axis=axis)
    rest = np.take(output, range(keep, output.shape[axis]), axis=axis)
    try:
        return bool(np.allclose(rest, last, rtol=1e-4, atol=1e-6, equal_nan=True))
    except TypeError:  # strings, objects: compare exactly
        return bool(np.all(rest == last))


def iter_runs(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None
              ) -> Iterator[tuple[Feeds, int, list[np.ndarray]]]:
    """(the run's feeds, its number of samples, its outputs) for each run of `chunk` samples, cut along each
    input's batch axis (axes_of(chunk)). An exact chunk (is_exact) runs a shorter last chunk padded to `chunk`
    samples and trims the padded rows from its outputs; the feeds yielded are the real samples only."""
    axes = axes_of(chunk)
    n = sample_count(feeds, axes)
    if chunk is None or (n <= int(chunk) and not (is_exact(chunk) and n < int(chunk))):
        yield feeds, n, list(run(feeds))
        return
    size = int(chunk)
    for start in range(0, n, size):
        part = take(feeds, start, start + size, axes)
        m = min(size, n - start)
        if is_exact(chunk) and m < size:
            yield part, m, [trim(o, size, m) for o in run(pad_to(part, size, axes))]
        else:
            yield part, m, list(run(part))


def run_in_chunks(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None) -> list[np.ndarray]:
    """Every sample's outputs: the runs of iter_runs, joined (join: along axis 0, else along each output's
    batch axis)."""
    parts, sizes = [], []
    for _, m, outs in iter_runs(run, feeds, chunk):
        parts.append(outs)
        sizes.append(m)
    return join(parts, sizes)


def stack(samples: list[Feeds], axes: dict[str, int | None]) -> Feeds:
    """Single-sample feeds (each batched input with a batch dim of 1 at its axis) stacked into one feed: batched
    inputs concatenated along their batch axis, unbatched ones taken from the first sample (they are the same)."""
    out = {}
    for name in samples[0]:
        axis = axes.get(name, 0)
        if axis is None:
            out[name] = samples[0][name]
        else:
            out[name] = np.concatenate([s[name] for s in samples], axis=axis)
    return out
