"""The parts of a stage-cache key every stage shares: the data it is verified on, recipe sections, file hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from convertctl.report.manifest import sha256_file


def model_sha(path) -> str:
    """The hashes of a model file and its external data files."""
    from convertctl.model import companion_files

    return ",".join(sha256_file(f) for f in companion_files(Path(path)))


def sections(ctx, *names) -> dict:
    dumped = ctx.recipe.model_dump(mode="json")
    return {n: dumped[n] for n in names}


def data_key(ctx) -> dict:
    """What every stage's verification depends on: the samples, the labels, the versions, the gates."""
    labels = ctx.samples.labels
    return {"samples": ctx.samples.record.sha256 if ctx.samples.record else None,
            "labels": None if labels is None else hashlib.sha256(np.ascontiguousarray(labels)).hexdigest(),
            "chunk": ctx.samples.chunk, "versions": ctx.versions,
            "tolerances": ctx.recipe.verify.model_dump(mode="json")["tolerances"]}


def arrays_sha(arrays) -> str:
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
