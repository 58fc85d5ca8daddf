"""Which Python interpreter runs a framework's export child.

Frameworks do not share an environment when their stacks conflict: paddle2onnx 2.x pins onnx<=1.17, and the
legacy Paddle 2.x models (PP-OCR) only convert with paddlepaddle 2.6.2 + paddle2onnx 1.3.1 + numpy<2
(paddlepaddle 3.3.1 + paddle2onnx 2.1.0 fail on them). So each framework's child can run in its own interpreter,
for the stack its record names (`stacks` in frontends/<name>/__init__.py), chosen in this order:

1. the recipe's `export.python`;
2. the environment variable CONVERTCTL_<STACK>_PYTHON (PYTORCH, TENSORFLOW, PADDLE, PADDLE_LEGACY);
3. the environment `make frameworks` creates: <cache>/envs/<stack>/bin/python (stacks with requirements);
4. this interpreter, if it has the framework's packages.

A stack may fall back to another of its framework's: a legacy Paddle model goes to the paddle-legacy stack; if
only the Paddle 3 stack exists it is used, with a warning, because it fails on many published legacy models.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from convertctl.errors import UsageError
from convertctl.frontends.base import Stack
from convertctl.paths import default_cache_dir

ENVS_DIR = Path(__file__).resolve().parent / "envs"  # requirements of the stacks with their own environment


@dataclass(frozen=True)
class Interpreter:
    python: str
    stack: str
    origin: str  # how it was chosen, for the manifest
    warning: str | None = None


def env_var(stack: str) -> str:
    return f"CONVERTCTL_{stack.upper().replace('-', '_')}_PYTHON"


def managed_env(stack: str) -> Path:
    """Where `make frameworks` puts the stack's environment."""
    return default_cache_dir() / "envs" / stack


def _usable(python: str, origin: str) -> str:
    if not Path(python).is_file() or not os.access(python, os.X_OK):
        raise UsageError(f"{origin} names {python}, which is not an executable Python interpreter",
                         hint="point it at the bin/python of the environment that has the framework")
    return python


def env_lacks(env: Path, packages) -> list[str]:
    """The packages (import names) a managed environment has none of in its site-packages: a `make frameworks` that
    stopped halfway leaves bin/python without them, and the child would only say "No module named ...". By the
    folder, not by starting the interpreter: a look is instant, TensorFlow's import takes seconds."""
    found = list(env.glob("lib/python*/site-packages"))
    return [p for p in packages
            if not any((site / p).is_dir() or any(site.glob(f"{p}.*")) for site in found)]


def incomplete_env(env: Path, packages, how: str) -> UsageError:
    return UsageError(f"the environment {env} has no {' or '.join(packages)}: it was not finished (an interrupted or "
                      "failed `make frameworks`?)", hint=f"{how}; or remove {env}")


def _here_has(packages) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in packages)


def _missing(stack: Stack) -> UsageError:
    env = managed_env(stack.name)
    if stack.extra:
        how = f"pip install 'convertctl[{stack.extra}]'"
    else:
        how = (f"`make frameworks`, or: python3 -m venv {env} && {env}/bin/pip install -r "
               f"{ENVS_DIR / stack.requirements}")
    return UsageError(f"no Python environment with {' and '.join(stack.packages)} for {stack.name} sources",
                      hint=f"{how}; or set {env_var(stack.name)} to a Python that has them")


def onnx_pin_problem(version_of=None) -> str | None:
    """A warning when paddle2onnx 2.x was installed into convertctl's own environment and pinned onnx<=1.17 there
    (the downgrade the Paddle stacks' own environments exist to avoid). `version_of`: distribution -> version."""
    import importlib.metadata
    import re

    def major_minor(version: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", version)[:2])

    def installed(dist):
        try:
            return (version_of or importlib.metadata.version)(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    p2o, onnx = installed("paddle2onnx"), installed("onnx")
    if p2o and onnx and major_minor(p2o) >= (2,) and major_minor(onnx) <= (1, 17):
        return (f"paddle2onnx {p2o} is installed in convertctl's own environment and pinned onnx to {onnx} for "
                "every stage: uninstall it here and use the paddle environment (`make frameworks`, docs/frameworks.md)")
    return None


def resolve(framework: str, fmt: str | None, recipe_python: Path | None = None) -> Interpreter:
    """The interpreter for a model of this framework and format (the stack comes from the front end's record)."""
    from convertctl.frontends.registry import get

    frontend = get(framework)
    return resolve_stack(frontend.stacks, frontend.stack(fmt).name, recipe_python)


def resolve_stack(stacks: tuple[Stack, ...], name: str, recipe_python: Path | None = None) -> Interpreter:
    """The interpreter for the stack `name`, one of a framework's `stacks` (its fallback is another of them)."""
    stack = next(s for s in stacks if s.name == name)
    if recipe_python is not None:
        return Interpreter(_usable(str(recipe_python), "export.python"), name, "export.python")
    variable = os.environ.get(env_var(name))
    if variable:
        return Interpreter(_usable(variable, env_var(name)), name, env_var(name))
    if stack.requirements is not None:
        managed = managed_env(name) / "bin" / "python"
        if managed.is_file():
            lacking = env_lacks(managed_env(name), stack.packages)
            if lacking:
                raise incomplete_env(managed_env(name), lacking, "run `make frameworks` again")
            return Interpreter(str(managed), name, f"{managed_env(name)} (make frameworks)")
    if _here_has(stack.packages):
        return Interpreter(sys.executable, name, "this interpreter")
    if stack.fallback:  # e.g. the Paddle 3 stack can convert some legacy models: better than nothing
        try:
            fallback = resolve_stack(stacks, stack.fallback, None)
        except UsageError:
            raise _missing(stack) from None
        return Interpreter(fallback.python, fallback.stack, fallback.origin, warning=stack.fallback_warning)
    raise _missing(stack)
