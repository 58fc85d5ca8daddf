"""Finds the front ends: every package in this package that defines `FRONTEND`.

Adding a framework is adding one package; nothing else lists them. A front end's `__init__` imports only
the standard library (frontends/base.py), so discovering them (for `--help`, recipe validation) stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from convertctl.errors import UsageError


@cache
def _discover() -> dict:
    import convertctl.frontends as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg or info.name.startswith("_"):
            continue
        frontend = getattr(importlib.import_module(f"{pkg.__name__}.{info.name}"), "FRONTEND", None)
        if frontend is not None:
            found[frontend.name] = frontend
    return dict(sorted(found.items()))


def all_frontends() -> list:
    return list(_discover().values())


def names() -> list[str]:
    return list(_discover())


def get(name: str):
    frontends = _discover()
    if name not in frontends:
        raise UsageError(f"unknown framework {name!r}", hint=f"known frameworks: {', '.join(frontends)}")
    return frontends[name]


def detecting() -> list:
    """The front ends whose model is recognised from its files (and whose format is read from them)."""
    return [f for f in all_frontends() if f.detection is not None]


def by_name_first() -> list:
    """Front ends recognised by SOURCE's name or content first, then those recognised from the files: the order
    `for_source` tries them in, and the order help texts list them in."""
    return [f for f in all_frontends() if f.detection is None] + detecting()


def for_source(source: str):
    """The front end of a model given on the command line (no --framework): by its name or content, else
    from its files (a folder no framework recognises is one clear error)."""
    from convertctl.frontends.formats import detect, looks_like_model

    for frontend in all_frontends():
        if frontend.claims is not None and frontend.claims(source):
            return frontend
    if looks_like_model(source):
        return get(detect(Path(source)).framework)
    kinds = [f.source_help for f in by_name_first()]
    raise UsageError(f"cannot tell what kind of model {source!r} is",
                     hint=f"give a recipe (.yaml), {', '.join(kinds[:-1])} or {kinds[-1]}")
