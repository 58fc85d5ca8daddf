"""Helpers for code running inside a child process: report a result or a classified error."""

from __future__ import annotations

import json
import re
import sys
import traceback
from pathlib import Path


class ChildError(Exception):
    """An expected failure inside the child: becomes one clear line in the parent."""

    def __init__(self, kind: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    line = lines[0] if lines else ""
    if "TorchScript interpreter" in line and len(lines) > 1:  # torch.jit.Error: the reason is its last line
        return lines[-1] if re.match(r"\w+(Error|Exception): ", lines[-1]) else f"{type(exc).__name__}: {lines[-1]}"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def root_cause(exc: BaseException) -> str:
    """The outer error plus its innermost cause: exporters wrap the real reason several layers deep."""
    inner = exc
    while (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__
    return first_line(exc) if inner is exc else f"{type(exc).__name__} caused by {first_line(inner)}"


def main(work) -> None:
    """Call `work(request)`, write `<name>.result.json` or `<name>.error.json` beside the request."""
    req_path = Path(sys.argv[1])
    stem = req_path.name.removesuffix(".request.json")
    request = json.loads(req_path.read_text())
    try:
        result = work(request)
    except ChildError as err:
        out = {"kind": err.kind, "message": err.message, "hint": err.hint}
        (req_path.parent / f"{stem}.error.json").write_text(json.dumps(out, indent=2))
        traceback.print_exc()
        sys.exit(3)
    (req_path.parent / f"{stem}.result.json").write_text(json.dumps(result, indent=2, default=str))
