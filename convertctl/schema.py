"""Small pydantic building blocks shared by the recipe and the per-target option models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["fp32", "fp16", "int8"]


class Strict(BaseModel):
    """Unknown keys are an error: a typo in a recipe must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Tolerance(Strict):
    """How close each output must be to its reference (evaluate/compare.py `judge`; unset bounds are not checked).

    With `atol` or `rtol` set, an output is *close* when max|actual - reference| <= atol + rtol * RMS(reference).
    An output whose reference has no signal (it stays within that bound of one value: ~0 or constant) is judged
    by absolute error only: close or not. Any other output passes when it is close, or else when it meets the
    similarity bounds (min_cosine, min_sqnr_db, min_top1_agreement). max_abs caps every output whatever decided.
    Without atol and rtol every output is judged by the similarity bounds alone."""

    min_cosine: float | None = Field(None, ge=-1, le=1)
    max_abs: float | None = Field(None, ge=0)
    min_top1_agreement: float | None = Field(None, ge=0, le=1)
    min_sqnr_db: float | None = None  # signal-to-quantization-noise ratio of each output, in dB
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)  # top-1 accuracy points lost (needs labels), 0.005 = 0.5
    atol: float | None = Field(None, ge=0)  # absolute part of the closeness bound, in the output's own units
    rtol: float | None = Field(None, ge=0)  # part of the closeness bound relative to the output's scale (its RMS)


class ImagePreprocess(Strict):
    """value = (pixel * scale - mean) / std, pixel in 0..255, after resize (short side) and centre crop."""

    resize: int = Field(256, ge=1)
    crop: int = Field(224, ge=1)
    color: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    scale: float = 1.0
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=1, max_length=3)
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=1, max_length=3)

    @model_validator(mode="after")
    def _sizes(self):
        for key in ("mean", "std"):
            if len(getattr(self, key)) not in (1, 3):
                raise ValueError(f"{key} needs 1 value (all channels) or 3 (one per channel)")
        if self.crop > self.resize:
            raise ValueError(f"crop ({self.crop}) cannot be larger than resize ({self.resize})")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")
        return self


class TargetOptions(Strict):
    """Fields every target shares; each target file subclasses this with its own options."""

    runtime: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    precision: Precision = "fp32"
    tolerance: Tolerance | None = None  # overrides verify.tolerances[precision] for this target

    @property
    def id(self) -> str:
        return self.name or f"{self.runtime}_{self.precision}"
