"""ONNX source: passthrough. The model is copied in, validated, and its ONNX Runtime outputs are the reference."""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import SourceModelError
from convertctl.frontends.result import ExportResult
from convertctl.model import copy_model


def export(recipe, samples_path: Path, workdir: Path, chunk: int | None = None) -> ExportResult:
    from convertctl.data.samples import load_feeds
    from convertctl.onnx_session import load_error, run_session, session

    src = recipe.source.path
    # the model and its external data, each file checked (inside the model's folder, complete) before any copy
    files = copy_model(src, workdir)
    dst = workdir / "model.onnx"
    renamed = {}
    if recipe.inputs:  # the recipe names the dynamic dims: the model in flight carries its names (check, kits)
        from convertctl.frontends.dims import name_dynamic_dims

        renamed = name_dynamic_dims(dst, recipe.inputs)
    try:
        sess = session(dst)
    except Exception as exc:
        raise SourceModelError(f"ONNX Runtime cannot load {src}: {load_error(exc)}") from None
    feeds = load_feeds(samples_path)
    try:
        reference = run_session(sess, feeds, chunk)
    except Exception as exc:
        shapes = ", ".join(f"{k}: {list(v.shape)} {v.dtype}" for k, v in feeds.items())
        hint = ("check inputs[].shape, dtype, batch_axis and value, and dims, in the recipe" if recipe.inputs else
                "the inputs were read from the model, with every input batched along axis 0 and random values in "
                "[0, 1]: declare them in a recipe (inputs[].shape, dtype, batch_axis, value or range; see "
                "docs/recipe.md#inputs), or set dims with --dim")
        raise SourceModelError(f"the model rejected the sample inputs ({shapes}): {load_error(exc)}",
                               hint=hint) from None
    findings = [f"ONNX source used as is (copied from {src.name})"]
    if renamed:
        findings.append("dynamic dims named as the recipe's inputs: " + ", ".join(f"{a or '(unnamed)'} -> {b}"
                                                                                  for a, b in renamed.items()))
    return ExportResult(
        onnx=dst,
        reference=reference,
        reference_name="onnxruntime (source model)",
        details={"source": str(src), "external_data": len(files) > 1},
        findings=findings,
        verify_export=False,
    )
