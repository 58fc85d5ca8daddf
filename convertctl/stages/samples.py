"""The data every artifact is verified on: the calibration data's held-out split when the recipe has one (with its
labels, if any), else the recipe's `samples` (images or seeded random tensors). Saved as samples.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convertctl.report.manifest import SamplesRecord
from convertctl.stages.context import Samples


def make_samples(recipe, inputs, folder: Path) -> tuple[Samples, list[str]]:
    """(the samples, notes) for `recipe` with `inputs`, written to folder/samples.npz."""
    from convertctl.data.batching import chunk_size
    from convertctl.data.samples import build_samples

    chunk = chunk_size(inputs, recipe.dims)
    path = folder / "samples.npz"
    notes: list[str] = []
    calib = None
    if recipe.calibration is not None:
        from convertctl.data.batching import stack
        from convertctl.quantize.calib_data import CalibrationData

        calib = CalibrationData(recipe.calibration, inputs, recipe.dims, recipe.samples.preprocess)
        notes.extend(calib.notes)
        if calib.num_evaluation:  # the held-out split verifies every artifact (with labels, if any)
            held = list(calib.evaluation())  # stacked along each input's batch axis
            feeds = stack([s.feeds for s in held], {spec.name: spec.batch_axis for spec in inputs})
            labels = [s.label for s in held]
            np.savez(path, **feeds)
            record = SamplesRecord(
                description=f"{calib.num_evaluation} held-out samples: {calib.description}", sha256=calib.sha256,
                shapes={k: list(v.shape) for k, v in feeds.items()}, notes=calib.notes)
            return Samples(feeds=feeds, path=path, chunk=chunk, calib=calib, record=record,
                           labels=np.asarray(labels) if all(label is not None for label in labels) else None), notes
        notes.append("calibration.holdout gives no held-out samples: verifying on `samples` instead")
    samples = build_samples(inputs, recipe.dims, recipe.samples)
    samples.save(path)
    record = SamplesRecord(description=samples.description, sha256=samples.sha256,
                           shapes={k: list(v.shape) for k, v in samples.feeds.items()}, notes=samples.notes)
    return Samples(feeds=samples.feeds, path=path, chunk=chunk, labels=None, calib=calib, record=record), \
        notes + list(samples.notes)
