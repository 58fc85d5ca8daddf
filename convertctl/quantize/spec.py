"""Recipe sections for quantization (`calibration:` and `quantize:`), kept light: no heavy imports."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from convertctl.schema import ImagePreprocess, Strict


class CalibrationSpec(Strict):
    """Where calibration (and held-out evaluation) samples come from.

    `data` is a folder of images (jpg/png/bmp; one sub-folder per class gives labels), a folder of
    .npy/.npz tensor files, or one .npy/.npz file (a sample or a batch along axis 0 each).
    """

    data: Path
    input: str | None = None  # the model input the data feeds (default: the first)
    num_samples: int = Field(100, ge=1)  # calibration samples (after the held-out split)
    holdout: float = Field(0.2, ge=0.0, lt=1.0)  # share of the files kept aside for evaluation
    seed: int = 0
    labels: Literal["auto", "folders", "none"] | Path = "auto"  # auto: folders when every file sits in a class folder
    preprocess: ImagePreprocess | None = None  # default: samples.preprocess
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    percentile: float = Field(99.999, gt=90.0, le=100.0)
    cache: Path | None = None  # calibration-table cache folder (default: $CONVERTCTL_CACHE or ~/.cache/convertctl)


class QuantizeSpec(Strict):
    """What to keep out of quantization: operator types or node names (pasted from the per-layer report)."""

    exclude_ops: list[str] = Field(default_factory=list)
    exclude_nodes: list[str] = Field(default_factory=list)
    # FP16: tensors whose calibrated |range| exceeds this stay FP32 (FP16 max is 65504)
    fp16_range_limit: float = Field(65504.0 / 2, gt=0)

    @model_validator(mode="after")
    def _unique(self):
        self.exclude_ops = sorted(set(self.exclude_ops))
        self.exclude_nodes = sorted(set(self.exclude_nodes))
        return self

