"""Run a session over many samples in chunks the model accepts, for every stage of quantization.

The samples of each input are stacked along its batch axis (`inputs[].batch_axis`, carried by the pipeline's
chunk: data/batching.axes_of; axis 0 when the chunk carries none). A model whose inputs fix the dim at their batch
axis (a batch of 1, the default of most exporters, or b) accepts exactly b samples per run: it is fed b at a time,
a last partial chunk padded with copies of its own last sample and the padded rows dropped from the outputs. Any
other model is fed `chunk` samples at a time (the batch dim's max from the recipe, data/batching.chunk_size, which
is itself exact when the recipe's inputs fix or pin the batch), or all at once when `chunk` is None. Cutting,
padding and joining are data/batching's (one implementation for the pipeline and these stages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from convertctl.data.batching import Chunk, axes_of, is_exact, iter_runs, pad_to, run_in_chunks, stack

Feeds = dict[str, np.ndarray]


def fixed_batch(shapes, axes: dict[str, int | None] | None = None) -> int | None:
    """The fixed batch dim of the inputs with the `shapes` given (ONNX Runtime's `NodeArg.shape` lists: an int
    for a fixed dim, a name or None for a symbolic one), or None when no input fixes it. `shapes` is a list (every
    input batched along axis 0) or a dict input name -> shape, read at each input's axis in `axes` (default 0;
    None: the input is not batched and does not count). Inputs without dims (scalars) are not batched either."""
    items = shapes.items() if isinstance(shapes, dict) else ((None, s) for s in shapes)
    fixed = []
    for name, shape in items:
        axis = (axes or {}).get(name, 0) if name is not None else 0
        if axis is None or not shape or len(shape) <= axis:
            continue
        d = shape[axis]
        if isinstance(d, int) and not isinstance(d, bool) and d > 0:
            fixed.append(d)
    return min(fixed) if fixed else None


def plan(sess, chunk: int | None) -> int | None:
    """The chunk to run an ONNX Runtime session in: an exact Chunk of the model's fixed batch when its inputs fix
    the dim at their batch axis (axes_of(chunk)), else `chunk` as given (exact when the recipe's inputs fix or pin
    the batch)."""
    axes = axes_of(chunk)
    fixed = fixed_batch({i.name: i.shape for i in sess.get_inputs()}, axes)
    return Chunk(fixed, axes, exact=True) if fixed is not None else chunk


def iter_chunks(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None
                ) -> Iterator[tuple[Feeds, list[np.ndarray]]]:
    """(the chunk's feeds, its outputs) for each chunk of `chunk` samples (data/batching.iter_runs: an exact
    chunk pads a short last chunk and drops the padded rows from its outputs)."""
    for part, _, outs in iter_runs(run, feeds, chunk):
        yield part, [np.asarray(o) for o in outs]


def run_session(sess, feeds: Feeds, chunk: int | None = None, names: list[str] | None = None) -> list[np.ndarray]:
    """Outputs `names` (default: all) of an ONNX Runtime session over every sample of `feeds`, in chunks the
    model accepts (`plan`), joined as data/batching.join does. Feeds the session does not take are left out."""
    inputs = {i.name for i in sess.get_inputs()}
    used = {k: v for k, v in feeds.items() if k in inputs}
    return run_in_chunks(lambda part: [np.asarray(o) for o in sess.run(names, part)], used, plan(sess, chunk))


def chunks_of_session(sess, feeds: Feeds, chunk: int | None, names: list[str] | None = None
                      ) -> Iterator[tuple[Feeds, list[np.ndarray]]]:
    """`iter_chunks` over an ONNX Runtime session (for stages that reduce each chunk, e.g. histograms).
    The feeds yielded are all of `feeds`' arrays for the chunk, the session's inputs and the others."""
    inputs = {i.name for i in sess.get_inputs()}
    yield from iter_chunks(lambda part: sess.run(names, {k: v for k, v in part.items() if k in inputs}),
                           feeds, plan(sess, chunk))


def model_runs(samples: Iterable[Feeds], batch: int | None, axes: dict[str, int | None] | None = None
               ) -> Iterator[tuple[Feeds, int]]:
    """(feeds of one run, how many samples it holds) from single-sample feeds (a batch dim of 1 at each batched
    input's axis in `axes`, default 0; unbatched inputs as given): one sample per run, or for a model that takes
    exactly b > 1 samples per run, b samples stacked along their batch axes (data/batching.stack), the last group
    filled up with copies of its last sample (data/batching.pad_to). For calibrators: copies change no minimum or
    maximum; entropy and percentile histograms count them (at most b - 1 values per tensor)."""
    axes = axes if axes is not None else axes_of(batch)
    if not batch or batch == 1:
        yield from ((feeds, 1) for feeds in samples)
        return
    group: list[Feeds] = []
    for feeds in samples:
        group.append(feeds)
        if len(group) == batch:
            yield stack(group, axes), int(batch)
            group = []
    if group:
        yield pad_to(stack(group, axes), int(batch), axes), len(group)


def run_size(model_inputs: dict[str, list], chunk: int | None) -> int | None:
    """How many samples each run of a model must hold (None: any number, one sample per calibration run): the
    fixed dim at the inputs' batch axes (`model_inputs`: name -> shape as the model declares it), else `chunk`
    when it is exact (a batch the recipe fixes or pins)."""
    fixed = fixed_batch(model_inputs, axes_of(chunk))
    if fixed is not None:
        return fixed
    return int(chunk) if is_exact(chunk) else None
