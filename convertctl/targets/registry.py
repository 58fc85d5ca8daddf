"""Finds the targets: every package in this folder is one, its `target.py` defines `TARGET`.

Adding a target is adding one package (and its extra in pyproject.toml); nothing else lists them.
Target packages import their runtime lazily, so discovering them (for `--help`, recipe validation,
`convertctl targets`) stays cheap; `target_names()` does not even import them.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from convertctl.errors import UsageError


def _packages() -> list[str]:
    import convertctl.targets as pkg

    return sorted(info.name for info in pkgutil.iter_modules(pkg.__path__)
                  if info.ispkg and not info.name.startswith("_"))


@cache
def _discover() -> dict:
    found = {}
    for name in _packages():
        target = importlib.import_module(f"{__package__}.{name}.target").TARGET
        if target.name != name:  # the package's name is the target's name: target_names() relies on it
            raise RuntimeError(f"convertctl/targets/{name}/ defines the target {target.name!r}")
        found[name] = target
    return found


def all_targets():
    return list(_discover().values())


def target_names() -> list[str]:
    """The targets' names, from the package names alone (for help texts: imports no target)."""
    return _packages()


def get(name: str):
    targets = _discover()
    if name not in targets:
        raise UsageError(
            f"unknown target {name!r}", hint=f"known targets: {', '.join(targets)} (see `convertctl targets`)"
        )
    return targets[name]
