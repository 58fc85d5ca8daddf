from __future__ import annotations

import click

from convertctl.cli.common import common_options, dim_option, load_job
from convertctl.cli.run import execute


@click.command("optimize")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: out/NAME).")
@click.option("--simplifier", type=click.Choice(["onnxslim", "onnxsim"]), default=None,
              help="Graph simplifier (default onnxslim).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS[:DTYPE]", help="Override an input's shape.")
@dim_option
@common_options
def optimize(model, output, simplifier, inputs, dims):
    """Simplify MODEL (ONNX or recipe), infer shapes, and verify the result against the input model.

    A simplification that changes outputs beyond tolerance is rolled back and reported.
    """
    overrides = {"optimize": {"simplifier": simplifier}} if simplifier else {}
    recipe, sha, path = load_job(model, stages=["export", "check", "optimize"], inputs=inputs, overrides=overrides,
                                  dims=dims)
    execute(recipe, sha, path, output)
