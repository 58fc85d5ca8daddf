from __future__ import annotations

import click

from convertctl.cli.common import common_options, dim_option, load_job
from convertctl.cli.run import execute
from convertctl.frontends.registry import by_name_first


def _default_opsets() -> str:
    """"pytorch 18, the dynamo exporter's minimum; paddle 13; tensorflow 17": from the front ends' records."""
    return "; ".join(f"{f.name} {f.default_opset}" + (f", {f.opset_note}" if f.opset_note else "")
                     for f in by_name_first() if f.default_opset is not None)


@click.command("export")
@click.argument("source")
@click.option("-o", "--output", type=click.Path(), help="Output folder (default: out/NAME).")
@click.option("--input", "inputs", multiple=True, metavar="NAME:DIMS[:DTYPE]",
              help="A model input, e.g. input:batch,3,224,224 (repeat per input; symbolic dims are dynamic).")
@click.option("--framework", type=click.Choice([f.name for f in by_name_first()]),
              help="Force the source framework (default: from the path).")
@click.option("--weights", type=click.Path(), help="State-dict file to load into the factory's model.")
@click.option("--opset", type=int, help=f"ONNX opset (default: {_default_opsets()}).")
@click.option("--exporter", type=click.Choice(["auto", "dynamo", "legacy"]), help="torch.onnx exporter (auto: dynamo, then legacy).")
@dim_option
@common_options
def export(source, output, inputs, framework, weights, opset, exporter, dims):
    """Export SOURCE to ONNX, check it, and verify it against the source framework.

    \b
    SOURCE is a recipe (.yaml), an ONNX file, a TorchScript file (.pt), a
    PyTorch factory 'path/to/file.py:callable' / 'package.module:callable',
    a Paddle inference model (folder, .pdmodel or .json with .pdiparams), or a
    TensorFlow model (SavedModel folder, .keras, .h5).
    Example: convertctl export models.py:build --input x:batch,3,224,224 -o out/m
    Example: convertctl export ch_PP-OCRv4_det_infer --input x:batch,3,640,640 -o out/det
    """
    overrides = {}
    if opset or exporter:
        overrides["export"] = {k: v for k, v in {"opset": opset, "exporter": exporter}.items() if v}
    recipe, sha, path = load_job(source, stages=["export", "check"], inputs=inputs, framework=framework,
                                 weights=weights, overrides=overrides, dims=dims)
    execute(recipe, sha, path, output)
