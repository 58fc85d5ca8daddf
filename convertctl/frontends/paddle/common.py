"""What the Paddle worker and the paddle2onnx runner share: versions, the IR guards, the user-facing hint.

Runs inside the Paddle environments (stdlib, numpy, paddle only): see worker.py.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re

LEGACY_STACK_HINT = ("the paddle-legacy stack (paddlepaddle 2.6.2 + paddle2onnx 1.3.1) converts such "
                     "Paddle 2.x models: `make frameworks` creates it (or point "
                     "CONVERTCTL_PADDLE_LEGACY_PYTHON or export.python at such an environment)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def p2o_version() -> str:
    try:
        return importlib.metadata.version("paddle2onnx")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def paddle_major() -> int:
    import paddle

    # Paddle's develop builds are 0.0.0: they are Paddle 3.
    return major(paddle.__version__) or 3


def _ir_guard(pir: bool):
    """Paddle 3 reads .json under the new IR and .pdmodel under the old one; Paddle 2.x only knows the old."""
    import paddle

    utils = getattr(paddle, "pir_utils", None)
    if utils is None or not hasattr(utils, "OldIrGuard"):
        return contextlib.nullcontext()
    return utils.IrGuard() if pir else utils.OldIrGuard()


@contextlib.contextmanager
def static_mode(pir: bool):
    import paddle

    paddle.enable_static()
    try:
        with _ir_guard(pir):
            yield
    finally:
        paddle.disable_static()
