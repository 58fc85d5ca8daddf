"""ONNX source: passthrough. The model is copied in, validated, and its ONNX Runtime outputs are the reference."""

from __future__ import annotations

import shutil
from pathlib import Path

from convertctl.errors import SourceModelError
from convertctl.frontends.result import ExportResult
from convertctl.model import companion_files


def _one_line(exc: Exception) -> str:
    """ONNX Runtime's message, on one line (its useful part is often not the last line)."""
    text = " ".join(str(exc).split())
    return (text[:400] + " ...") if len(text) > 400 else (text or type(exc).__name__)


def export(recipe, samples_path: Path, workdir: Path, chunk: int | None = None) -> ExportResult:
    from convertctl.data.samples import load_feeds
    from convertctl.targets.onnxruntime import run_session, session

    src = recipe.source.path
    files = companion_files(src)  # raises a clear error for a missing or corrupt file
    for f in files[1:]:
        if not f.is_file():
            raise SourceModelError(f"{src} references external data {f.name}, which is missing next to it")
        shutil.copyfile(f, workdir / f.name)
    dst = workdir / "model.onnx"
    shutil.copyfile(src, dst)
    try:
        sess = session(dst)
    except Exception as exc:
        raise SourceModelError(f"ONNX Runtime cannot load {src}: {_one_line(exc)}") from None
    feeds = load_feeds(samples_path)
    try:
        reference = run_session(sess, feeds, chunk)
    except Exception as exc:
        shapes = ", ".join(f"{k}: {list(v.shape)} {v.dtype}" for k, v in feeds.items())
        raise SourceModelError(f"the model rejected the sample inputs ({shapes}): {_one_line(exc)}",
                               hint="check inputs[].shape/dtype and dims in the recipe") from None
    return ExportResult(
        onnx=dst,
        reference=reference,
        reference_name="onnxruntime (source model)",
        details={"source": str(src), "external_data": len(files) > 1},
        findings=[f"ONNX source used as is (copied from {src.name})"],
        verify_export=False,
    )
