"""Small pydantic building blocks shared by the recipe and the per-target option models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "fp16"]


class Strict(BaseModel):
    """Unknown keys are an error: a typo in a recipe must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Tolerance(Strict):
    """An artifact passes when every output meets every bound given here (unset bounds are not checked)."""

    min_cosine: float | None = Field(None, ge=-1, le=1)
    max_abs: float | None = Field(None, ge=0)
    min_top1_agreement: float | None = Field(None, ge=0, le=1)


class TargetOptions(Strict):
    """Fields every target shares; each target file subclasses this with its own options."""

    runtime: str
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    precision: Precision = "fp32"
    tolerance: Tolerance | None = None  # overrides verify.tolerances[precision] for this target

    @property
    def id(self) -> str:
        return self.name or f"{self.runtime}_{self.precision}"
