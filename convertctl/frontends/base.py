"""What a framework's front end is: one record (`FRONTEND` in its package), read by the registry.

A record and its package's `__init__` import only the standard library (and convertctl's stdlib-only modules):
the registry imports every front end for `--help` and recipe validation, and the export child imports its
package inside another framework's environment (no pydantic, no onnx there). The heavy work sits behind `lazy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFiles:
    """A model found on disk by its files alone (no framework imported)."""

    framework: str
    format: str  # one of the framework's Detection.formats
    model: Path  # the file or folder the framework loads (.pdmodel / .json / SavedModel folder / .keras / .h5)
    params: Path | None = None  # Paddle's .pdiparams


@dataclass(frozen=True)
class Stack:
    """The packages a framework's export child imports, and where an interpreter that has them comes from
    (see interpreters.py)."""

    name: str  # CONVERTCTL_<NAME>_PYTHON, <cache>/envs/<name>
    packages: tuple[str, ...]
    extra: str | None = None  # the convertctl extra that installs them in this environment
    requirements: str | None = None  # envs/<file> for an environment of its own (`make frameworks`)
    fallback: str | None = None  # another stack of the same framework, used with `fallback_warning` when missing
    fallback_warning: str = ""


@dataclass(frozen=True)
class Detection:
    """The on-disk formats a framework recognises from the files, for frameworks whose model is a path."""

    formats: tuple[str, ...]
    detect: Callable[[Path], ModelFiles | None]  # None: not this framework's; raises SourceModelError if broken
    looks_like: Callable[[Path], bool]  # a file this framework takes, by its name (folders: always maybe)
    folder_kind: str  # "X is neither <folder_kind> nor ..." for a folder no framework recognises
    files_hint: str  # "<files_hint>; ..." for a file no framework recognises


@dataclass(frozen=True)
class Frontend:
    """A source framework: how its model is recognised, checked, exported to ONNX and described.

    `recipe` below is a validated convertctl.recipe.Recipe, never mutated."""

    name: str  # recipe source.framework and --framework
    reference_name: str  # what produced the reference outputs (manifest, messages)
    export: Callable[[Any, Path, Path, int | None], Any]  # (recipe, samples_path, workdir, chunk) -> ExportResult
    preflight: Callable[[Any], None]  # (recipe): cheap checks before anything is written; raises ConvertctlError
    source_files: Callable[[Any], list[Path]]  # (recipe): the files the source is made of (export stage inputs)
    read_paths: Callable[[Any], list[Path]]  # (recipe): what the run reads, which the output folder may not be
    check_source: Callable[[Any], None]  # (recipe.Source): which of path/factory it needs; raises ValueError
    cli_source: Callable[[str, str | None], dict]  # (SOURCE, --weights): the recipe's `source` for a model path
    source_help: str  # how SOURCE names such a model, in the "cannot tell what kind of model" hint
    claims: Callable[[str], bool] | None = None  # SOURCE is this framework's by its name or content alone
    path_kind: str = ""  # in the hint for an unrecognised folder ("give the model's folder or file: ...")
    detection: Detection | None = None  # frameworks whose format is read from the files
    # (recipe, workdir) -> [{name, shape, dtype}] from the model's own signature (read in a child); None: the
    # inputs come from the recipe (or, for an ONNX source, from the ONNX itself)
    describe_inputs: Callable[[Any, Path], list[dict]] | None = None
    default_opset: int | None = None  # when export.opset is null; None: the framework writes no ONNX of its own
    opset_note: str = ""  # why that default, for --opset's help
    stacks: tuple[Stack, ...] = ()  # the first is the default; empty: nothing runs in a child
    stack_for: Callable[[str | None], str] | None = None  # format -> stack name (None: the first stack)
    worker: str | None = None  # the module the export child runs (`python -m`)
    passthrough: bool = False  # the source is ONNX already: nothing to export or verify against

    @property
    def formats(self) -> tuple[str, ...]:
        return self.detection.formats if self.detection else ()

    def stack(self, fmt: str | None = None) -> Stack:
        name = self.stack_for(fmt) if self.stack_for else self.stacks[0].name
        return next(s for s in self.stacks if s.name == name)


def lazy(module: str, name: str) -> Callable:
    """`module.name`, imported on the first call: a record stays cheap to import (see the module docstring)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__, call.__qualname__, call.__module__ = name, name, module
    return call


def path_and_folder(recipe) -> list[Path]:
    """read_paths of a source that is one path: the model and the folder it is in."""
    path = recipe.source.path
    return [path, path.parent] if path is not None else []
