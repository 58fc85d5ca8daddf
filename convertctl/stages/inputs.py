"""The inputs a run feeds and a size for every dynamic dim, decided once before the stages run.

The recipe's inputs, or the model's own: an ONNX source's are read from the file, a Paddle/TensorFlow model's
from its signature (a short child process). Dims without a size stop the run (exit 2) before any work. The
result is a new recipe value (its `dims` resolved, its `inputs` filled when read from a signature): the recipe
the user gave is never changed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace


def onnx_inputs(path: Path):
    """(the ONNX model's inputs as model.describe() gives them, its metadata_props), from one read of the file."""
    from convertctl.model import load_proto, tensor_info

    proto = load_proto(path)
    inits = {i.name for i in proto.graph.initializer}
    io = SimpleNamespace(inputs=[tensor_info(i) for i in proto.graph.input if i.name not in inits])
    return io, {p.key: p.value for p in proto.metadata_props}


def model_input_spec(declared: dict):
    """An InputSpec from what a model declares; a shape the recipe schema refuses (a 0 or negative dim) is the
    model's problem, said as such, with the way around it."""
    from pydantic import ValidationError

    from convertctl.errors import SourceModelError
    from convertctl.recipe import InputSpec, format_validation_error

    try:
        return InputSpec(**declared)
    except ValidationError as err:
        raise SourceModelError(
            f"the model declares input {declared.get('name')!r} as {declared.get('shape')}, which cannot be fed: "
            + format_validation_error(err).replace("\n", "; "),
            hint="declare the input's shape yourself: `inputs` in a recipe, or --input NAME:DIM,DIM,...") from None


def needs_signature(recipe) -> bool:
    """True when the inputs can only be read from the model in a child process (after the output folder opens)."""
    from convertctl.frontends.registry import get

    return not recipe.inputs and get(recipe.source.framework).describe_inputs is not None


def resolve_inputs(recipe, reporter, workdir: Path | None = None, onnx_io=None):
    """(the recipe with its dims resolved, the input specs to feed, notes). `workdir`: where a signature-reading
    child may write (the export folder); `onnx_io`: an ONNX source's inputs when the preflight read them."""
    from convertctl.data.inputs import inputs_from_model, resolve_dims
    from convertctl.frontends.registry import get

    notes: list[str] = []
    source_io, metadata = None, {}
    if get(recipe.source.framework).passthrough:  # an ONNX source declares its inputs (and maybe sizes) itself
        source_io, metadata = onnx_io or onnx_inputs(recipe.source.path)
    if needs_signature(recipe):
        recipe, notes = _from_signature(recipe, reporter, workdir)
    inputs = list(recipe.inputs)
    if not inputs and source_io is not None:  # an ONNX source without `inputs`: the model's own
        declared, more = inputs_from_model(source_io.inputs)
        inputs = [model_input_spec(d) for d in declared]
        notes += more
    dims, more = resolve_dims(recipe, inputs, metadata)
    return recipe.model_copy(update={"dims": dims}), tuple(inputs), notes + more


def _from_signature(recipe, reporter, workdir: Path):
    """A Paddle/TF recipe without `inputs` takes them from the model (a short child process of its own)."""
    from convertctl.data.inputs import infer_batch_axes
    from convertctl.frontends.registry import get

    reporter.start("export", f"reading the {recipe.source.framework} model's inputs")
    declared = get(recipe.source.framework).describe_inputs(recipe, workdir)
    notes = infer_batch_axes(declared)
    specs = [model_input_spec(d) for d in declared]
    first = ("inputs read from the model: " + "; ".join(f"{s.name} {s.shape} {s.dtype}" for s in specs)
             + " (set `inputs` in a recipe to choose shapes and ranges)")
    return recipe.model_copy(update={"inputs": specs}), [first, *notes]
