from __future__ import annotations

from pathlib import Path

import click

from convertctl.cli import with_targets
from convertctl.cli.common import (
    common_options,
    dim_option,
    is_recipe,
    latency_overrides,
    load_job,
    no_latency_option,
)
from convertctl.cli.run import execute
from convertctl.errors import UsageError


@click.command("quantize")
@click.argument("model")
@click.option("--int8", "int8", is_flag=True, help="Build INT8 artifacts from one calibration.")
@click.option("--fp16", "fp16", is_flag=True, help="Build FP16 artifacts.")
@click.option("--calib", type=click.Path(), help="Calibration data: image folder (class sub-folders give labels), "
                                                 ".npy/.npz file, or a folder of them.")
@click.option("--recipe", "recipe_file", type=click.Path(), help="Take preprocessing, calibration settings, inputs, "
                                                                  "gates and exclusions from this recipe.")
@click.option("-t", "--target", "targets", multiple=True, metavar="NAME",
              help=with_targets("Targets to build (default: every installed one of {targets})."))
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), help="Calibration method.")
@click.option("--num-samples", type=int, help="Calibration samples.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS[:DTYPE]", help="Override an input's shape.")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: the recipe's `output`, else out/NAME).")
@dim_option
@no_latency_option
@common_options
def quantize(model, int8, fp16, calib, recipe_file, targets, method, num_samples, inputs, output, dims, no_latency):
    """Quantize MODEL (ONNX, or a recipe) to INT8 and/or FP16 for every target, from one calibration table.

    \b
    Every artifact is run on held-out samples and compared with FP32 (cosine, SQNR, top-1
    agreement; accuracy when the data is labelled) and timed in a process of its own (p50/p90/p99,
    speed-up vs the FP32 ONNX); the quantize stage ranks layers by the error their quantization
    introduces and suggests `quantize.exclude_nodes`.
    Example: convertctl quantize model.onnx --int8 --calib calib_data/images --recipe recipes/x.yaml -o out/q
    """
    from convertctl.targets import registry

    if not (int8 or fp16):
        raise UsageError("say which precision: --int8 and/or --fp16")
    names = list(targets) or [t.name for t in registry.all_targets() if t.installed()]
    precisions = ["fp32"] + (["int8"] if int8 else []) + (["fp16"] if fp16 else [])
    specs = []
    for name in names:
        target = registry.get(name)
        missing = [p for p in precisions if p not in target.precisions]
        if missing and targets:  # asked for by name: never a silent FP32-only build
            raise UsageError(target.why_not(missing[0]), hint=f"drop -t {name}, or ask only for what it builds")
        specs += [{"runtime": name, "precision": p} for p in precisions if p in target.precisions]
    overrides: dict = {"targets": specs, **latency_overrides(no_latency)}
    base = recipe_file or (model if is_recipe(model) else None)
    calibration = {}
    if base:
        from convertctl.recipe import load_recipe

        loaded, _ = load_recipe(Path(base))
        if loaded.calibration:
            calibration = loaded.calibration.model_dump(mode="json", exclude_none=True)
        if not calibration.get("preprocess"):
            calibration["preprocess"] = loaded.samples.preprocess.model_dump(mode="json")
    if calib:
        calibration["data"] = str(Path(calib).resolve())
    if method:
        calibration["method"] = method
    if num_samples:
        calibration["num_samples"] = num_samples
    if int8 and not calibration.get("data"):
        raise UsageError("--int8 needs calibration data", hint="add --calib PATH (or a recipe with calibration.data)")
    if calibration.get("data"):
        overrides["calibration"] = calibration
    if recipe_file and not is_recipe(model):
        recipe, sha, path = _model_with_recipe(model, recipe_file, inputs, overrides, dims)
    else:
        recipe, sha, path = load_job(model, stages=["export", "check", "optimize", "build"], inputs=inputs,
                                     overrides=overrides, dims=dims)
    execute(recipe, sha, path, output)


def _model_with_recipe(model: str, recipe_file: str, inputs, overrides, dims=()):
    """A model quantized with a recipe's settings: the recipe, with its source swapped for MODEL (any source
    `export` takes: ONNX, TorchScript, Keras, SavedModel, Paddle)."""
    import hashlib
    import json

    from convertctl.cli.common import (
        check_dim_names,
        dim_overrides,
        drop_unused_dims,
        merge_overrides,
        override_inputs,
        parse_input,
        recipe_data,
        source_recipe,
    )
    from convertctl.recipe import load_recipe, parse_recipe

    loaded, _ = load_recipe(Path(recipe_file))
    data = recipe_data(loaded)  # keeps what the recipe left unset (dims without a range)
    file, _, call = model.rpartition(":")
    if Path(model).exists():  # paths absolute: the recipe's own paths are relative to its folder, MODEL's to here
        model = str(Path(model).resolve())
    elif file and Path(file).is_file():
        model = f"{Path(file).resolve()}:{call}"
    given, _ = source_recipe(model, (), None, None)
    data["source"] = given["source"]  # whatever MODEL is (ONNX, TorchScript, Keras, SavedModel, Paddle)
    data["stages"] = ["export", "check", "optimize", "build"]
    data = merge_overrides(data, overrides)
    if inputs:
        data["inputs"] = override_inputs(data["inputs"], [parse_input(i) for i in inputs])
        drop_unused_dims(data)
    dim_patch = dim_overrides(dims)
    check_dim_names(data, dim_patch)
    data = merge_overrides(data, dim_patch)
    recipe = parse_recipe(data, Path(recipe_file).resolve().parent, origin=f"{recipe_file} with {model}")
    sha = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return recipe, sha, Path(recipe_file)
