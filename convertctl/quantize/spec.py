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

    data: Path = Field(description=(
        "A folder of images (one sub-folder per class gives labels), a folder of .npy/.npz files, or one "
        ".npy/.npz file. Images (.jpg .jpeg .png .bmp) are searched recursively."))
    input: str | None = Field(None, description=(
        "The model input the data feeds (a batched one); null: the first input. Every other input gets its "
        "`value`, else seeded random data in its `range`."))
    num_samples: int = Field(100, ge=1, description="Calibration samples, taken after the held-out split.")
    holdout: float = Field(0.2, ge=0.0, lt=1.0, description=(
        "Share of the files kept aside for verification (of the samples, for one file given alone)."))
    seed: int = Field(0, description="Seed of the split (and of random data for other inputs).")
    labels: Literal["auto", "folders", "none"] | Path = Field("auto", description=(
        "Where class labels come from. auto: the `labels` arrays of .npz files, else the class folders when every "
        "file sits in one, else none; any other string is the path of a CSV labels file."))
    preprocess: ImagePreprocess | None = Field(None, description=(
        "How images become tensors (the keys of samples.preprocess); null: samples.preprocess."))
    method: Literal["minmax", "entropy", "percentile"] = Field("minmax", description=(
        "ONNX Runtime calibrator that turns activation statistics into ranges."))
    percentile: float = Field(99.999, gt=90.0, le=100.0, description="The percentile, for method: percentile.")
    cache: Path | None = Field(None, description=(
        "Folder of the calibration-table cache; null: $CONVERTCTL_CACHE/calibration, else "
        "$XDG_CACHE_HOME/convertctl/calibration, else ~/.cache/convertctl/calibration."))


class QuantizeSpec(Strict):
    """What to keep out of quantization: operator types or node names (pasted from the per-layer report)."""

    exclude_ops: list[str] = Field(default_factory=list, description=(
        "ONNX operator types never quantized in the Q/DQ emissions and kept FP32 in the FP16 ONNX."))
    exclude_nodes: list[str] = Field(default_factory=list, description=(
        "ONNX node names kept out of quantization: paste the quantize stage's suggestion (the most sensitive "
        "layers) here. They are never quantized in the Q/DQ emissions and kept FP32 in the FP16 ONNX."))
    fp16_range_limit: float = Field(65504.0 / 2, gt=0, description=(
        "FP16 ONNX: a node whose calibrated output range exceeds this stays FP32, and so do the nodes reading its "
        "output (FP16 max is 65504; needs a `calibration` section)."))

    @model_validator(mode="after")
    def _unique(self):
        self.exclude_ops = sorted(set(self.exclude_ops))
        self.exclude_nodes = sorted(set(self.exclude_nodes))
        return self

