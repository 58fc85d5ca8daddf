"""Compare a model's outputs with a reference and judge them against a tolerance."""

from __future__ import annotations

import numpy as np

from convertctl.report.manifest import Comparison, OutputMetrics
from convertctl.schema import Tolerance


def output_metrics(reference: np.ndarray, actual: np.ndarray) -> OutputMetrics:
    if reference.shape != actual.shape:
        return OutputMetrics(shape=list(actual.shape), error=f"shape {list(actual.shape)} != reference {list(reference.shape)}")
    ref = reference.astype(np.float64).ravel()
    act = actual.astype(np.float64).ravel()
    diff = np.abs(ref - act)
    finite = bool(np.isfinite(act).all())
    denom = np.linalg.norm(ref) * np.linalg.norm(act)
    cosine = float(ref @ act / denom) if denom > 0 else (1.0 if np.array_equal(ref, act) else 0.0)
    noise = float(np.sum((ref - act) ** 2))
    sqnr = 10 * np.log10(float(np.sum(ref**2)) / noise) if noise > 0 and np.any(ref) else None
    top1 = None
    # Classifier-like output [N, C]: how often the arg-max class is the same.
    if reference.ndim == 2 and reference.shape[1] > 1:
        top1 = float(np.mean(reference.argmax(1) == actual.argmax(1)))
    return OutputMetrics(
        shape=list(reference.shape),
        max_abs=float(diff.max()) if diff.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float((diff / np.maximum(np.abs(ref), 1e-6)).max()) if diff.size else 0.0,
        cosine=cosine,
        sqnr_db=None if sqnr is None else float(sqnr),
        top1_agreement=top1,
        finite=finite,
    )


def compare(
    against: str,
    names: list[str],
    reference: list[np.ndarray],
    actual: list[np.ndarray],
    tolerance: Tolerance | None = None,
) -> Comparison:
    """Per-output metrics; with a tolerance, `passed` and the list of broken bounds."""
    if len(reference) != len(actual):
        return Comparison(
            against=against, passed=False if tolerance else None, tolerance=tolerance,
            failures=[f"{len(actual)} outputs, reference has {len(reference)}"],
        )
    metrics = {name: output_metrics(r, a) for name, r, a in zip(names, reference, actual, strict=False)}
    failures = []
    for name, m in metrics.items():
        if m.error:
            failures.append(f"{name}: {m.error}")
            continue
        if not m.finite:
            failures.append(f"{name}: contains NaN or Inf")
        if tolerance is None:
            continue
        if tolerance.min_cosine is not None and m.cosine < tolerance.min_cosine:
            failures.append(f"{name}: cosine {m.cosine:.6f} < {tolerance.min_cosine}")
        if tolerance.min_sqnr_db is not None and m.sqnr_db is not None and m.sqnr_db < tolerance.min_sqnr_db:
            failures.append(f"{name}: SQNR {m.sqnr_db:.1f} dB < {tolerance.min_sqnr_db} dB")
        if tolerance.max_abs is not None and m.max_abs > tolerance.max_abs:
            failures.append(f"{name}: max abs error {m.max_abs:.3g} > {tolerance.max_abs}")
        if (tolerance.min_top1_agreement is not None and m.top1_agreement is not None
                and m.top1_agreement < tolerance.min_top1_agreement):
            failures.append(f"{name}: top-1 agreement {m.top1_agreement:.3f} < {tolerance.min_top1_agreement}")
    passed = (not failures) if (tolerance is not None or failures) else None
    return Comparison(against=against, outputs=metrics, tolerance=tolerance, passed=passed, failures=failures)
