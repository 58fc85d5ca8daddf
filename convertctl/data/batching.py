"""Run a model over many samples in chunks the model accepts (its fixed batch, or its batch dim's max)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Feeds = dict[str, np.ndarray]


def chunk_size(inputs, dims) -> int | None:
    """The largest batch every input accepts along dim 0, or None when unbounded."""
    limits = []
    for spec in inputs:
        first = spec.shape[0]
        limits.append(first if isinstance(first, int) else dims[first].max)
    return min(limits) if limits else None


def run_in_chunks(run: Callable[[Feeds], list[np.ndarray]], feeds: Feeds, chunk: int | None) -> list[np.ndarray]:
    n = len(next(iter(feeds.values())))
    if chunk is None or n <= chunk:
        return run(feeds)
    parts = [run({k: v[i:i + chunk] for k, v in feeds.items()}) for i in range(0, n, chunk)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]
