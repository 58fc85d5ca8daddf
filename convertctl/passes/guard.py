"""Run one graph pass under a parity guard: a pass that fails, or changes outputs beyond
tolerance, is rolled back (its output kept aside as `*.rejected.onnx`) and reported, never shipped.

"Beyond tolerance" is the rule of every verification (evaluate/compare.py): an output passes when it is close
(atol + rtol * RMS of the output before the pass) or similar (cosine/SQNR/top-1), and an output without signal
(~0 or constant) by absolute error only, so a ~0 map that moves by 1e-7 keeps the pass."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from convertctl.errors import ConvertctlError
from convertctl.evaluate.compare import compare
from convertctl.report.manifest import Comparison


@dataclass
class GuardedResult:
    status: str  # "ok" or "rolled_back"
    model: Path  # the model to continue with: the pass's output, or its input when rolled back
    details: dict = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    verification: list[Comparison] = field(default_factory=list)
    outputs: list | None = None  # ONNX Runtime outputs of `model` on the feeds (reused downstream)


def guarded_pass(name: str, transform: Callable[[Path, Path], dict], src: Path, dst: Path, feeds, output_names,
                 tolerance, before: list | None = None, chunk: int | None = None) -> GuardedResult:
    """`before`: the input model's ONNX Runtime outputs on `feeds`, when the caller already has them."""
    from convertctl.onnx_session import run_session, session

    if before is None:
        before = run_session(session(src), feeds, chunk)
    try:
        details = transform(src, dst)
    except ConvertctlError:
        raise
    except Exception as exc:  # the input model still stands: a failing pass is not fatal
        return GuardedResult("rolled_back", src, {"pass": name},
                             [f"{name} failed and was rolled back: {type(exc).__name__}: {exc}"[:500]], outputs=before)
    after = run_session(session(dst), feeds, chunk)
    cmp = compare(f"onnx before {name}", output_names, before, after, tolerance)
    if cmp.passed is False:
        rejected = dst.with_name(dst.stem + ".rejected.onnx")
        shutil.move(dst, rejected)
        return GuardedResult("rolled_back", src, details,
                             [f"{name} rolled back: outputs changed beyond tolerance (" + "; ".join(cmp.failures) + ")"],
                             [cmp], outputs=before)
    return GuardedResult("ok", dst, details, [], [cmp], outputs=after)
