"""TensorRT engines for NVIDIA GPUs (TensorRT 10.x and 11.x), strongly typed from Q/DQ and FP16 ONNX.

Every build writes the build kit first (convertctl/trt/kit.py): the ONNX, the optimization profile and the
trtexec commands for both TensorRT majors. Where `tensorrt` is installed the engine is then built with
TensorRT's Python API (trt/builder.py) and loaded back for verification (trt/runner.py). Where it is not,
the pipeline calls `kit` alone and records "skipped: tensorrt not installed". Nothing here imports
tensorrt: trt/builder.py and trt/runner.py do, inside the functions that need it.
"""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.targets.base import BuildContext, BuiltArtifact, Runner, Target
from convertctl.trt.options import TensorRTOptions


def _kit(onnx_path: Path, spec: TensorRTOptions, out_dir: Path, ctx: BuildContext | None) -> BuiltArtifact:
    return _write_kit(onnx_path, spec, out_dir, ctx)[0]


def _write_kit(onnx_path: Path, spec: TensorRTOptions, out_dir: Path, ctx: BuildContext | None):
    """The build kit, and the profiles it was written with (the engine build uses the same ones)."""
    from convertctl.model import describe
    from convertctl.trt.kit import check_qdq_for_tensorrt, graph_precision, kit_recipe, write_kit
    from convertctl.trt.profiles import compute_profiles

    ctx = ctx or BuildContext()
    precision = graph_precision(onnx_path)
    qdq_rules = check_qdq_for_tensorrt(onnx_path) if precision[1] else None  # before anything is written
    profiles = compute_profiles(describe(onnx_path).inputs, ctx.inputs, ctx.dims, ctx.explicit_dims)
    files, kit = write_kit(onnx_path, spec, profiles, out_dir, precision, qdq_rules)
    import yaml

    recipe = kit_recipe(f"{ctx.name}-{spec.id}", spec, profiles, ctx.tolerance, ctx.inputs)
    _validate_kit_recipe(recipe)
    (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    files.append(Path("recipe.yaml"))
    settings = {"kit": "kit.json", "graph_precision": precision[0], "profiles": profiles.to_dict(),
                "trtexec": {v: c["line"] for v, c in kit["trtexec"].items()},
                "not_possible": kit["not_possible"]}
    return BuiltArtifact(files=files, settings=settings), profiles


def _validate_kit_recipe(recipe: dict) -> None:
    """The kit's recipe.yaml must be one `convertctl recipe validate` accepts: checked before it is written."""
    from pydantic import ValidationError

    from convertctl.errors import ConvertctlError
    from convertctl.recipe import Recipe, format_validation_error

    try:
        Recipe.model_validate(recipe)
    except ValidationError as err:  # convertctl wrote something its own schema refuses: a bug, said as one
        raise ConvertctlError("the build kit's recipe.yaml would not be a valid recipe: "
                              + format_validation_error(err).replace("\n", "; ")) from None


def _build(onnx_path: Path, spec: TensorRTOptions, out_dir: Path, ctx: BuildContext | None = None) -> BuiltArtifact:
    from convertctl.paths import default_cache_dir
    from convertctl.trt.builder import build_engine

    ctx = ctx or BuildContext()
    kit, profiles = _write_kit(onnx_path, spec, out_dir, ctx)
    meta = build_engine(out_dir / "model.onnx", spec, profiles, out_dir, ctx.cache_dir or default_cache_dir(),
                        kit.settings["graph_precision"])
    (out_dir / "engine.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    files = kit.files + [Path(f) for f in ("model.engine", "engine.json", "layers.json", "timing.cache", "build.log")]
    settings = {**kit.settings, "tensorrt": meta["tensorrt"]["version"], "gpu": meta["gpu"],
                "layer_output_precisions": meta["precision"]["layer_output_precisions"],
                "timing_cache": meta["build_options"]["timing_cache"], "build_seconds": meta["build_seconds"]}
    return BuiltArtifact(files=files, settings=settings)


def _open(out_dir: Path, spec: TensorRTOptions, settings: dict) -> Runner:
    from convertctl.model import describe
    from convertctl.trt.runner import EngineRunner

    runner = EngineRunner(out_dir, spec.device)
    onnx_order = [o.name for o in describe(out_dir / "model.onnx").outputs]
    index = [runner.outputs.index(name) for name in onnx_order if name in runner.outputs]

    def run(feeds):
        outputs = runner.run(feeds)
        return [outputs[i] for i in index]  # the ONNX's output order, which every comparison uses

    return Runner(run=run, output_names=[runner.outputs[i] for i in index],
                  effective={"tensorrt": str(runner.trt.__version__), "gpu": runner.gpu["name"],
                             "compute_capability": runner.gpu["compute_capability"]})


TARGET = Target(
    name="tensorrt",
    summary="TensorRT engine for NVIDIA GPUs (TensorRT 10.x/11.x; a build kit where TensorRT is absent)",
    module="tensorrt",
    # `pip install tensorrt` is a meta package; the module itself comes from tensorrt-cu12/-cu13 (and their
    # *_bindings), which is all there is when those are installed directly
    distribution=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"),
    extra="tensorrt",
    precisions=("fp32", "fp16", "int8"),
    options_model=TensorRTOptions,
    build=_build,
    open=_open,
    emission=lambda spec: {"fp32": "fp32", "fp16": "fp16" if spec.strongly_typed else "fp32",
                           "int8": "qdq_s8"}[spec.precision],
    kit=_kit,
)
