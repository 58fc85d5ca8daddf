from __future__ import annotations

import click

from convertctl.cli import with_targets
from convertctl.cli.common import (
    cache_options,
    common_options,
    dim_option,
    is_recipe,
    latency_overrides,
    load_job,
    no_latency_option,
)
from convertctl.cli.run import execute
from convertctl.errors import UsageError


@click.command("build")
@click.argument("model")
@click.option("-t", "--target", "targets", multiple=True, metavar="NAME",
              help=with_targets("Target runtime: {targets} (repeatable; see `convertctl targets`)."))
@click.option("-p", "--precision", "precisions", multiple=True, type=click.Choice(["fp32", "fp16", "int8"]),
              help="Precision(s) to build (default fp32; repeatable; int8 needs calibration: see `quantize`).")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: out/NAME).")
@click.option("--no-optimize", is_flag=True, help="Build from the model as is, without simplification.")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS[:DTYPE]", help="Override an input's shape.")
@dim_option
@no_latency_option
@cache_options
@common_options
def build(model, targets, precisions, output, no_optimize, inputs, dims, no_latency):
    """Build MODEL (ONNX or recipe) for each --target; verify and time every artifact in its runtime.

    Example: convertctl build model.onnx --target onnxruntime -o out/m (`convertctl targets` lists the targets)
    """
    from convertctl.targets import registry

    overrides = latency_overrides(no_latency)
    if targets:
        for name in targets:
            target = registry.get(name)  # unknown names: exit 2 with the list of known targets
            for p in precisions or ("fp32",):
                if p not in target.precisions:
                    raise UsageError(target.why_not(p))
        overrides["targets"] = [{"runtime": t, "precision": p} for t in targets for p in (precisions or ("fp32",))]
    elif precisions:
        raise UsageError("--precision needs --target", hint="e.g. --target onnxruntime --precision fp16")
    elif not is_recipe(model):
        *others, last = [f"--target {n}" for n in registry.target_names()]
        raise UsageError("no target given", hint=f"add {', '.join(others)} and/or {last}")
    stages = ["export", "check", "build"] if no_optimize else ["export", "check", "optimize", "build"]
    recipe, sha, path = load_job(model, stages=stages, inputs=inputs, overrides=overrides, dims=dims)
    execute(recipe, sha, path, output)
