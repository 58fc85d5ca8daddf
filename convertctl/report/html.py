"""report.html: one self-contained file (no scripts, no external assets), rendered from the manifest
alone: the stages, every artifact's verification and accuracy, and a bar chart of the per-layer
quantization error when the run quantized."""

from __future__ import annotations

from html import escape

from convertctl.report.manifest import Manifest
from convertctl.report.markdown import worst

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#137333}.failed,.error{color:#c5221f}
.skipped,.partial,.rolled_back{color:#b06000}small{color:#666}"""


def _num(v, fmt=".4g") -> str:
    return "–" if v is None else format(v, fmt)


def _status(s: str) -> str:
    return f'<span class="{escape(s)}">{escape(s)}</span>'


def _layer_chart(rows: list[dict], width: int = 700) -> str:
    """Horizontal bars: the error each layer introduces (dB), worst first."""
    rows = rows[:25]
    top = max((r["introduced_db"] for r in rows), default=0) or 1.0
    bar_h, label_w = 16, 330
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + width + 60}" '
             f'height="{bar_h * len(rows) + 10}" role="img" aria-label="per-layer quantization error">']
    for i, r in enumerate(rows):
        y = 5 + i * bar_h
        w = max(1.0, width * r["introduced_db"] / top)
        label = f"{r['node']} ({r.get('source') or r['op']})"
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(label)}</text>'
                     f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{bar_h - 4}" fill="#d93025"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" font-size="11">{r["introduced_db"]:.1f} dB</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(m: Manifest) -> str:
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
    quant = next((s for s in m.stages if s.name == "quantize"), None)
    layers = (quant.details.get("layers") or {}) if quant else {}
    if layers.get("worst"):
        h.append(f"<h2>Per-layer quantization error ({escape(layers['model'])})</h2>"
                 "<p><small>Error each layer introduces: SQNR of what reaches it minus SQNR of its output, "
                 "against FP32, worst first. Full list: quantize/layer_errors.json.</small></p>")
        h.append(_layer_chart(layers["worst"]))
        if layers.get("suggested_exclude_nodes"):
            h.append("<p>To keep the worst in float, add to the recipe:</p><pre>quantize:\n  exclude_nodes: "
                     f"{escape(str(layers['suggested_exclude_nodes']))}</pre>")
    if m.messages:
        h.append("<h2>Messages</h2><ul>" + "".join(f"<li>{escape(x)}</li>" for x in m.messages) + "</ul>")
    pk = ", ".join(f"{k} {v}" for k, v in m.environment.get("packages", {}).items())
    h.append(f"<p><small>{escape(str(m.environment.get('cpu')))} · {escape(pk)}</small></p></body></html>\n")
    return "\n".join(h)
