"""What every front end hands to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ExportResult:
    onnx: Path
    reference: list[np.ndarray]  # the source framework's outputs on the samples, in output order
    reference_name: str  # what produced the reference ("pytorch", "onnxruntime on the source model")
    details: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown to the user even without -v
    logs: list[Path] = field(default_factory=list)
    verify_export: bool = True  # False when the ONNX *is* the source (nothing to compare with)


def load_reference(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
