"""ncnn: a trial conversion of the whole model with the installed pnnx, then the result loaded and run once in ncnn.

pnnx is the converter a build uses, so its verdict is the build's: every operator it reports as `todo` (no ncnn
conversion) or leaves as a layer type the installed ncnn does not have is "unsupported" on every ONNX node of that
operator. pnnx rewrites the graph (fusions, constant folding, torch-style ops) and names the ncnn layers itself, so
nodes map back by operator type, not one by one. A model pnnx converts is then loaded into ncnn and run once on
zeros at the traced shape: a failure there is the model's. One conversion takes seconds (pnnx's whole pipeline),
where one per node signature would take minutes on a large model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from convertctl.checks.model_facts import ModelFacts, one_line
from convertctl.checks.verdicts import NodeVerdict, TargetReport, not_installed_report, worst
from convertctl.errors import ConvertctlError, MissingDependencyError, require

TARGET = "ncnn"
_UNRANGED = 64  # the size a dynamic dim without a range is traced at (check only; the build needs a range)


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def check_ncnn(facts: ModelFacts) -> TargetReport:
    try:
        ncnn = require("ncnn", "ncnn")
        from convertctl.targets.ncnn import convert as cv

        cv.pnnx_binary()
    except MissingDependencyError:
        return not_installed_report(facts, TARGET, "ncnn", "ncnn / pnnx")
    import importlib.metadata

    from convertctl.targets.ncnn.target import onnx_io

    version = importlib.metadata.version("ncnn")
    pnnx = importlib.metadata.version("pnnx")
    judged_by = f"pnnx {pnnx} trial conversion of the whole model + ncnn {version} load and one run"
    nodes: list[NodeVerdict] = []
    notes: list[str] = []

    def report(extra: list[NodeVerdict]) -> TargetReport:
        allv = nodes + extra
        return TargetReport(target=TARGET, version=version, judged_by=judged_by,
                            verdict=worst(n.verdict for n in allv), nodes=allv, notes=notes)

    ins, outs, pairs = onnx_io(facts.path)
    dims = dict(facts.dim_ranges)
    for spec in facts.inputs:  # a dynamic dim without a range is traced at a fixed size, and said so
        for i, d in enumerate(spec.get("shape") or []):
            if isinstance(d, str) and d not in dims and i != spec.get("batch_axis", 0):
                dims[d] = (_UNRANGED, _UNRANGED, _UNRANGED)
                notes.append(f"dim {d} of {spec['name']} has no range: traced at {_UNRANGED} (--dim sets it)")
    try:
        shapes, shapes2, more = cv.input_shapes(ins, list(facts.inputs), dims)
    except ConvertctlError as exc:
        return report([NodeVerdict(node="", op_type="", verdict="unknown", reason=f"not judged: {exc.message}",
                                   suggestion=exc.hint)])
    notes += more
    with tempfile.TemporaryDirectory(prefix="convertctl-ncnn-check-") as tmp:
        scratch = Path(tmp)
        try:
            conv = cv.run_pnnx(facts.path, scratch, cv.command(shapes, shapes2, False, 2), timeout=600,
                               shapes=shapes)
        except ConvertctlError as exc:  # a crash or timeout: the nodes the one-node trials named, else the model
            named = [(label, node) for label, node in facts.nodes if f"({label})" in exc.message]
            return report([NodeVerdict(node=label, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                                       reason=exc.message, suggestion=exc.hint, source=facts.sources.get(label))
                           for label, node in named] or
                          [NodeVerdict(node="", op_type="", verdict="unsupported", reason=exc.message,
                                       suggestion=exc.hint)])
        notes.append(f"pnnx converted in {conv.seconds:.1f} s: {cv.command(shapes, shapes2, False, 2)[1]}"
                     + (f" {cv.command(shapes, shapes2, False, 2)[2]}" if shapes2 else ""))
        if not conv.ok:
            return report([NodeVerdict(node="", op_type="", verdict="unsupported",
                                       reason=cv.failure(conv, pairs) or "pnnx wrote no ncnn model")])
        bad = conv.todo or cv.unknown_layers(conv.layer_types)
        if bad:
            flagged = _by_operator(facts, bad, None)
            unmapped = [op for op in bad if not cv.onnx_nodes_of(op, pairs)]
            for op in unmapped:  # a pnnx operator no ONNX op type spells: said of the model
                flagged.append(NodeVerdict(node="", op_type=op, verdict="unsupported",
                                           reason=f"pnnx {pnnx} has no ncnn conversion for {op} (from an ONNX "
                                                  "operator it rewrote; its name does not say which)"))
            return report(flagged)
        trouble = _trial_run(ncnn, scratch, shapes, [name for name, _ in outs])
        if trouble:
            return report([NodeVerdict(node="", op_type="", verdict="unsupported", reason=trouble)])
    return report([])


def _by_operator(facts: ModelFacts, ops: list[str], reason: str | None) -> list[NodeVerdict]:
    """Every ONNX node of each operator pnnx could not convert, "unsupported"."""
    from convertctl.targets.ncnn.convert import onnx_nodes_of

    pairs = [(label, node.op_type) for label, node in facts.nodes]
    node_of = dict(facts.nodes)
    found = []
    for op in ops:
        for label in onnx_nodes_of(op, pairs):
            node = node_of[label]
            found.append(NodeVerdict(
                node=label, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                reason=reason or f"pnnx has no ncnn conversion for {op}: it leaves it as a layer type ncnn does not "
                                 "have",
                suggestion="replace it before export (or decompose it into operators ncnn has), or register a "
                           "custom ncnn layer", source=facts.sources.get(label)))
    return found


def _trial_run(ncnn, folder: Path, shapes, out_names: list[str]) -> str | None:
    """Load the converted model into ncnn and run it once on zeros (one sample): its message, or None."""
    import numpy as np

    from convertctl.targets.ncnn.convert import BIN, PARAM

    net = ncnn.Net()
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    if net.load_param(str(folder / PARAM)) != 0 or net.load_model(str(folder / BIN)) != 0:
        return "ncnn cannot load the model pnnx wrote (a layer type or parameter it does not know)"
    ex = net.create_extractor()
    keep = []
    for k, (shape, _) in enumerate(shapes):
        arr = np.zeros(shape[1:] if len(shape) > 1 else shape, np.float32)
        keep.append(arr)
        ex.input(f"in{k}", ncnn.Mat(arr))
    for k, name in enumerate(out_names):
        ret, _ = ex.extract(f"out{k}")
        if ret != 0:
            return one_line(f"ncnn fails to compute output {name} (out{k}) of pnnx's model: extract returned {ret}")
    return None
