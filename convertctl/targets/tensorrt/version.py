"""Which TensorRT API path a version takes. 10.x and 11.x differ in ways that break builds silently:
11.x removed weakly typed networks, the precision builder flags and trtexec's --fp16/--int8/--best/--calib
(TensorRT 10.x -> 11.x migration guide)."""

from __future__ import annotations

import re

from convertctl.errors import UsageError

SUPPORTED_MAJORS = (10, 11)


def parse_version(text: str) -> tuple[int, ...]:
    """'10.16.1.11' -> (10, 16, 1, 11); a version convertctl cannot read is a usage error, not a crash."""
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not match:
        raise UsageError(f"cannot read the TensorRT version {text!r}", hint="expected a version such as 10.16.1")
    return tuple(int(p) for p in match.groups() if p is not None)


def api_major(text: str) -> int:
    """The API path (10 or 11) for an installed TensorRT version; other majors are refused with the reason."""
    major = parse_version(text)[0]
    if major not in SUPPORTED_MAJORS:
        raise UsageError(
            f"TensorRT {text} is not supported: convertctl builds with TensorRT 10.x and 11.x",
            hint=("TensorRT < 10 has no strongly typed networks and no tensor-name I/O API; install TensorRT 10 or 11"
                  if major < 10 else "this TensorRT is newer than convertctl knows; use TensorRT 10.x or 11.x"))
    return major


def explicit_strong_typing(major: int) -> bool:
    """10.x opts in with NetworkDefinitionCreationFlag.STRONGLY_TYPED / --stronglyTyped; in 11.x it is the only
    mode (the flag is accepted and ignored, trtexec's --stronglyTyped is a no-op)."""
    return major == 10


def weak_typing_available(major: int) -> bool:
    """Weakly typed networks (builder precision flags, trtexec --fp16/--int8): deprecated in 10.12, gone in 11."""
    return major == 10
