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

    min_cosine: float | None = Field(None, ge=-1, le=1, description=(
        "Cosine similarity between the flattened output and the reference."))
    max_abs: float | None = Field(None, ge=0, description=(
        "Largest absolute difference: a cap on every output, whichever criterion decided it."))
    min_top1_agreement: float | None = Field(None, ge=0, le=1, description=(
        "Share of samples whose arg-max class matches; only for 2-D outputs [N, C] with C > 1, ignored for others."))
    min_sqnr_db: float | None = Field(None, description=(
        "Signal-to-quantization-noise ratio of each output, in dB; not checked for an output identical to the "
        "reference."))
    max_accuracy_drop: float | None = Field(None, ge=0, le=1, description=(
        "Top-1 accuracy lost against the reference on labelled verification data, as a fraction (0.005 = 0.5 "
        "points); checked in the build stage, ignored without labels."))
    atol: float | None = Field(None, ge=0, description=(
        "The absolute part of the closeness bound, in the output's own units."))
    rtol: float | None = Field(None, ge=0, description=(
        "The part of the closeness bound relative to the output's scale, its RMS: bound = atol + rtol * "
        "RMS(reference)."))


class ImagePreprocess(Strict):
    """value = (pixel * scale - mean) / std, pixel in 0..255, after resize (short side) and centre crop."""

    resize: int = Field(256, ge=1, description=(
        "Short side after resizing (bilinear). Left unset (no `preprocess` at all) for an input of a static square "
        "size S, calibration images are resized to S*256/224 and cropped to S (noted in the run)."))
    crop: int = Field(224, ge=1, description="Side of the centre crop; at most `resize`.")
    color: Literal["RGB", "BGR"] = Field("RGB", description="Channel order.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Tensor layout.")
    scale: float = Field(1.0, description="Multiplies the 0..255 pixel first (1/255 for 0..1 inputs).")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=1, max_length=3, description=(
        "Subtracted per channel: 1 value (all channels) or 3."))
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=1, max_length=3, description=(
        "Divides per channel: 1 value (all channels) or 3, non-zero."))

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

    runtime: str = Field(description="Which target; the other keys depend on it (a key of another runtime is an error).")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description=(
        "Artifact id, naming its folder targets/<id>/ and its manifest entry; null: <runtime>_<precision>."))
    precision: Precision = Field("fp32", description=(
        "Precision of the artifact (its meaning per runtime, below); selects the tolerance. int8 needs a "
        "`calibration` section."))
    tolerance: Tolerance | None = Field(None, description=(
        "Replaces verify.tolerances[precision] for this target (the whole entry, not key by key)."))

    @property
    def id(self) -> str:
        return self.name or f"{self.runtime}_{self.precision}"
