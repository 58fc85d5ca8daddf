"""What every target provides: a light description, a build step and a runner."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convertctl.schema import TargetOptions

Feeds = dict[str, np.ndarray]


@dataclass
class BuiltArtifact:
    """The files a build wrote (relative to its folder) and the settings it was built/run with."""

    files: list[Path]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildContext:
    """What a build may need beyond its input ONNX: calibration samples (e.g. for NNCF), exclusions."""

    calibration: Callable[[], Iterable[Feeds]] | None = None  # yields single-sample feeds
    num_calibration: int = 0
    exclude_ops: list[str] = field(default_factory=list)
    exclude_nodes: list[str] = field(default_factory=list)
    inputs: list = field(default_factory=list)  # the run's input specs (name, shape with symbolic dims)
    dims: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (min, opt, max) of every symbolic dim
    explicit_dims: set[str] = field(default_factory=set)  # the dims the recipe itself gave a range for
    tolerance: dict | None = None  # the accuracy gate this artifact is held to (for a TensorRT kit's recipe)
    cache_dir: Path | None = None  # where build caches live (TensorRT timing caches)
    name: str = "model"  # the run's name


@dataclass
class Runner:
    """Runs an artifact in its runtime. `effective` records what the runtime actually used."""

    run: Callable[[Feeds], list[np.ndarray]]
    output_names: list[str]
    effective: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    module: str  # the import that proves the runtime is installed
    distribution: str | tuple[str, ...]  # the PyPI distribution(s) whose version we record: the first installed
    extra: str  # `pip install convertctl[extra]`
    precisions: tuple[str, ...]
    options_model: type[TargetOptions]
    build: Callable[[Path, TargetOptions, Path, BuildContext], BuiltArtifact]
    open: Callable[[Path, TargetOptions, dict], Runner]
    # Which ONNX the build starts from: "fp32", or an emission of quantize/emit.py ("qdq_s8", "qdq_u8s8", "fp16")
    emission: Callable[[TargetOptions], str] = lambda spec: "fp32"
    # What to leave where the runtime is not installed (TensorRT: the build kit); None = nothing
    kit: Callable[[Path, TargetOptions, Path, BuildContext], BuiltArtifact] | None = None

    def installed(self) -> bool:
        """Without importing the runtime (that can take seconds)."""
        return importlib.util.find_spec(self.module) is not None

    def version(self) -> str | None:
        names = (self.distribution,) if isinstance(self.distribution, str) else self.distribution
        for name in names:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return None
