"""A Paddle inference model from its files alone (paddle is not imported).

    legacy   a folder with X.pdmodel + X.pdiparams, or the .pdmodel file
    PIR      a folder with X.json + X.pdiparams (Paddle 3's inference.json), or the .json file
"""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import SourceModelError
from convertctl.frontends.base import ModelFiles

FORMATS = ("paddle_legacy", "paddle_pir")


def _pair(model: Path, fmt: str) -> ModelFiles:
    params = model.with_suffix(".pdiparams")
    if not params.is_file():
        raise SourceModelError(f"{model} has no {params.name} next to it: a Paddle inference model is the "
                               f"{model.suffix} file and its .pdiparams weights",
                               hint="copy both files, e.g. from the folder `paddle.jit.save` or `save_inference_model` wrote")
    return ModelFiles("paddle", fmt, model, params)


def _in_folder(folder: Path) -> ModelFiles | None:
    pdmodels = sorted(folder.glob("*.pdmodel"))
    jsons = [p for p in sorted(folder.glob("*.json")) if p.with_suffix(".pdiparams").is_file()]
    if len(pdmodels) + len(jsons) > 1:
        names = ", ".join(p.name for p in pdmodels + jsons)
        raise SourceModelError(f"{folder} holds more than one Paddle model ({names})",
                               hint="give the model file itself (e.g. inference.pdmodel) instead of the folder")
    if pdmodels:
        return _pair(pdmodels[0], "paddle_legacy")
    if jsons:
        return ModelFiles("paddle", "paddle_pir", jsons[0], jsons[0].with_suffix(".pdiparams"))
    if (folder / "inference.json").is_file() or list(folder.glob("*.pdiparams")):
        stem = next(iter(sorted(folder.glob("*.pdiparams"))), folder / "inference.pdiparams")
        raise SourceModelError(f"{folder} has an incomplete Paddle model: {stem.stem}.pdiparams needs "
                               f"{stem.stem}.pdmodel or {stem.stem}.json beside it (and the reverse)")
    return None


def detect(path: Path) -> ModelFiles | None:
    if path.is_dir():
        return _in_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".pdmodel":
        return _pair(path, "paddle_legacy")
    if suffix == ".pdiparams":
        for model, fmt in ((path.with_suffix(".pdmodel"), "paddle_legacy"), (path.with_suffix(".json"), "paddle_pir")):
            if model.is_file():
                return ModelFiles("paddle", fmt, model, path)
        raise SourceModelError(f"{path} is Paddle weights without the model: {path.stem}.pdmodel or {path.stem}.json "
                               "must be next to it")
    if suffix == ".json" and path.with_suffix(".pdiparams").is_file():
        return ModelFiles("paddle", "paddle_pir", path, path.with_suffix(".pdiparams"))
    if suffix == ".json":
        raise SourceModelError(f"{path} has no {path.stem}.pdiparams next to it: a Paddle 3 inference model is the "
                               ".json program and its .pdiparams weights")
    return None


def looks_like(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in (".pdmodel", ".pdiparams") or (suffix == ".json" and path.with_suffix(".pdiparams").exists())
