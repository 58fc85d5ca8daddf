"""TensorRT engines for NVIDIA GPUs (TensorRT 10.x and 11.x), strongly typed from Q/DQ and FP16 ONNX.

Every build writes the build kit first (kit.py): the ONNX, the optimization profile and the
trtexec commands for both TensorRT majors. Where `tensorrt` is installed the engine is then built with
TensorRT's Python API (builder.py) and loaded back for verification (runner.py). Where it is not,
the pipeline calls `kit` alone and records "skipped: tensorrt not installed". Nothing here imports
tensorrt: builder.py and runner.py do, inside the functions that need it.
"""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.targets.base import BuildContext, BuiltArtifact, EmissionReview, Runner, Target
from convertctl.targets.tensorrt.options import TensorRTOptions


def _kit(onnx_path: Path, spec: TensorRTOptions, out_dir: Path, ctx: BuildContext | None) -> BuiltArtifact:
    return _write_kit(onnx_path, spec, out_dir, ctx)[0]


def _write_kit(onnx_path: Path, spec: TensorRTOptions, out_dir: Path, ctx: BuildContext | None):
    """The build kit, and the profiles it was written with (the engine build uses the same ones)."""
    from convertctl.model import describe
    from convertctl.targets.tensorrt.kit import check_qdq_for_tensorrt, graph_precision, kit_recipe, write_kit
    from convertctl.targets.tensorrt.profiles import compute_profiles

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
    from convertctl.targets.tensorrt.builder import build_engine

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
    from convertctl.targets.tensorrt.runner import EngineRunner

    runner = EngineRunner(out_dir, spec.device)
    onnx_order = [o.name for o in describe(out_dir / "model.onnx").outputs]
    index = [runner.outputs.index(name) for name in onnx_order if name in runner.outputs]

    def run(feeds):
        outputs = runner.run(feeds)
        return [outputs[i] for i in index]  # the ONNX's output order, which every comparison uses

    return Runner(run=run, output_names=[runner.outputs[i] for i in index],
                  effective={"tensorrt": str(runner.trt.__version__), "gpu": runner.gpu["name"],
                             "compute_capability": runner.gpu["compute_capability"]})


def _check(facts):
    """The judge of `convertctl check`: the support table, and TensorRT's own parser where it is installed."""
    from convertctl.targets.tensorrt.check import check_tensorrt

    return check_tensorrt(facts)


def _emission(spec: TensorRTOptions) -> str:
    """INT8 engines are built from the symmetric Q/DQ emission; FP16 from the FP16 ONNX when strongly typed."""
    return {"fp32": "fp32", "fp16": "fp16" if spec.strongly_typed else "fp32", "int8": "qdq_s8"}[spec.precision]


def _review_emission(name: str, onnx_path: Path) -> EmissionReview | None:
    """TensorRT's Q/DQ rules (qdq_validator.py) on the emission its INT8 engines are built from, checked by the
    quantize stage whether or not TensorRT is installed."""
    if name != "qdq_s8":
        return None
    from convertctl.targets.tensorrt.qdq_validator import format_findings, validate_qdq

    report = validate_qdq(onnx_path)
    verdict = "passes" if report.ok else "BREAKS"
    return EmissionReview(key="tensorrt_rules", details=report.to_dict(),
                          finding=f"{name} {verdict} TensorRT's Q/DQ rules" +
                                  "".join(f"; {line}" for line in format_findings(report)[:5]))


def _kit_note(artifact_id: str, settings: dict) -> str:
    """What the kit written where TensorRT is absent holds (settings: the kit's, from _write_kit)."""
    return (f"; no engine built: build kit in targets/{artifact_id}/ (trtexec commands for "
            f"{', '.join(settings.get('trtexec', {})) or 'no TensorRT version'}, recipe.yaml, kit.json)")


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
    emission=_emission,
    kit=_kit,
    title="TensorRT",
    check=_check,
    # cuda-bindings / cuda-python: the CUDA binding the builder and runner use for device memory
    environment=("tensorrt", "cuda-bindings", "cuda-python"),
    review_emission=_review_emission,
    kit_note=_kit_note,
)
