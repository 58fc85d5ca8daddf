"""What every target provides: a light description, a build step and a runner, and the hooks through which
the core asks a target what only it knows (its judge, its environment, its rules for an emission, its notes).

A target is one package, convertctl/targets/<name>/, whose `target.py` defines `TARGET = Target(...)`
(registry.py finds it). Everything that names the runtime lives in that package; the core reads it here.
"""

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
    # the run's source model (recipe.source): for a target that can convert the source itself instead of the ONNX
    # (Target.reads_source). Its path is resolved; None when built without a run (tests, `build model.onnx`)
    source_framework: str | None = None
    source_path: Path | None = None
    source_factory: str | None = None  # a PyTorch source's factory ("file.py:callable") and its keyword arguments
    source_factory_args: dict = field(default_factory=dict)


@dataclass
class Runner:
    """Runs an artifact in its runtime. `effective` records what the runtime actually used."""

    run: Callable[[Feeds], list[np.ndarray]]
    output_names: list[str]
    effective: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EmissionReview:
    """A target's verdict on a quantize-stage emission it can build from (Target.review_emission)."""

    key: str  # where the stage records `details` in the emission's manifest details
    details: dict
    finding: str  # one line for the quantize stage's findings


@dataclass(frozen=True)
class KitTestBuild:
    """A sibling builder's trial of another target's kit (Target.test_build_kit): did the kit's ONNX parse and
    build with the kit's own profiles, and if not, the builder's own message and the nodes it named."""

    by: str  # the builder and its version ("TensorRT-RTX 1.7.1.116")
    ok: bool
    summary: str  # one line for the artifact's reason: "parses and builds with …" / "… refuses it: …"
    details: dict  # recorded as the artifact's settings["test_build"] and in the kit's test_build.json
    files: list[Path] = field(default_factory=list)  # written into the kit folder (relative to it)


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
    # How messages name the runtime ("OpenVINO"); "" = `name`
    title: str = ""
    # The judge `convertctl check` calls: ModelFacts (checks/model_facts.py) -> TargetReport (checks/verdicts.py).
    # It imports what it needs when called. None = no judge: every node is reported "unknown"
    check: Callable[[Any], Any] | None = None
    # The distributions a run's environment records versions of for this target (report/environment.py)
    environment: tuple[str, ...] = ()
    # The target's own rules for an emission it builds from, checked by the quantize stage on every such
    # emission whether or not the runtime is installed: (emission name, its ONNX) -> EmissionReview, or None
    # when the target has no rules for that emission
    review_emission: Callable[[str, Path], EmissionReview | None] | None = None
    # The tool that quantizes INT8 inside the target's own build (its int8 artifacts are then built from
    # "fp32"), for messages; "" = it builds INT8 from the quantize stage's Q/DQ emissions only
    int8_quantizer: str = ""
    # Appended to the reason of an artifact whose build crashed natively in an earlier attempt (supervisor.py):
    # the recipe change that avoids the crash, starting "; ". "" = nothing to suggest
    crash_hint: str = ""
    # Where the runtime is not installed and `kit` was written: (artifact id, the kit's settings) -> the text
    # appended to the artifact's "skipped" reason, saying what the kit holds. None = nothing appended
    kit_note: Callable[[str, dict], str] | None = None
    # Whether a built artifact can be loaded and run on this machine: options -> None (it can), or the reason it
    # cannot (no supported GPU). The artifact is then built but not verified: "skipped", never "ok".
    # None = it always can where the runtime is installed
    can_run: Callable[[TargetOptions], str | None] | None = None
    # The sibling target packages this one imports from: one product family sharing code (tensorrt_rtx builds with
    # the tensorrt target's builder). tests/test_target_packages.py lets this package, and only it, name them
    shares: tuple[str, ...] = ()
    # The kits of which (shared) targets this one test-builds where their own runtime is missing: (kit folder,
    # the kit's settings, the kit target's options) -> KitTestBuild. The core calls it after the kit is written;
    # a kit that does not build makes the artifact an error
    # Why a precision is not in `precisions` (e.g. "int8": the wheels carry no quantizer): said wherever it is asked
    # for (build, quantize), instead of a bare "does not build"
    unavailable: tuple[tuple[str, str], ...] = ()
    # The suffixes of its model files beyond the core's (.onnx, .data, .bin, .xml, .engine, .plan), counted as the
    # artifact's size (evaluate/worth.py)
    model_suffixes: tuple[str, ...] = ()
    test_builds_kits_of: tuple[str, ...] = ()
    test_build_kit: Callable[[Path, dict, TargetOptions], KitTestBuild] | None = None
    # Whether its build may read the source model itself (BuildContext.source_path), not only the ONNX: the build
    # stage's cache key then holds the source files' hashes
    reads_source: bool = False
    # What the run's source makes of its options, checked by the run's preflight before anything is written: (options,
    # BuildContext) -> None, or one line saying why these options cannot work on this source (a converter that takes
    # only one framework's models), raised as a UsageError (exit 2). None = no such rule
    usage_problem: Callable[[TargetOptions, BuildContext], str | None] | None = None

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def why_not(self, precision: str) -> str:
        """One line: why this target does not build `precision`."""
        reason = dict(self.unavailable).get(precision)
        return f"{self.name} does not build {precision}" + (f": {reason}" if reason else "") + \
            f" (it builds {', '.join(self.precisions)})"

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
