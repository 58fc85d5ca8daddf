"""`convertctl check`: operator, dtype and shape support of one ONNX model on every target, before any build.

The verdicts come from convertctl.checks.run_check (each target's judge: the runtime itself, or the
target's support table); this file only gathers the job (a model file, or a recipe exported first), renders the
report (a table on stderr, JSON on stdout, check.json + check.md in a folder) and picks the exit code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from convertctl.cli import state, with_targets
from convertctl.cli.common import common_options, is_recipe
from convertctl.errors import (
    EXIT_OK,
    EXIT_UNSUPPORTED_OPERATOR,
    ConvertctlError,
    SourceModelError,
    UsageError,
)

VERDICT_STYLE = {"supported": "green", "conditional": "yellow", "unsupported": "bold red", "unknown": "magenta"}


@click.command("check")
@click.argument("model")
@click.option("-t", "--target", "targets", multiple=True, metavar="NAME",
              help=with_targets("Target to check against: {targets} (repeatable; default for a recipe: "
                                "its targets' runtimes)."))
@click.option("--dim", "dims", multiple=True, metavar="NAME=MIN:OPT:MAX",
              help="Range of a symbolic dim, e.g. batch=1:4:16 (or batch=1:16, x_2=640), under the names the "
                   "check lists (an unnamed dim: batch at axis 0, else <input>_<axis>); wins over the recipe's `dims`.")
@click.option("-o", "--output", type=click.Path(), help="Also write check.json and check.md to this folder "
                                                       "(and model.onnx, when a recipe was exported).")
@common_options
def check(model, targets, dims, output):
    """Check that every operator, dtype and dynamic dim of MODEL works on each target, before any build.

    \b
    MODEL is an ONNX file (give --target), or a recipe (.yaml): a PyTorch source is exported first,
    and every target runtime of the recipe is checked with the recipe's `dims` as ranges.
    Each target is judged by its own checker: the runtime itself (per node) where it can answer, else the
    target's support table.
    Exit codes: 0 no target rejects the model (conditional/unknown verdicts print a warning),
    3 a requested target has an unsupported operator, 2 usage errors or an invalid model.
    Example: convertctl check model.onnx -t onnxruntime (`convertctl targets` lists the targets)
    """
    from convertctl.data.dims import parse_dim_option

    names = _target_names(targets)
    ranges = dict(parse_dim_option(d) for d in dims)
    if is_recipe(model):
        _check_recipe(model, names, ranges, output)
    else:
        _check_model_file(model, names, ranges, output)


def _target_names(given) -> list[str]:
    # every registered target: its judge, or the "no checker" report when it has none (checks/run_check.py)
    from convertctl.targets.registry import target_names

    known = target_names()
    names = []
    for name in given:
        if name not in known:
            raise UsageError(f"unknown target {name!r}", hint=f"`check` knows: {', '.join(known)}")
        if name not in names:
            names.append(name)
    return names


def _check_model_file(model: str, names: list[str], ranges: dict, output: str | None) -> None:
    path = Path(model)
    if not names:
        raise UsageError("no target given", hint=with_targets("add --target NAME (one or more of: {targets})"))
    if not path.exists():
        raise SourceModelError(f"model file not found: {path}")
    what = _not_onnx(path)
    if path.is_dir() and not what:
        raise UsageError(f"{path} is a folder, not an ONNX model",
                         hint="give the .onnx file in it, or a recipe (.yaml)")
    if what:
        raise UsageError(f"{path} is {what}, not an ONNX model: `check` takes an ONNX file or a recipe (.yaml)",
                         hint=f"export it first (convertctl export {path} -o DIR, then check DIR/model.onnx), or "
                              "give a recipe for it (convertctl recipe init)")
    if ranges:
        _known_dims(ranges, _model_dims(path), f"{path.name}'s inputs")
    report = _run_check(path, names, ranges or None)
    _finish(report, output, extra_code=EXIT_OK)


def _not_onnx(path: Path) -> str | None:
    """What a file given to `check` is when it is another framework's model (by content, then by name)."""
    from convertctl.cli.common import torch_kind
    from convertctl.frontends.formats import looks_like_model
    from convertctl.frontends.pytorch.source import TORCH_SUFFIXES

    if path.is_dir():  # a SavedModel or a Paddle model folder: `export` takes it
        from convertctl.errors import ConvertctlError
        from convertctl.frontends.formats import detect

        try:
            found = detect(path)
        except ConvertctlError:
            return None
        return {"tensorflow": "a TensorFlow model folder", "paddle": "a Paddle model folder"}.get(found.framework)
    kind = torch_kind(str(path))
    if kind:
        return "a TorchScript file" if kind == "torchscript" else "a PyTorch checkpoint (torch.save)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (a Keras .h5 model)"
    if head.startswith(b"PK") and path.suffix.lower() == ".keras":
        return "a Keras 3 .keras file"
    if path.suffix.lower() in (*TORCH_SUFFIXES, ".py"):
        return "a PyTorch file"
    if looks_like_model(str(path)):
        return "a Paddle or TensorFlow model"
    return None


def _model_dims(path: Path) -> dict[str, dict[int, str]]:
    """Input name -> {axis: dim name} of every dynamic dim of an ONNX model, named as --dim takes them."""
    from convertctl.data.dims import onnx_input_dims
    from convertctl.model import load_proto

    graph = load_proto(path).graph
    inits = {t.name for t in graph.initializer}
    return {vi.name: {axis: d for axis, d in enumerate(onnx_input_dims(vi)) if isinstance(d, str)}
            for vi in graph.input if vi.name not in inits and vi.type.HasField("tensor_type")}


def _known_dims(ranges: dict, known: dict[str, dict[int, str]], where: str) -> None:
    """A --dim that names no dim of the model would be ignored: refuse it, listing the names it may take."""
    names = list(dict.fromkeys(d for axes in known.values() for d in axes.values()))
    for name in ranges:
        if name not in names:
            raise UsageError(f"--dim {name}: no dynamic dim of that name in {where}; its dynamic dims are: "
                             f"{', '.join(names) or 'none (every dim is fixed)'}")


def _check_recipe(recipe_file: str, names: list[str], ranges: dict, output: str | None) -> None:
    import tempfile

    from convertctl.recipe import explicit_dim_ranges, load_recipe

    recipe, _ = load_recipe(Path(recipe_file))
    if not names:
        for spec in recipe.targets:
            if spec.runtime not in names:
                names.append(spec.runtime)
    if not names:
        raise UsageError(f"{recipe_file} has no targets", hint="add --target NAME, or a `targets` section")
    if recipe.inputs and ranges:
        _known_dims(ranges, {s.name: {a: d for a, d in enumerate(s.shape) if isinstance(d, str)}
                             for s in recipe.inputs}, f"{recipe_file}'s inputs")
    ranges = {**explicit_dim_ranges(recipe), **ranges}
    if recipe.source.framework == "onnx":  # the ONNX source is used as is: nothing to export
        if not recipe.source.path.is_file():
            raise SourceModelError(f"model file not found: {recipe.source.path}")
        if ranges and not recipe.inputs:
            _known_dims(ranges, _model_dims(recipe.source.path), f"{recipe.source.path.name}'s inputs")
        # the recipe's inputs may name the model's dims differently, or fix them: the check maps them by axis
        report = _run_check(recipe.source.path, names, ranges or None, recipe.inputs)
        _finish(report, output, extra_code=EXIT_OK)
        return
    with tempfile.TemporaryDirectory(prefix="convertctl-check-") as tmp:
        try:
            onnx_path, export_code = _export(recipe_file, Path(tmp) / "export")
            report = _run_check(onnx_path, names, ranges or None, recipe.inputs)
        except ConvertctlError as exc:
            raise _without_folder(exc, Path(tmp), recipe_file) from None
        if output:
            from convertctl.model import copy_model

            folder = _output_folder(output)
            copy_model(onnx_path, folder, onnx_path.name)  # the model and its external data, if any
            report.model = str((folder / onnx_path.name).resolve())
        else:
            report.model = f"{recipe_file} (exported to ONNX, not kept: give -o FOLDER to keep it)"
        _finish(report, output, extra_code=export_code)


def _without_folder(exc: ConvertctlError, tmp: Path, recipe_file: str) -> ConvertctlError:
    """The export's temporary folder is deleted when `check` returns: the error must not point into it (its
    "partial output kept in ..." and "full log: ..." hints would name files that no longer exist)."""
    import os

    gone = {str(tmp), os.path.realpath(tmp)}
    for folder in gone:
        exc.message = exc.message.replace(folder, "(a temporary folder, deleted)")
    kept = [part for part in (exc.hint or "").split("; ") if part and not any(g in part for g in gone)]
    kept.append(f"to keep the exported files and logs, export it first: convertctl export {recipe_file} -o FOLDER")
    exc.hint = "; ".join(kept)
    return exc


def _export(recipe_file: str, folder: Path) -> tuple[Path, int]:
    """Export the recipe's source with the pipeline (export stage only) into `folder`; the ONNX and an exit code
    (4 when the exported ONNX does not match the source: it is still checked)."""
    from convertctl.cli.common import load_job
    from convertctl.cli.run import stdout_to_stderr
    from convertctl.cli.ui import ConsoleReporter, console, esc
    from convertctl.errors import EXIT_ACCURACY_GATE
    from convertctl.pipeline import run as run_pipeline

    recipe, sha, path = load_job(recipe_file, stages=["export"])
    with stdout_to_stderr(state.json_output or state.quiet):
        manifest = run_pipeline(recipe, sha, path, folder, ConsoleReporter())
    onnx_path = folder / "model.onnx"
    if manifest.status == "ok" and onnx_path.is_file():
        return onnx_path, EXIT_OK
    for msg in manifest.messages:
        console().print(f"[yellow]note:[/] {esc(msg)}", soft_wrap=True)
    console().print("[yellow]warning:[/] the exported ONNX failed its check against the source model; "
                    "checking it anyway", soft_wrap=True)
    return folder / "export" / "model.onnx", EXIT_ACCURACY_GATE


def _run_check(path: Path, names: list[str], ranges, inputs=None):
    from convertctl.checks.run_check import check_model
    from convertctl.cli.run import stdout_to_stderr
    from convertctl.cli.ui import console

    status = None
    if not (state.quiet or state.json_output):
        status = console().status(f"check [dim]{', '.join(names)}[/]")
        status.start()
    try:
        with stdout_to_stderr(state.json_output or state.quiet):  # runtimes may print: keep stdout for the result
            return check_model(path, names, ranges, inputs)
    finally:
        if status is not None:
            status.stop()


def _output_folder(output: str) -> Path:
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output path {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {folder}: {exc.strerror or exc}",
                         hint="choose another folder with -o") from None
    return folder


def _finish(report, output: str | None, extra_code: int) -> None:
    if output:
        folder = _output_folder(output)
        (folder / "check.json").write_text(report.model_dump_json(indent=2) + "\n")
        (folder / "check.md").write_text(render_markdown(report))
    code = EXIT_UNSUPPORTED_OPERATOR if report.unsupported else extra_code
    if state.json_output:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        show(report, output)
    sys.exit(code)


# -- rendering --------------------------------------------------------------------------------------------------

def op_label(op_type: str, domain: str) -> str:
    return f"{domain}.{op_type}" if domain else op_type


def operator_rows(report) -> list[dict]:
    """One row per (domain, op_type) of the model: count, opset and each target's verdict."""
    rows: dict[tuple[str, str], dict] = {}
    for t in report.targets:
        for op in t.ops:
            row = rows.setdefault((op.domain, op.op_type), {"op_type": op.op_type, "domain": op.domain,
                                                            "count": op.count, "opset": op.opset, "verdicts": {}})
            row["verdicts"][t.target] = op.verdict
    return list(rows.values())


def model_level(report) -> dict[str, str]:
    """Each target's worst model-level verdict (findings not tied to a node), where one is not "supported"."""
    from convertctl.checks.verdicts import worst

    out = {}
    for t in report.targets:
        found = [n.verdict for n in t.nodes if not n.node]
        if found and worst(found) != "supported":
            out[t.target] = worst(found)
    return out


def problems(report) -> list[dict]:
    """Every node (or model-level finding) that is not "supported", the same finding on several targets once."""
    from convertctl.checks.verdicts import RANK

    grouped: dict[tuple, dict] = {}
    # a runtime that is not installed judged nothing: its model-level line says so, not one line per node
    missing = {t.target for t in report.targets if t.verdict == "unknown" and _runtime_extra(t.target)}
    entries = [(t.target, n) for t in report.targets for n in t.nodes if not (t.target in missing and n.node)]
    seen = {(n.node, n.op_type, n.domain, n.reason) for _, n in entries}
    # the dims without a range are one suggestion: a target's own (TensorRT's profile, for all of them at once)
    # stands for the model-level ones (one per dim, for the targets that run any size)
    dims_said = any(n.kind == "dynamic_dim" for _, n in entries)
    entries += [("all", n) for n in report.findings if (n.node, n.op_type, n.domain, n.reason) not in seen
                and not (dims_said and n.kind == "dynamic_dim")]
    for target, n in entries:
        if n.verdict == "supported":
            continue
        key = (n.node, n.op_type, n.domain, n.verdict, n.reason, n.suggestion, n.source)
        grouped.setdefault(key, {**n.model_dump(), "targets": []})["targets"].append(target)
    return sorted(grouped.values(), key=lambda p: -RANK[p["verdict"]])


def summary_lines(report) -> list[tuple[str, str]]:
    """(verdict, text) per target, worst first: what the user must know before building."""
    from convertctl.checks.verdicts import RANK
    from convertctl.errors import install_hint

    lines = []
    for t in sorted(report.targets, key=lambda t: -RANK[t.verdict]):
        bad = [n for n in t.nodes if n.verdict == t.verdict]
        nodes = ", ".join(f"{n.node} ({op_label(n.op_type, n.domain)})" if n.node else
                          (n.reason.removeprefix(f"{n.verdict}: ") or op_label(n.op_type, n.domain) or "model")
                          for n in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        if t.verdict == "unsupported":
            text = f"{t.target}: unsupported: {nodes}{more}"
        elif t.verdict == "conditional":
            text = f"{t.target}: supported with conditions: {nodes}{more}"
        elif t.verdict == "unknown":
            extra = _runtime_extra(t.target)
            if extra:
                text = (f"{t.target}: unknown: the {t.target} runtime is not installed, so nothing was judged "
                        f"(install it with: {install_hint(extra)})")
            else:
                text = f"{t.target}: unknown: could not judge {nodes}{more}"
        else:
            text = f"{t.target}: supported"
        lines.append((t.verdict, text))
    return lines


def _runtime_extra(name: str) -> str | None:
    """The extra that installs a target's runtime, when that runtime is a build target and is not installed."""
    from convertctl.targets import registry

    if name not in registry.target_names():
        return None
    target = registry.get(name)
    return None if target.installed() else target.extra


def _header(report) -> str:
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(report.opsets.items()))
    return f"{Path(report.model).name}: IR {report.ir_version}, opset {opsets}, {report.node_count} nodes"


def show(report, output: str | None) -> None:
    """The report on stderr: operator table, the nodes that are not supported, one verdict line per target."""
    from rich.table import Table

    from convertctl.cli.ui import console, esc

    out = console()
    targets = [t.target for t in report.targets]
    rows = operator_rows(report)
    if not state.quiet:
        table = Table(title=esc(_header(report)), title_justify="left")
        with_domain = any(r["domain"] for r in rows)
        table.add_column("op")
        if with_domain:
            table.add_column("domain")
        table.add_column("count", justify="right")
        table.add_column("opset", justify="right")
        for name in targets:
            table.add_column(name)

        def cells(verdicts: dict) -> list[str]:
            return [_styled(verdicts[name]) if name in verdicts else "–" for name in targets]

        for r in rows:
            table.add_row(esc(r["op_type"]), *([esc(r["domain"])] if with_domain else []), str(r["count"]),
                          str(r["opset"]), *cells(r["verdicts"]))
        level = model_level(report)
        if level:
            table.add_row("(model)", *([""] if with_domain else []), "", "",
                          *[_styled(level.get(name, "supported")) for name in targets])
        out.print(table)
        out.print("[dim]judged by: " + esc("; ".join(f"{t.target}: {t.judged_by}" for t in report.targets)) + "[/]",
                  soft_wrap=True)
    found = problems(report)
    if found:
        table = Table(title="not fully supported", title_justify="left")
        with_source = any(p["source"] for p in found)  # the exporter kept source names (e.g. PyTorch modules)
        for col in ("target", "verdict", "node", "op", *(["source layer"] if with_source else []), "reason",
                    "suggestion"):
            table.add_column(col, overflow="fold")  # long names and module paths: wrap, never cut
        for p in found:
            table.add_row(esc(", ".join(p["targets"])), _styled(p["verdict"]), esc(p["node"] or "(model)"),
                          esc(op_label(p["op_type"], p["domain"]) or "–"),
                          *([esc(p["source"] or "–")] if with_source else []),
                          esc(p["reason"] or "–"), esc(p["suggestion"] or "–"))
        out.print(table)
    if state.verbose:  # the checkers' notes (what they could not check, timings); always in check.json/check.md
        for note in report.notes:
            out.print(f"[dim]{esc(note)}[/]", soft_wrap=True)
        for t in report.targets:
            for note in t.notes:
                out.print(f"[dim]{esc(t.target)}: {esc(note)}[/]", soft_wrap=True)
    for verdict, text in summary_lines(report):
        if verdict == "supported":
            if not state.quiet:
                out.print(f"[green]ok:[/] {esc(text)}", soft_wrap=True)
        elif verdict == "unsupported":
            out.print(f"[bold red]error:[/] {esc(text)}", soft_wrap=True)
        else:
            out.print(f"[yellow]warning:[/] {esc(text)}", soft_wrap=True)
    where = f" → {esc(output)} (check.json, check.md)" if output else ""
    if report.unsupported:
        out.print(f"[bold red]unsupported[/] on {esc(', '.join(report.unsupported))} in {report.seconds:.1f} s{where}",
                  soft_wrap=True)
    else:
        out.print(f"[bold green]no target rejects the model[/] ({esc(', '.join(targets))}) in "
                  f"{report.seconds:.1f} s{where}", soft_wrap=True)


def _styled(verdict: str) -> str:
    return f"[{VERDICT_STYLE.get(verdict, 'white')}]{verdict}[/]"


def render_markdown(report) -> str:
    """check.md: the same content as the terminal output, as Markdown."""

    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else "–"

    targets = [t.target for t in report.targets]
    lines = [f"# convertctl check: {Path(report.model).name}", "",
             f"- model: `{report.model}`", f"- sha256: `{report.sha256}`",
             f"- IR {report.ir_version}; opsets: " + ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in
                                                               sorted(report.opsets.items())),
             f"- {report.node_count} nodes; checked in {report.seconds:.2f} s", ""]
    lines += ["| target | verdict | judged by |", "|---|---|---|"]
    lines += [f"| {t.target} | **{t.verdict}** | {cell(t.judged_by)} |" for t in report.targets]
    lines += ["", "## Operators", "", "| op | domain | count | opset | " + " | ".join(targets) + " |",
              "|---|---|---:|---:|" + "---|" * len(targets)]
    for r in operator_rows(report):
        lines.append(f"| {cell(r['op_type'])} | {cell(r['domain'])} | {r['count']} | {r['opset']} | "
                     + " | ".join(r["verdicts"].get(name, "–") for name in targets) + " |")
    level = model_level(report)
    if level:
        lines.append("| (model) | – | | | " + " | ".join(level.get(name, "supported") for name in targets) + " |")
    found = problems(report)
    if found:
        lines += ["", "## Not fully supported", "",
                  "| target | verdict | node | op | source layer | reason | suggestion |", "|---|---|---|---|---|---|---|"]
        for p in found:
            lines.append(f"| {cell(', '.join(p['targets']))} | {p['verdict']} | {cell(p['node'] or '(model)')} | "
                         f"{cell(op_label(p['op_type'], p['domain']))} | {cell(p['source'])} | {cell(p['reason'])} | "
                         f"{cell(p['suggestion'])} |")
    notes = [f"- {n}" for n in report.notes] + [f"- {t.target}: {n}" for t in report.targets for n in t.notes]
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Verdict", "", *[f"- {text}" for _, text in summary_lines(report)]]
    return "\n".join(lines) + "\n"
