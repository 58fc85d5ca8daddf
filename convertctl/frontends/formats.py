"""Which framework and on-disk format a model path is, from the files alone (no framework is imported).

Each framework recognises its own formats (its package's Detection, e.g. paddle/files.py); this module asks
them all and words the failure when none does.
"""

from __future__ import annotations

from pathlib import Path

from convertctl.errors import SourceModelError
from convertctl.frontends.base import ModelFiles


def detect(path: Path, forced: str | None = None) -> ModelFiles:
    """The framework and format of `path`; `forced` (a recipe's source.format) skips the guess, not the checks."""
    path = Path(path)
    if not path.exists():
        raise SourceModelError(f"model not found: {path}")
    found = _detect(path)
    if forced and forced != "auto" and forced != found.format:
        raise SourceModelError(f"source.format is {forced!r} but {path} is {found.format!r}",
                               hint="remove source.format (auto) or point source.path at a model of that format")
    return found


def _detect(path: Path) -> ModelFiles:
    from convertctl.frontends.registry import by_name_first, detecting

    frontends = detecting()
    found = [f for f in (fe.detection.detect(path) for fe in frontends) if f is not None]
    if len(found) > 1:  # a folder holding two frameworks' models: the folder alone does not say which
        what = " and ".join(f"a {f.framework} model ({f.format})" for f in found)
        raise SourceModelError(f"{path} holds {what}", hint="give the model's own file instead of the folder")
    if found:
        return found[0]
    if path.is_dir():
        kinds = [f.path_kind for f in frontends] + [f.path_kind for f in by_name_first()
                                                     if f.detection is None and f.path_kind]
        raise SourceModelError(f"{path} is neither " + " nor ".join(f.detection.folder_kind for f in frontends),
                               hint=f"give the model's folder or file: {', '.join(kinds)}")
    raise SourceModelError(f"cannot tell which framework {path} is for",
                           hint="; ".join(f.detection.files_hint for f in frontends))


def looks_like_model(source: str) -> bool:
    """Whether a command-line SOURCE is a model path some framework recognises from its files (a folder, or a
    file by its name), so `export` can take it."""
    from convertctl.frontends.registry import detecting

    path = Path(source)
    return path.is_dir() or any(f.detection.looks_like(path) for f in detecting())
