"""ONNX source: the model is used as is (passthrough.py copies it in; ONNX Runtime's outputs are the reference)."""

from __future__ import annotations

from pathlib import Path

from convertctl.frontends.base import Frontend, lazy, path_and_folder

export = lazy("convertctl.frontends.onnx.passthrough", "export")


def preflight(recipe) -> None:
    from convertctl.model import external_data_files, require_regular_file

    require_regular_file(recipe.source.path)
    external_data_files(recipe.source.path)  # external data outside the model's folder is refused


def source_files(recipe) -> list[Path]:
    from convertctl.model import companion_files

    return companion_files(recipe.source.path)  # the weights too: a changed .data file must not restore a stale export


def check_source(source) -> None:
    if source.path is None:
        raise ValueError("an onnx source needs 'path'")
    if source.factory:
        raise ValueError("an onnx source takes 'path' only, not 'factory'")


FRONTEND = Frontend(
    name="onnx",
    reference_name="onnxruntime (source model)",
    export=export,
    preflight=preflight,
    source_files=source_files,
    read_paths=path_and_folder,
    check_source=check_source,
    cli_source=lambda source, weights: {"framework": "onnx", "path": source},
    source_help="an .onnx file",
    claims=lambda source: source.lower().endswith(".onnx"),
    path_kind=".onnx",
    passthrough=True,
)
