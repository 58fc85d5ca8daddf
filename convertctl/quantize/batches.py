"""Run a session over many samples in chunks the model accepts, for every stage of quantization.

The samples are stacked along axis 0. A model whose inputs fix their first dim (a batch of 1, the default of
most exporters, or b) accepts exactly b samples per run: it is fed b at a time, a last partial chunk padded with
copies of its own last sample, and the padded rows dropped from the outputs. Any other model is fed `chunk`
samples at a time (the batch dim's max from the recipe, data/batching.chunk_size), or all at once when `chunk`
is None. The outputs of the chunks are concatenated along axis 0 (data/batching.run_in_chunks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

Feeds = dict[str, np.ndarray]


def fixed_batch(shapes) -> int | None:
    """The fixed first dim of the inputs with the `shapes` given (ONNX Runtime's `NodeArg.shape` lists: an int
    for a fixed dim, a name or None for a symbolic one), or None when no input fixes it. Inputs without dims
    (scalars) are not batched and do not count."""
    fixed = [s[0] for s in shapes if s and isinstance(s[0], int) and s[0] > 0]
    return min(fixed) if fixed else None


def plan(sess, chunk: int | None) -> tuple[int | None, bool]:
    """(samples per run, whether a last partial chunk must be padded) for an ONNX Runtime session."""
    fixed = fixed_batch([i.shape for i in sess.get_inputs()])
    return (fixed, True) if fixed is not None else (chunk, False)


def _count(feeds: Feeds) -> int:
    return len(next(iter(feeds.values())))


def pad_to(part: Feeds, size: int) -> Feeds:
    """`part` grown to `size` samples by repeating its last one (a fixed-batch model takes no fewer)."""
    n = _count(part)
    return {k: np.concatenate([v, np.repeat(v[-1:], size - n, axis=0)]) for k, v in part.items()}


def iter_chunks(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None,
                pad: bool = False) -> Iterator[tuple[Feeds, list[np.ndarray]]]:
    """(the chunk's feeds, its outputs) for each chunk of `chunk` samples; with `pad`, a last chunk shorter than
    `chunk` is run padded and its outputs cut back to its own samples."""
    n = _count(feeds)
    step = n if chunk is None or chunk >= n and not pad else chunk
    for i in range(0, n, max(step, 1)):
        part = {k: v[i:i + step] for k, v in feeds.items()}
        m = _count(part)
        if pad and m < step:
            yield part, [np.asarray(o)[:m] for o in run(pad_to(part, step))]
        else:
            yield part, [np.asarray(o) for o in run(part)]


def run_chunks(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None,
               pad: bool = False) -> list[np.ndarray]:
    """All samples' outputs, concatenated along axis 0 (one run when everything fits)."""
    from convertctl.data.batching import run_in_chunks

    n = _count(feeds)
    if not pad or chunk is None or n % chunk == 0:
        return run_in_chunks(lambda p: [np.asarray(o) for o in run(p)], feeds, chunk)
    parts = [outs for _, outs in iter_chunks(run, feeds, chunk, pad)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def run_session(sess, feeds: Feeds, chunk: int | None = None, names: list[str] | None = None) -> list[np.ndarray]:
    """Outputs `names` (default: all) of an ONNX Runtime session over every sample of `feeds`, in chunks the
    model accepts (`plan`). Feeds the session does not take are left out."""
    size, pad = plan(sess, chunk)
    inputs = {i.name for i in sess.get_inputs()}
    used = {k: v for k, v in feeds.items() if k in inputs}
    return run_chunks(lambda part: sess.run(names, part), used, size, pad)


def chunks_of_session(sess, feeds: Feeds, chunk: int | None, names: list[str] | None = None
                      ) -> Iterator[tuple[Feeds, list[np.ndarray]]]:
    """`iter_chunks` over an ONNX Runtime session (for stages that reduce each chunk, e.g. histograms).
    The feeds yielded are all of `feeds`' arrays for the chunk, the session's inputs and the others."""
    size, pad = plan(sess, chunk)
    inputs = {i.name for i in sess.get_inputs()}
    yield from iter_chunks(lambda part: sess.run(names, {k: v for k, v in part.items() if k in inputs}),
                           feeds, size, pad)


def model_runs(samples: Iterable[Feeds], batch: int | None) -> Iterator[tuple[Feeds, int]]:
    """(feeds of one run, how many samples it holds) from single-sample feeds (a leading dim of 1 each): one
    sample per run, or for a model with a fixed batch b > 1, b samples stacked along axis 0, the last group
    filled up with copies of its last sample. For calibrators: copies change no minimum or maximum; entropy and
    percentile histograms count them (at most b - 1 values per tensor)."""
    if not batch or batch == 1:
        yield from ((feeds, 1) for feeds in samples)
        return
    group: list[Feeds] = []
    for feeds in samples:
        group.append(feeds)
        if len(group) == batch:
            yield {k: np.concatenate([g[k] for g in group]) for k in group[0]}, batch
            group = []
    if group:
        yield pad_to({k: np.concatenate([g[k] for g in group]) for k in group[0]}, batch), len(group)
