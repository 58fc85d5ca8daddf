"""The `trtexec` command line equivalent to a convertctl TensorRT build, for TensorRT 10.x and for 11.x.

The two differ (samples/common/sampleOptions.cpp of NVIDIA/TensorRT 10.16 and 11.1):
10.x needs --stronglyTyped to build the types the ONNX has; in 11.x that is the only mode and the flag is a
no-op, and --fp16/--int8/--best/--calib no longer exist. Everything else used here is common to both.
"""

from __future__ import annotations

import shlex

from convertctl.errors import UsageError
from convertctl.targets.tensorrt.profiles import Profiles, shape_text
from convertctl.targets.tensorrt.version import explicit_strong_typing, weak_typing_available

_HARDWARE_LEVELS = {"none": None, "ampere+": "ampere+", "same_compute_capability": "sameComputeCapability"}


def _shape_list(profiles: Profiles, which: str) -> str:
    specs = []
    for p in profiles.shaped:  # every input the ONNX leaves open, each named
        if "," in p.name or "'" in p.name:
            raise UsageError(f"input name {p.name!r} cannot be written in trtexec's shape flags (',' and \"'\" "
                             "separate entries there)", hint="rename the input, or build with convertctl itself")
        # trtexec splits name and dims on the last ':'; quoting makes a name with ':' unambiguous to a reader
        name = f"'{p.name}'" if ":" in p.name else p.name
        specs.append(f"{name}:{shape_text(getattr(p, which))}")
    return ",".join(specs)


def weak_typing_problem(major: int, spec) -> str | None:
    """Why a weakly typed build cannot be done with this TensorRT major, else None."""
    if spec.strongly_typed or weak_typing_available(major):
        return None
    what = {"int8": "int8 from the symmetric Q/DQ ONNX (precision: int8 with a calibration section)",
            "fp16": "fp16 from the FP16-typed ONNX (precision: fp16)",
            "fp32": "the FP32 ONNX"}[spec.precision]
    return (f"TensorRT {major}.x has no weakly typed networks (strongly_typed: false) and no --fp16/--int8 "
            f"flags: build {what} with strongly_typed: true")


def weak_precision_flags(precision: str, graph_int8: bool) -> list[str]:
    """TensorRT 10.x builder precision flags of a weakly typed build: FP16 for fp16; a Q/DQ graph needs INT8, and
    FP16 lets the layers between Q/DQ pairs run in half precision (TensorRT's "best" for explicit quantization)."""
    flags = []
    if precision in ("fp16", "int8") or graph_int8:
        flags.append("FP16")
    if precision == "int8" or graph_int8:
        flags.append("INT8")
    return flags


def trtexec_argv(major: int, spec, profiles: Profiles, onnx: str = "model.onnx", engine: str = "model.engine",
                 timing_cache: str = "timing.cache", layer_info: str = "layers.json",
                 graph_int8: bool = False) -> list[str]:
    """The argv of the equivalent trtexec build for TensorRT `major` (10 or 11); UsageError when impossible."""
    problem = weak_typing_problem(major, spec)
    if problem:
        raise UsageError(problem)
    argv = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    if spec.strongly_typed:
        if explicit_strong_typing(major):
            argv.append("--stronglyTyped")
    else:  # 10.x weak typing: TensorRT may pick lower precisions per layer; Q/DQ layers need --int8
        argv += [f"--{flag.lower()}" for flag in weak_precision_flags(spec.precision, graph_int8)]
    if not spec.tf32:
        argv.append("--noTF32")
    if profiles.shaped:
        argv += [f"--minShapes={_shape_list(profiles, 'min')}", f"--optShapes={_shape_list(profiles, 'opt')}",
                 f"--maxShapes={_shape_list(profiles, 'max')}"]
    if spec.workspace_mib:
        argv.append(f"--memPoolSize=workspace:{spec.workspace_mib}M")
    argv.append(f"--builderOptimizationLevel={spec.builder_optimization_level}")
    level = _HARDWARE_LEVELS[spec.hardware_compatibility_level]
    if level:
        argv.append(f"--hardwareCompatibilityLevel={level}")
    if spec.version_compatible:
        argv.append("--versionCompatible")
    argv += [f"--timingCacheFile={timing_cache}", "--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}",
             "--skipInference"]
    if spec.device:
        argv.append(f"--device={spec.device}")
    return argv


def bench_argv(profiles: Profiles, engine: str = "model.engine") -> list[str]:
    """Time the engine with trtexec at the profile's opt shapes (the same command on 10.x and 11.x)."""
    argv = ["trtexec", f"--loadEngine={engine}"]
    if profiles.shaped:
        argv.append(f"--shapes={_shape_list(profiles, 'opt')}")
    return argv


def shell_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
