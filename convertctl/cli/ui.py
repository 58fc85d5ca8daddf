"""Terminal output: progress on stderr (rich), a summary table, one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

from convertctl.cli import state

# Rich style of each stage, artifact and run status.
STATUS_STYLE = {"ok": "green", "partial": "yellow", "skipped": "yellow", "rolled_back": "yellow", "failed": "red",
                "error": "red", "measured": "green"}


def console(stderr: bool = True):
    """stderr for progress, logs and errors; stdout (stderr=False) for a command's result."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped into a CI log, rich would assume 80 columns and truncate artifact names: use a wide line instead.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, width=width)


def esc(text) -> str:
    """Our messages contain brackets (`convertctl[onnx]`, `[4, 3, 32, 32]`): never let rich read them as markup."""
    from rich.markup import escape

    return escape(str(text))


def print_error(message: str, hint: str | None) -> None:
    out = console()
    out.print(f"[bold red]error:[/] {esc(message)}", soft_wrap=True)
    if hint:
        out.print(f"[dim]hint:[/] {esc(hint)}", soft_wrap=True)


class ConsoleReporter:
    """Pipeline progress: a spinner while a stage runs, one line when it ends."""

    def __init__(self):
        self.out = console()
        self.status = None

    def start(self, stage: str, detail: str = "") -> None:
        if state.quiet:
            return
        self._stop()
        self.status = self.out.status(f"{stage} [dim]{detail}[/]")
        self.status.start()

    def finish(self, record) -> None:
        self._stop()
        if state.quiet:
            return
        from convertctl.report.markdown import worst

        name = getattr(record, "name", None) or f"build {record.id}"
        line = f"[{STATUS_STYLE.get(record.status, 'white')}]{record.status:>11}[/]  {esc(name):<24} {record.seconds:7.2f} s"
        if record.verification:
            c = record.verification[0]
            w = worst(c)
            parts = [] if w["cosine"] is None else [f"cosine {w['cosine']:.6f}"]
            parts += [] if w["max_abs"] is None else [f"max|Δ| {w['max_abs']:.2g}"]
            parts += [] if w["top1_agreement"] is None else [f"top-1 {w['top1_agreement']:.3f}"]
            decided = list(dict.fromkeys(o.decided_by for o in c.outputs.values() if o.decided_by))
            parts += [f"decided by {', '.join(decided)}"] if decided else []
            if parts:
                line += f"  vs {esc(c.against)}: " + ", ".join(parts)
        self.out.print(line, soft_wrap=True)
        notes = getattr(record, "findings", None) or ([record.reason] if getattr(record, "reason", None) else [])
        if state.verbose or record.status != "ok":
            for note in notes:
                self.out.print(f"             [dim]{esc(note)}[/]", soft_wrap=True)

    def measured(self, stage: str, record, seconds: float) -> None:
        """One latency line: `measured  latency onnxruntime_int8  2.10 s  p50 4.31 ms, p90 …, 232/s, 3.1x …`."""
        self._stop()
        if state.quiet:
            return
        from convertctl.report.markdown import latency_summary

        line = f"[{STATUS_STYLE.get(record.status, 'white')}]{record.status:>11}[/]  {esc(stage):<24} {seconds:7.2f} s"
        if record.status == "measured":
            line += f"  {esc(latency_summary(record))}"
        self.out.print(line, soft_wrap=True)
        if record.reason:
            self.out.print(f"             [dim]{esc(record.reason)}[/]", soft_wrap=True)

    def _stop(self):
        if self.status is not None:
            self.status.stop()
            self.status = None


def show_result(manifest, folder) -> int:
    """Print the result (JSON on stdout with --json, else a summary table) and return the exit code."""
    if state.json_output:
        sys.stdout.write(manifest.model_dump_json(indent=2) + "\n")
        return manifest.exit_code
    if state.quiet and manifest.exit_code == 0:
        print(folder)
        return 0
    from rich.table import Table

    from convertctl.report.markdown import baseline_line, fmt_ms, fmt_speedup, worst

    out = console()
    if manifest.artifacts:
        table = Table(title=f"{manifest.recipe.name}: artifacts", title_justify="left")
        right = ("size MB", "cosine", "max abs err", "top-1 agr.", "p50 ms", "vs FP32 ONNX")
        for col in ("artifact", "status", "size MB", "cosine", "max abs err", "top-1 agr.", "p50 ms", "vs FP32 ONNX",
                    "runs with"):
            table.add_column(col, justify="right" if col in right else "left")
        for a in manifest.artifacts:
            w = worst(a.verification[0]) if a.verification else {}
            fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
            lat = a.latency
            table.add_row(
                esc(a.id), f"[{STATUS_STYLE.get(a.status, 'white')}]{a.status}[/]", f"{sum(f.bytes for f in a.files) / 1e6:.1f}",
                fmt(w.get("cosine"), ".6f"), fmt(w.get("max_abs"), ".2g"), fmt(w.get("top1_agreement"), ".3f"),
                fmt_ms(lat.p50_ms if lat else None), fmt_speedup(lat.speedup if lat else None),
                esc(", ".join(f"{k}={v}" for k, v in a.effective.items() if k not in ("providers",))),
            )
        out.print(table)
        line = baseline_line(manifest)
        if line:
            out.print(esc(line), soft_wrap=True)
        for a in manifest.artifacts:
            if a.reason:
                out.print(f"[{STATUS_STYLE.get(a.status, 'white')}]{esc(a.id)}[/]: {esc(a.reason)}", soft_wrap=True)
            if a.latency and a.latency.reason:
                out.print(f"[{STATUS_STYLE.get(a.latency.status, 'white')}]{esc(a.id)}[/]: latency {a.latency.status}: "
                          f"{esc(a.latency.reason)}", soft_wrap=True)
    for msg in manifest.messages:
        out.print(f"[yellow]note:[/] {esc(msg)}", soft_wrap=True)
    style = STATUS_STYLE.get(manifest.status, "white")
    top = [p.name + ("/" if p.is_dir() else "") for p in sorted(Path(folder).iterdir())
           if not p.name.startswith(".")] if Path(folder).is_dir() else []
    out.print(f"[bold {style}]{manifest.status}[/] in {manifest.seconds:.1f} s → {esc(folder)}  "
              f"[dim]({esc(', '.join(top))})[/]", soft_wrap=True)
    return manifest.exit_code
