"""Error hierarchy and exit codes (docs/exit-codes.md).

An exception exits with code 1 (ConvertctlError) or 2 (UsageError and its kinds). Codes 3, 4 and 5 are outcomes,
not exceptions: a run records 3 or 4 in its manifest (pipeline.py), `convertctl check` returns 3 or 4
(cli/check.py) and `convertctl diff` 4 or 5 (ci/diff.py)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED_OPERATOR = 3
EXIT_ACCURACY_GATE = 4
EXIT_PERF_REGRESSION = 5


class ConvertctlError(Exception):
    """An expected failure: shown as one line (plus an optional hint), never a traceback."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ConvertctlError):
    """Bad command-line use, a bad path, an unwritable output folder."""

    exit_code = EXIT_USAGE


class RecipeError(UsageError):
    """The recipe file is missing, not YAML, or does not match the schema."""


class SourceModelError(UsageError):
    """The source model cannot be loaded, built, exported, or rejects the declared inputs."""


class MissingDependencyError(UsageError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"the Python package '{module}' is not installed",
            hint=f"install it with: {install_hint(extra)}",
        )


def install_hint(extra: str) -> str:
    return f"pip install 'convertctl[{extra}]'"


def require(module: str, extra: str):
    """Import an optional heavy module, turning its absence into a clear error naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only the module we asked for counts as "not installed"; a broken install must surface as is.
        if exc.name and module.split(".")[0] == exc.name.split(".")[0]:
            raise MissingDependencyError(module, extra) from exc
        raise
