"""MNN: ask MNN's own converter, node by node, whether it can convert the model.

1. MNNConvert's ONNX operator list (`MNNConvert -f ONNX --OP`, the converter's registered ONNX op converters): a
   node whose operator is not in it, or whose domain is not the standard ONNX one, is "unsupported".
2. A trial conversion of the whole model, as a build would run it (in a child process: MNNConvert can abort
   natively): the operators it refuses ("These Op Not Support: ONNX::X") are "unsupported" on every node of that
   type; a conversion that fails or aborts without naming one is a model-level "unsupported" with its last words.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from convertctl.checks.model_facts import ModelFacts
from convertctl.checks.verdicts import NodeVerdict, TargetReport, not_installed_report, worst

TARGET = "mnn"
_TIMEOUT_S = 900


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


@cache
def onnx_ops() -> frozenset[str]:
    """The ONNX operators MNNConvert has converters for, as the installed converter lists them."""
    from convertctl.targets.mnn.tool import run_tool

    with tempfile.TemporaryDirectory(prefix="convertctl-mnn-") as tmp:
        run = run_tool("convert", ["MNNConvert", "-f", "ONNX", "--OP"], Path(tmp), "ops", 120)
    lines = run.lines()
    try:
        start = next(i for i, line in enumerate(lines) if "support Ops" in line) + 1
    except StopIteration:
        raise RuntimeError(f"MNNConvert --OP printed no operator list: {run.summary()}") from None
    return frozenset(line for line in lines[start:] if not line.startswith("Total:") and " " not in line)


def check_mnn(facts: ModelFacts) -> TargetReport:
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("_tools") is None:
        return not_installed_report(facts, TARGET, "mnn", "mnn")
    from convertctl.targets.mnn.target import refusal
    from convertctl.targets.mnn.tool import convert_argv, how_it_ended, run_tool

    version = importlib.metadata.version("mnn")
    known = onnx_ops()
    judged_by = f"MNNConvert {version}: its ONNX operator list ({len(known)} ops) + a trial conversion of the model"
    nodes: list[NodeVerdict] = []
    notes: list[str] = []
    for label, node in facts.nodes:
        domain = _domain(node)
        if domain:
            reason = (f"MNNConvert converts the standard ONNX domain only: {domain}::{node.op_type} has no "
                      "converter")
        elif node.op_type not in known:
            reason = f"{node.op_type} is not in MNNConvert {version}'s ONNX operator list"
        else:
            continue
        nodes.append(NodeVerdict(node=label, op_type=node.op_type, domain=domain, verdict="unsupported",
                                 reason=reason, suggestion="decompose it into supported operators before export, or "
                                 "register an MNN custom op (--allowCustomOp / --customOpLibs)",
                                 source=facts.sources.get(label)))
    with tempfile.TemporaryDirectory(prefix="convertctl-mnn-") as tmp:
        out = Path(tmp) / "trial.mnn"
        run = run_tool("convert", convert_argv(Path(facts.path).resolve(), out, False), Path(tmp), "trial",
                       _TIMEOUT_S)
        converted = out.exists() and "Converted Success" in run.text
    refused = run.refused_ops()
    flagged = {n.node for n in nodes}
    for label, node in facts.nodes:
        if node.op_type in refused and label not in flagged:
            nodes.append(NodeVerdict(node=label, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                                     reason=f"MNNConvert refuses it in the trial conversion (\"These Op Not Support: "
                                            f"ONNX::{node.op_type}\")", source=facts.sources.get(label)))
    if not converted and not refused and not nodes:
        how = how_it_ended(run.returncode) if run.returncode != 0 else "ended without writing the model"
        said = run.summary()
        nodes.append(NodeVerdict(node="", op_type="", verdict="unsupported",
                                 reason=f"the trial conversion fails: MNNConvert {how}" + (f": {said}" if said else "")))
    elif converted:
        notes.append(f"trial conversion succeeded in {run.seconds:.1f} s")
    elif refused:
        notes.append("the trial conversion failed: " + refusal(Path(facts.path), refused))
    return TargetReport(target=TARGET, version=version, judged_by=judged_by,
                        verdict=worst(n.verdict for n in nodes), nodes=nodes, notes=notes)
