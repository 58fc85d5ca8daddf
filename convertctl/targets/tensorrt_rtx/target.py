"""TensorRT for RTX engines (NVIDIA's TensorRT-RTX 1.x, module `tensorrt_rtx`), built ahead of time on any machine.

The engine is built from the fp32, FP16-typed or symmetric Q/DQ ONNX with the builder shared with the `tensorrt`
target (builder.py says what differs). Building needs no GPU; loading and running the engine needs a CUDA driver
and a GPU of compute capability 8.0, 8.6, 8.9 or 12.x. Where there is none, the artifact is built but not run:
`can_run` says why, and the run records it as "skipped", never "ok". Nothing here imports tensorrt_rtx at module
level.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from convertctl.targets.base import BuildContext, BuiltArtifact, Runner, Target
from convertctl.targets.tensorrt_rtx.options import TensorRTRTXOptions


def _build(onnx_path: Path, spec: TensorRTRTXOptions, out_dir: Path, ctx: BuildContext | None = None) -> BuiltArtifact:
    from convertctl.model import copy_model, describe
    from convertctl.targets.tensorrt.kit import check_qdq_for_tensorrt, graph_precision, name_open_dims
    from convertctl.targets.tensorrt.profiles import compute_profiles
    from convertctl.targets.tensorrt_rtx.builder import build_engine

    ctx = ctx or BuildContext()
    precision = graph_precision(onnx_path)
    if precision[1]:  # the same Q/DQ rules as TensorRT (symmetric INT8, per-channel weights): refused before the build
        check_qdq_for_tensorrt(onnx_path)
    profiles = compute_profiles(describe(onnx_path).inputs, ctx.inputs, ctx.dims, ctx.explicit_dims)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="convertctl-rtx-") as scratch:
        # the profile's dim names on a copy, as in a tensorrt kit: the parser takes equal dim names for one dim,
        # so PP-OCR's `x [-1, 3, ?, ?]` at 48x192 is otherwise refused ("different constant values")
        copy_model(onnx_path, Path(scratch))
        named = Path(scratch) / "model.onnx"
        renamed = name_open_dims(named, profiles)
        meta = build_engine(named, spec, profiles, out_dir, precision[0])
    meta["dims_named"] = renamed
    (out_dir / "engine.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    settings = {"tensorrt_rtx": meta["tensorrt_rtx"]["version"], "graph_precision": precision[0],
                "compute_capabilities": meta["compute_capabilities"]["targeted"], "profiles": profiles.to_dict(),
                "layer_count": meta["layer_count"], "layer_output_types": meta["precision"]["layer_output_types"],
                "build_seconds": meta["build_seconds"], "engine_bytes": meta["engine_bytes"],
                "engine_sha256": meta["engine_sha256"]}
    return BuiltArtifact(files=[Path("model.engine"), Path("engine.json"), Path("build.log")], settings=settings)


def _open(out_dir: Path, spec: TensorRTRTXOptions, settings: dict) -> Runner:
    from convertctl.targets.tensorrt_rtx.runner import open_engine

    runner = open_engine(out_dir, spec.device)
    order = [t["name"] for t in runner.meta["io_tensors"] if t["mode"] == "output"]  # the ONNX's output order
    index = [runner.outputs.index(name) for name in order if name in runner.outputs]

    def run(feeds):
        outputs = runner.run(feeds)
        return [outputs[i] for i in index]

    return Runner(run=run, output_names=[runner.outputs[i] for i in index],
                  effective={"tensorrt_rtx": str(runner.trt.__version__), "gpu": runner.gpu["name"],
                             "compute_capability": runner.gpu["compute_capability"]})


def _can_run(spec: TensorRTRTXOptions) -> str | None:
    from convertctl.targets.tensorrt_rtx.builder import why_not_run

    return why_not_run(spec)


def _test_build_kit(folder: Path, settings: dict, spec):
    from convertctl.targets.tensorrt_rtx.kit_test import test_build_kit

    return test_build_kit(folder, settings, spec)


def _check(facts):
    """The judge of `convertctl check`: TensorRT-RTX's own ONNX parser, per node (check.py)."""
    from convertctl.targets.tensorrt_rtx.check import check_tensorrt_rtx

    return check_tensorrt_rtx(facts)


def _emission(spec: TensorRTRTXOptions) -> str:
    """INT8 from the symmetric Q/DQ emission, FP16 from the FP16-typed ONNX: the network is strongly typed."""
    return {"fp32": "fp32", "fp16": "fp16", "int8": "qdq_s8"}[spec.precision]


TARGET = Target(
    name="tensorrt_rtx",
    summary="TensorRT for RTX engine (TensorRT-RTX 1.x; built on any machine, run on an RTX/Ampere+ GPU)",
    module="tensorrt_rtx",
    # tensorrt-rtx-cu13 (what convertctl's extra installs) or -cu12 (for drivers older than r580), or the bindings
    distribution=("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "tensorrt-rtx-cu13-bindings", "tensorrt-rtx-cu12-bindings"),
    extra="tensorrt-rtx",
    precisions=("fp32", "fp16", "int8"),
    options_model=TensorRTRTXOptions,
    build=_build,
    open=_open,
    emission=_emission,
    title="TensorRT-RTX",
    # cuda-bindings: the CUDA binding the runner uses for device memory (and the GPU query of can_run)
    environment=("tensorrt-rtx-cu13", "cuda-bindings"),
    can_run=_can_run,
    check=_check,
    shares=("tensorrt",),  # the builder, profiles, Q/DQ rules and runner of the tensorrt target's package
    # where TensorRT itself is missing, every tensorrt build kit is parsed and built with TensorRT-RTX (kit_test.py)
    test_builds_kits_of=("tensorrt",),
    test_build_kit=_test_build_kit,
)
