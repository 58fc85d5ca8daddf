"""report.html: one self-contained file (no scripts, no external assets), rendered from the manifest
(plus the run folder's quantize/histograms.json for the bins): the stages, every artifact's
verification and accuracy, latency bars, and, when the run quantized, bar charts of the per-layer
quantization error and of the per-layer sensitivity (with the exclusions it suggests), and the worst
layers' input histograms with their clipping ranges."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from convertctl.report.manifest import LatencyRecord, Manifest
from convertctl.report.markdown import fmt_ms, fmt_speedup, fmt_threads, worst

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#137333}.failed,.error{color:#c5221f}
.skipped,.partial,.rolled_back{color:#b06000}small{color:#666}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}figcaption{font-size:12px;max-width:420px}"""


def _num(v, fmt=".4g") -> str:
    return "–" if v is None else format(v, fmt)


def _status(s: str) -> str:
    return f'<span class="{escape(s)}">{escape(s)}</span>'


def _bars(rows: list[dict], lengths: list[float], texts: list[str], css: str, aria: str, fills: list[str],
          width: int = 700, text_w: int = 60) -> str:
    """Horizontal bars, one per layer, labelled `node (source)`, length relative to the longest."""
    top = max(lengths, default=0) or 1.0
    bar_h, label_w = 16, 330
    parts = [f'<svg width="{label_w + width + text_w}" '
             f'height="{bar_h * len(rows) + 10}" role="img" aria-label="{escape(aria)}">']
    for i, (r, length, text, fill) in enumerate(zip(rows, lengths, texts, fills, strict=True)):
        y = 5 + i * bar_h
        w = max(1.0, width * length / top)
        label = f"{r['node']} ({r.get('source') or r['op']})"
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="{css}" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="{fill}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _layer_chart(rows: list[dict], width: int = 700) -> str:
    """Horizontal bars: the error each layer introduces (dB), worst first."""
    rows = rows[:25]
    return _bars(rows, [r["introduced_db"] for r in rows], [f"{r['introduced_db']:.1f} dB" for r in rows], "bar",
                 "per-layer quantization error", ["#d93025"] * len(rows), width)


def _sensitivity_chart(rows: list[dict], suggested: list[str], width: int = 700) -> str:
    """Horizontal bars, most sensitive first: the output noise one layer's INT8 weights alone cause, linear
    (10^(-SQNR/10), so a layer at 20 dB is 10x one at 30 dB); the suggested exclusions in red."""
    rows = rows[:15]
    return _bars(rows, [10 ** (-r["sqnr_db"] / 10) for r in rows],
                 [f"{r['sqnr_db']:.1f} dB · cosine {r['cosine']:.5f}" for r in rows], "sens",
                 "per-layer sensitivity: output SQNR with only this layer's weights in INT8",
                 ["#d93025" if r["node"] in suggested else "#5f6368" for r in rows], width, text_w=170)


def _latency_chart(bars: list[tuple[str, LatencyRecord]], width: int = 520) -> str:
    """Horizontal bars, one per measured latency: length = p50, label `p50 ms · speed-up`."""
    top = max(r.p50_ms for _, r in bars) or 1.0
    bar_h, label_w = 20, 230
    parts = [f'<svg class="latency" width="{label_w + width + 130}" '
             f'height="{bar_h * len(bars) + 10}" role="img" aria-label="latency p50 per artifact">']
    for i, (label, r) in enumerate(bars):
        y = 5 + i * bar_h
        w = max(1.0, width * r.p50_ms / top)
        text = f"{fmt_ms(r.p50_ms)} ms" + (f" · {fmt_speedup(r.speedup)}" if r.speedup is not None else "")
        tip = (f"{label}: p50 {fmt_ms(r.p50_ms)} ms, p90 {fmt_ms(r.p90_ms)} ms, p99 {fmt_ms(r.p99_ms)} ms, "
               f"batch {r.batch}, {r.runs} runs, threads {fmt_threads(r.threads)}")
        fill = "#9aa0a6" if label.startswith("baseline") else "#1a73e8"
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="lat" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_h - 6}" fill="{fill}">'
                     f'<title>{escape(tip)}</title></rect>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="12">{escape(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _latency_section(m: Manifest) -> list[str]:
    bars = [(f"baseline: {m.latency_baseline.of}", m.latency_baseline)] if m.latency_baseline else []
    bars += [(a.id, a.latency) for a in m.artifacts if a.latency is not None]
    measured = [(label, r) for label, r in bars if r.status == "measured" and r.p50_ms is not None]
    other = [(label, r) for label, r in bars if not (r.status == "measured" and r.p50_ms is not None)]
    if not bars:
        return []
    h = ["<h2>Latency</h2>"]
    if measured:
        b = measured[0][1]
        h.append(f"<p><small>p50 per call, batch {b.batch}, {b.warmup} warm-up + {b.runs} timed runs, each "
                 "artifact in a process of its own; speed-up = baseline p50 / p50.</small></p>")
        h.append(_latency_chart(measured))
    for label, r in other:
        h.append(f"<p>{_status(r.status)} latency of <b>{escape(label)}</b>: {escape(r.reason or 'not measured')}</p>")
    return h


def _histogram_svg(hist: dict, width: int = 400, height: int = 160) -> str:
    """The binned FP32 values (log-scaled counts) and the clipping range [lo, hi] as two vertical lines;
    what falls outside the range (clipped) is shaded."""
    counts, edges = hist["counts"], hist["edges"]
    lo, hi = hist["range"]
    x0, x1 = min(edges[0], lo), max(edges[-1], hi)  # the lines stay in view when the range is wider
    margin = 0.03 * ((x1 - x0) or 1.0)
    x0, x1 = x0 - margin, x1 + margin
    left_pad, top_pad, axis = 8, 16, 16
    plot_w, plot_h = width - 2 * left_pad, height - top_pad - axis
    x = lambda v: left_pad + plot_w * (v - x0) / (x1 - x0)  # noqa: E731
    top = math.log1p(max(counts) or 1)
    bottom = top_pad + plot_h
    parts = [f'<svg class="hist" width="{width}" height="{height}" role="img" '
             f'aria-label="histogram of {escape(hist["tensor"])} with its clipping range">',
             f'<rect x="{left_pad}" y="{top_pad}" width="{plot_w}" height="{plot_h}" fill="#f8f9fa"/>',
             f'<rect x="{left_pad}" y="{top_pad}" width="{x(lo) - left_pad:.2f}" height="{plot_h}" fill="#fce8e6"/>',
             f'<rect x="{x(hi):.2f}" y="{top_pad}" width="{left_pad + plot_w - x(hi):.2f}" height="{plot_h}" '
             'fill="#fce8e6"/>']
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c:
            bh = plot_h * math.log1p(c) / top
            parts.append(f'<rect x="{x(a):.2f}" y="{bottom - bh:.2f}" width="{max(0.6, x(b) - x(a)):.2f}" '
                         f'height="{bh:.2f}" fill="#5f6368"/>')
    for v, name, anchor in ((lo, "lo", "start"), (hi, "hi", "end")):
        parts.append(f'<line class="clip" x1="{x(v):.2f}" x2="{x(v):.2f}" y1="{top_pad - 2}" y2="{bottom}" '
                     'stroke="#d93025" stroke-width="1.5" stroke-dasharray="4 2"/>'
                     f'<text x="{x(v):.2f}" y="{top_pad - 5}" font-size="10" fill="#d93025" '
                     f'text-anchor="{anchor}">{name} {v:.4g}</text>')
    parts.append(f'<text x="{x(edges[0]):.2f}" y="{bottom + 12}" font-size="10" text-anchor="middle">'
                 f'{hist["min"]:.4g}</text><text x="{x(edges[-1]):.2f}" y="{bottom + 12}" font-size="10" '
                 f'text-anchor="middle">{hist["max"]:.4g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _histogram_section(m: Manifest, folder: Path | None, histograms: dict | None) -> list[str]:
    quant = next((s for s in m.stages if s.name == "quantize"), None)
    listed = (quant.details.get("histograms") or {}) if quant else {}
    if histograms is None and folder is not None and (Path(folder) / "quantize" / "histograms.json").exists():
        histograms = json.loads((Path(folder) / "quantize" / "histograms.json").read_text())
    if histograms is None:
        if not listed.get("layers"):
            return []
        return ["<h2>Clipping ranges of the worst layers</h2><p><small>Histograms left out: rendered without the "
                "run folder (quantize/histograms.json).</small></p>"]
    if not histograms.get("layers"):
        return []
    h = ["<h2>Clipping ranges of the worst layers</h2>",
         f"<p><small>FP32 values of each layer's quantized input on {histograms['samples']} evaluation samples, "
         f"{histograms['bins']} bins over the observed min..max, counts on a log scale; dashed red lines: the "
         f"calibrated range [lo, hi] the Q node's scale and zero point come from ({escape(histograms['model'])}). "
         "Values outside it are clipped. Data: quantize/histograms.json.</small></p>"]
    for hist in histograms["layers"]:
        lo, hi = hist["range"]
        caption = (f"<b>{escape(hist['node'])}</b> ({escape(hist.get('source') or hist['op'])}) input "
                   f"<code>{escape(hist['tensor'])}</code>: clipped {100 * hist['clipped_fraction']:.3g}% of "
                   f"{hist['values']:,} values · range [{lo:.4g}, {hi:.4g}]"
                   + (f" of <code>{escape(hist['range_tensor'])}</code>"
                      if hist.get("range_tensor") not in (None, hist["tensor"]) else "")
                   + f" · observed [{hist['min']:.4g}, {hist['max']:.4g}], spanning {100 * hist['range_used']:.0f}% "
                   f"of the range and {100 * hist['grid_used']:.0f}% of the {escape(hist['dtype'])} grid")
        h.append(f"<figure>{_histogram_svg(hist)}<figcaption>{caption}</figcaption></figure>")
    return h


def render_html(m: Manifest, folder: Path | None = None, histograms: dict | None = None) -> str:
    """The page. `folder` (the run's output folder) or `histograms` (quantize/histograms.json, loaded) adds the
    clipping-range histograms; without either the section is left out with a note."""
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>convertctl: {escape(m.recipe.name)}</title>"
         f"<style>{_CSS}</style></head><body>",
         f"<h1>{escape(m.recipe.name)}: {_status(m.status)}</h1>",
         f"<p><small>convertctl {escape(m.tool['version'])} · exit code {m.exit_code} · {m.seconds:.1f} s · "
         f"{escape(m.finished_at)} · schema {escape(m.schema_version)}</small></p>"]
    if m.samples:
        h.append(f"<p>Verification data: {escape(m.samples.description)}</p>")
    h.append("<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>s</th><th>findings</th></tr>")
    for s in m.stages:
        h.append(f"<tr><td>{escape(s.name)}</td><td>{_status(s.status)}</td><td class=n>{s.seconds:.2f}</td>"
                 f"<td>{'<br>'.join(escape(f) for f in s.findings)}</td></tr>")
    h.append("</table>")
    if m.artifacts:
        h.append("<h2>Artifacts</h2><table><tr><th>artifact</th><th>built from</th><th>status</th><th>MB</th>"
                 "<th>compared with</th><th>cosine</th><th>SQNR dB</th><th>max abs</th><th>top-1 agreement</th>"
                 "<th>top-1 accuracy (reference)</th></tr>")
        for a in m.artifacts:
            c = a.verification[0] if a.verification else None
            w = worst(c) if c else {}
            sqnr = min((o.sqnr_db for o in c.outputs.values() if o.sqnr_db is not None), default=None) if c else None
            acc = (f"{a.accuracy['top1']:.4f} ({a.accuracy['reference_top1']:.4f})" if a.accuracy else "–")
            h.append(f"<tr><td>{escape(a.id)}</td><td>{escape(a.built_from)}</td><td>{_status(a.status)}</td>"
                     f"<td class=n>{sum(f.bytes for f in a.files) / 1e6:.1f}</td>"
                     f"<td>{escape(c.against) if c else '–'}</td><td class=n>{_num(w.get('cosine'), '.6f')}</td>"
                     f"<td class=n>{_num(sqnr, '.1f')}</td><td class=n>{_num(w.get('max_abs'))}</td>"
                     f"<td class=n>{_num(w.get('top1_agreement'), '.3f')}</td><td class=n>{acc}</td></tr>")
        h.append("</table>")
        for a in m.artifacts:
            if a.reason:
                h.append(f"<p>{_status(a.status)} <b>{escape(a.id)}</b>: {escape(a.reason)}</p>")
    h += _latency_section(m)
    quant = next((s for s in m.stages if s.name == "quantize"), None)
    layers = (quant.details.get("layers") or {}) if quant else {}
    if layers.get("worst"):
        h.append(f"<h2>Per-layer quantization error ({escape(layers['model'])})</h2>"
                 "<p><small>Error each layer introduces: SQNR of what reaches it minus SQNR of its output, "
                 "against FP32, worst first. Full list: quantize/layer_errors.json. It does not see error that "
                 "grows downstream; the exclusions come from the sensitivity ranking below.</small></p>")
        h.append(_layer_chart(layers["worst"]))
    suggested = layers.get("suggested_exclude_nodes") or []
    sensitivity = layers.get("sensitivity") or []  # the manifest keeps 10 rows; the folder's file has all
    if sensitivity and folder is not None and (Path(folder) / "quantize" / "sensitivity.json").exists():
        sensitivity = json.loads((Path(folder) / "quantize" / "sensitivity.json").read_text())
    if sensitivity:
        h.append("<h2>Sensitivity: output SQNR with only this layer's weights in INT8</h2>"
                 "<p><small>The FP32 model run with one layer's weights as the Q/DQ model stores them (INT8 per "
                 "channel) and everything else in float; SQNR and cosine of the model outputs against FP32, most "
                 "sensitive first. Bar length: that layer's output noise, linear (10 dB lower = 10x longer); "
                 "red: suggested to keep in float. Full list: quantize/sensitivity.json.</small></p>")
        h.append(_sensitivity_chart(sensitivity, suggested))
    if suggested:
        h.append("<p>To keep the most sensitive layers in float, add to the recipe (then measure the run "
                 f"again):</p><pre>quantize:\n  exclude_nodes: {escape(json.dumps(suggested))}</pre>")
    h += _histogram_section(m, folder, histograms)
    if m.messages:
        h.append("<h2>Messages</h2><ul>" + "".join(f"<li>{escape(x)}</li>" for x in m.messages) + "</ul>")
    pk = ", ".join(f"{k} {v}" for k, v in m.environment.get("packages", {}).items())
    h.append(f"<p><small>{escape(str(m.environment.get('cpu')))} · {escape(pk)}</small></p></body></html>\n")
    return "\n".join(h)
