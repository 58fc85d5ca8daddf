"""Finds the targets: every module in this package that defines `TARGET`.

Adding a target is adding one file; nothing else lists them. Target modules import their
runtime lazily, so discovering them (for `--help`, recipe validation, `convertctl targets`)
stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from convertctl.errors import UsageError

_NOT_TARGETS = {"registry", "base"}


@cache
def _discover() -> dict:
    import convertctl.targets as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_") or info.name in _NOT_TARGETS:
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        target = getattr(module, "TARGET", None)
        if target is not None:
            found[target.name] = target
    return dict(sorted(found.items()))


def all_targets():
    return list(_discover().values())


def target_names() -> list[str]:
    return list(_discover())


def get(name: str):
    targets = _discover()
    if name not in targets:
        raise UsageError(
            f"unknown target {name!r}", hint=f"known targets: {', '.join(targets)} (see `convertctl targets`)"
        )
    return targets[name]
