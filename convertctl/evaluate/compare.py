"""Compare a model's outputs with a reference and judge them against a tolerance.

The rule (`judge`), per output, for a tolerance with `atol` or `rtol` (every default tolerance has both):

    bound = atol + rtol * RMS(reference)                    # the output's own scale; its RMS, not its max
    no signal:  (max(ref) - min(ref)) / 2 <= bound  -> "absolute": passes iff max|actual - ref| <= bound
    close:      max|actual - ref| <= bound          -> "allclose": passes
    otherwise                                       -> "cosine": min_cosine, min_sqnr_db, min_top1_agreement

and `max_abs`, when set, caps every output whichever criterion decided. An output whose reference has no signal
(all ~0, or constant) has no meaningful cosine, SQNR or arg-max: cosine is undefined on zeros and blind to scale
on a constant, so only absolute error can judge it. Scaling `rtol` by the RMS (not the max) makes "close" imply
a norm bound: max|Δ| <= rtol * RMS(ref) gives ||Δ|| <= rtol * ||ref||, i.e. SQNR >= -20·log10(rtol) dB, so a
close output is never one that the similarity bounds of the same precision would reject for its size of error
(beyond `atol`, the precision's absolute noise floor). A tolerance with neither atol nor rtol judges by the
similarity bounds only, as before.
"""

from __future__ import annotations

import numpy as np

from convertctl.report.manifest import Comparison, OutputMetrics
from convertctl.schema import Tolerance


def output_metrics(reference: np.ndarray, actual: np.ndarray) -> OutputMetrics:
    """The tolerance-free numbers, in float64 over the whole output. Elements that are the same NaN or ±Inf on
    both sides match (numpy's equal_nan) and are left out of the numbers; any other NaN/Inf is `judge`d a failure."""
    if reference.shape != actual.shape:
        return OutputMetrics(shape=list(actual.shape), error=f"shape {list(actual.shape)} != reference {list(reference.shape)}")
    ref = np.asarray(reference, dtype=np.float64).ravel()
    act = np.asarray(actual, dtype=np.float64).ravel()
    finite = bool(np.isfinite(act).all())
    keep = np.isfinite(ref) & np.isfinite(act)
    if not keep.all():
        ref, act = ref[keep], act[keep]
    diff = np.abs(ref - act)
    norms = float(np.linalg.norm(ref)) * float(np.linalg.norm(act))
    if norms > 0:
        cosine = float(np.clip(ref @ act / norms, -1.0, 1.0))
    else:  # a zero vector on one side: equal outputs are similar, otherwise the cosine is undefined
        cosine = 1.0 if np.array_equal(ref, act) else None
    noise = float(np.sum((ref - act) ** 2))
    sqnr = 10 * np.log10(float(np.sum(ref**2)) / noise) if noise > 0 and np.any(ref) else None
    top1 = None
    # Classifier-like output [N, C]: how often the arg-max class is the same (the same NaN/Inf count as equal).
    if reference.ndim == 2 and reference.shape[1] > 1 and reference.shape[0] > 0:
        r2, a2 = (np.nan_to_num(np.asarray(x, np.float64), nan=-np.inf) for x in (reference, actual))
        top1 = float(np.mean(r2.argmax(1) == a2.argmax(1)))
    return OutputMetrics(
        shape=list(reference.shape),
        max_abs=float(diff.max()) if diff.size else 0.0,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        max_rel=float((diff / np.maximum(np.abs(ref), 1e-6)).max()) if diff.size else 0.0,
        cosine=cosine,
        sqnr_db=None if sqnr is None else float(sqnr),
        top1_agreement=top1,
        finite=finite,
        ref_rms=float(np.sqrt(np.mean(ref**2))) if ref.size else 0.0,
        ref_half_range=float((ref.max() - ref.min()) / 2) if ref.size else 0.0,
    )


def _nonfinite_mismatch(reference: np.ndarray, actual: np.ndarray) -> str | None:
    """Why the NaN/Inf of the two sides do not match element for element (None when they do)."""
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64)
    bad_ref, bad_act = ~np.isfinite(ref), ~np.isfinite(act)
    if not (bad_ref.any() or bad_act.any()):
        return None
    same = bad_ref & bad_act & ((ref == act) | (np.isnan(ref) & np.isnan(act)))
    only_act = int((bad_act & ~same).sum())
    only_ref = int((bad_ref & ~same).sum())
    if only_act:
        return f"contains NaN or Inf ({only_act} of {act.size} values, where the reference has other values)"
    if only_ref:
        return f"the reference has NaN or Inf at {only_ref} of {ref.size} values where this output has other values"
    return None


def _similarity_failures(name: str, m: OutputMetrics, t: Tolerance) -> list[str]:
    out = []
    if t.min_cosine is not None:
        if m.cosine is None:
            out.append(f"{name}: cosine undefined (one side is all zeros"
                       + (")" if t.atol is not None or t.rtol is not None
                          else "; set atol/rtol to judge such an output by absolute error)"))
        elif not m.cosine >= t.min_cosine:
            out.append(f"{name}: cosine {m.cosine:.6f} < {t.min_cosine}")
    if t.min_sqnr_db is not None and m.sqnr_db is not None and not m.sqnr_db >= t.min_sqnr_db:
        out.append(f"{name}: SQNR {m.sqnr_db:.1f} dB < {t.min_sqnr_db} dB")
    if (t.min_top1_agreement is not None and m.top1_agreement is not None
            and not m.top1_agreement >= t.min_top1_agreement):
        out.append(f"{name}: top-1 agreement {m.top1_agreement:.3f} < {t.min_top1_agreement}")
    return out


def judge(name: str, m: OutputMetrics, tolerance: Tolerance | None) -> list[str]:
    """The failures of one output under `tolerance` (the rule in the module docstring); sets m.close_bound,
    m.decided_by and m.passed. Needs only the record: a manifest's numbers reproduce its verdicts."""
    if m.error:
        m.passed = False if tolerance is not None else None
        return [f"{name}: {m.error}"]
    if tolerance is None:
        return []
    t = tolerance
    failures: list[str] = []
    has_close = t.atol is not None or t.rtol is not None
    has_similarity = any(v is not None for v in (t.min_cosine, t.min_sqnr_db, t.min_top1_agreement))
    if has_close:
        bound = (t.atol or 0.0) + (t.rtol or 0.0) * (m.ref_rms or 0.0)
        m.close_bound = bound
        close = m.max_abs <= bound  # False for NaN
        how = f"atol {t.atol or 0:g} + rtol {t.rtol or 0:g} × RMS {m.ref_rms:.3g}"
        if m.ref_half_range <= bound:
            m.decided_by = "absolute"
            if not close:
                failures.append(f"{name}: no signal (the reference stays within {bound:.3g} of one value), "
                                f"max abs error {m.max_abs:.3g} > {bound:.3g} ({how})")
        elif close:
            m.decided_by = "allclose"
        elif has_similarity:
            m.decided_by = "cosine"
            failures += _similarity_failures(name, m, t)
            if failures:  # say once that the other way to pass was tried too
                failures[0] += f" (and not close: max abs error {m.max_abs:.3g} > {bound:.3g})"
        else:
            m.decided_by = "allclose"
            failures.append(f"{name}: not close: max abs error {m.max_abs:.3g} > {bound:.3g} ({how})")
    elif has_similarity:
        m.decided_by = "cosine"
        failures += _similarity_failures(name, m, t)
    elif t.max_abs is not None:
        m.decided_by = "absolute"  # nothing but max_abs to judge by
    if t.max_abs is not None and not m.max_abs <= t.max_abs:  # a cap on every output, whatever decided
        failures.append(f"{name}: max abs error {m.max_abs:.3g} > {t.max_abs}")
    m.passed = not failures
    return failures


def compare(
    against: str,
    names: list[str],
    reference: list[np.ndarray],
    actual: list[np.ndarray],
    tolerance: Tolerance | None = None,
) -> Comparison:
    """Per-output metrics; with a tolerance, `passed`, each output's deciding criterion and the broken bounds."""
    if len(reference) != len(actual):
        return Comparison(
            against=against, passed=False if tolerance else None, tolerance=tolerance,
            failures=[f"{len(actual)} outputs, reference has {len(reference)}"],
        )
    metrics, failures = {}, []
    for name, r, a in zip(names, reference, actual, strict=False):
        m = metrics[name] = output_metrics(r, a)
        mismatch = None if m.error else _nonfinite_mismatch(r, a)
        failures += [f"{name}: {mismatch}"] if mismatch else []
        failures += judge(name, m, tolerance)
        if mismatch:
            m.passed = False
    passed = (not failures) if (tolerance is not None or failures) else None
    return Comparison(against=against, outputs=metrics, tolerance=tolerance, passed=passed, failures=failures)
