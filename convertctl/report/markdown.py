"""Markdown summary, rendered from the manifest alone (fits a CI job summary page)."""

from __future__ import annotations

from convertctl.report.manifest import Comparison, LatencyRecord, Manifest

_MARK = {"ok": "✅ ok", "partial": "⚠️ partial", "failed": "❌ failed", "error": "❌ error", "skipped": "⏭️ skipped",
         "rolled_back": "↩️ rolled back"}


def _num(v, fmt=".3g") -> str:
    return "–" if v is None else format(v, fmt)


def fmt_ms(v: float | None) -> str:
    """Milliseconds, 3 significant digits (whole ms from 100 on)."""
    return "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:#.3g}")


def fmt_speedup(v: float | None) -> str:
    """`3.1x`, `0.95x`, `12x`."""
    if v is None:
        return "–"
    return f"{v:.2f}x" if v < 1 else (f"{v:.1f}x" if v < 10 else f"{v:.0f}x")


def fmt_threads(v: int | None) -> str:
    if v is None:
        return "not reported"
    return "0 (runtime default)" if v == 0 else str(v)


def latency_summary(r: LatencyRecord) -> str:
    """`p50 4.31 ms, p90 4.6 ms, p99 5.1 ms, 232/s, 3.1x vs onnx fp32 (onnxruntime), threads 2`."""
    per_s = r.throughput_per_s
    text = (f"p50 {fmt_ms(r.p50_ms)} ms, p90 {fmt_ms(r.p90_ms)} ms, p99 {fmt_ms(r.p99_ms)} ms, "
            + ("" if per_s is None else (f"{per_s:.0f}/s" if per_s >= 100 else f"{per_s:.3g}/s")))
    if r.speedup is not None:
        text += f", {fmt_speedup(r.speedup)} vs {r.baseline}"
    return text + f", threads {fmt_threads(r.threads)}"


def baseline_line(m: Manifest) -> str | None:
    """One line on how latency was measured and what the baseline took; None when nothing was timed."""
    b = m.latency_baseline
    if b is None:
        return None
    if b.status != "measured":
        return f"latency: baseline {b.of} {b.status}: {b.reason}"
    return (f"latency: batch {b.batch}, {b.warmup} warm-up + {b.runs} timed runs, each in its own process; "
            f"baseline {b.of}: p50 {fmt_ms(b.p50_ms)} ms, p90 {fmt_ms(b.p90_ms)} ms, threads {fmt_threads(b.threads)}")


def worst(cmp: Comparison) -> dict:
    """The worst value of each metric over all outputs of one comparison."""
    outs = [m for m in cmp.outputs.values() if not m.error]
    pick = lambda key, fn: fn([getattr(m, key) for m in outs if getattr(m, key) is not None], default=None)  # noqa: E731
    return {"cosine": pick("cosine", min), "max_abs": pick("max_abs", max), "top1_agreement": pick("top1_agreement", min)}


def render_markdown(m: Manifest) -> str:
    lines = [
        f"# convertctl: {m.recipe.name} — {_MARK.get(m.status, m.status)}",
        "",
        f"convertctl {m.tool['version']} · exit code {m.exit_code} · {m.seconds:.1f} s · {m.finished_at} · "
        f"recipe sha256 `{m.recipe.sha256[:12]}`",
        "",
    ]
    if m.samples:
        lines += [f"**Verification data:** {m.samples.description} (sha256 `{m.samples.sha256[:12]}`)", ""]
    lines += ["## Stages", "", "| stage | status | time (s) | findings |", "|---|---|---:|---|"]
    for s in m.stages:
        # every finding up to a page's worth (the check's per-target verdicts come last); never a silent cut
        shown = s.findings if len(s.findings) <= 12 else [*s.findings[:11],
                                                          f"… {len(s.findings) - 11} more in manifest.json"]
        findings = "<br>".join(f.replace("|", "\\|") for f in shown)
        lines.append(f"| {s.name} | {_MARK.get(s.status, s.status)} | {s.seconds:.2f} | {findings} |")
    verified = [(s.name, c) for s in m.stages for c in s.verification]
    if verified:
        lines += ["", "| stage | compared with | cosine (min) | max abs err | top-1 agreement | passed |",
                  "|---|---|---:|---:|---:|---|"]
        for name, c in verified:
            w = worst(c)
            lines.append(f"| {name} | {c.against} | {_num(w['cosine'], '.6f')} | {_num(w['max_abs'])} | "
                         f"{_num(w['top1_agreement'], '.3f')} | {_passed(c)} |")
    if m.artifacts:
        lines += ["", "## Artifacts", "",
                  "| artifact | precision | status | size (MB) | p50 (ms) | speed-up vs FP32 ONNX | cosine vs reference | "
                  "max abs err | top-1 agreement | runs with |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for a in m.artifacts:
            size = sum(f.bytes for f in a.files) / 1e6
            w = worst(a.verification[0]) if a.verification else {"cosine": None, "max_abs": None, "top1_agreement": None}
            runs = ", ".join(f"{k}={v}" for k, v in a.effective.items() if k != "providers")
            lat = a.latency
            lines.append(f"| {a.id} | {a.precision} | {_MARK.get(a.status, a.status)} | {size:.1f} | "
                         f"{fmt_ms(lat.p50_ms if lat else None)} | {fmt_speedup(lat.speedup if lat else None)} | "
                         f"{_num(w['cosine'], '.6f')} | {_num(w['max_abs'])} | {_num(w['top1_agreement'], '.3f')} | {runs} |")
        line = baseline_line(m)
        if line:
            lines += ["", f"**Latency:** {line.removeprefix('latency: ')}"]
        reasons = [f"- **{a.id}**: {a.reason}" for a in m.artifacts if a.reason]
        reasons += [f"- **{a.id}** latency {a.latency.status}: {a.latency.reason}" for a in m.artifacts
                    if a.latency and a.latency.reason]
        if reasons:
            lines += [""] + reasons
    if m.messages:
        lines += ["", "## Messages", ""] + [f"- {msg}" for msg in m.messages]
    pkgs = ", ".join(f"{k} {v}" for k, v in m.environment.get("packages", {}).items())
    lines += ["", f"<sub>{m.environment.get('cpu')} · {m.environment.get('cpu_count')} cores · "
                  f"Python {m.environment.get('python')} · {pkgs}</sub>", ""]
    return "\n".join(lines)


def _passed(c: Comparison) -> str:
    return "–" if c.passed is None else ("yes" if c.passed else "**no**: " + "; ".join(c.failures))
