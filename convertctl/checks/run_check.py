"""`convertctl check`: the model's facts read once, then every requested target judged on them.

Model-level findings (checks/model_facts.py: dtypes, dynamic dims, size, checker complaints) apply to
every target and are merged into each target's report: a "conditional" finding makes the target at
least conditional. Node-level "unknown operator" findings are not merged: every target's judge
(`Target.check`, in its package under convertctl/targets/) judges every node itself (often by asking the
runtime, which may well know a custom operator such as com.microsoft's), so its own verdict on that node stands.
"""

from __future__ import annotations

import time
from pathlib import Path

from convertctl.checks.verdicts import CheckReport, NodeVerdict, TargetReport, roll_up, worst
from convertctl.errors import UsageError


def _checker(target: str):
    """The target's judge (`Target.check`, which imports what it needs when called), or None when it has none."""
    from convertctl.targets import registry

    return registry.get(target).check


def _no_checker_report(facts, target: str) -> TargetReport:
    reason = f"unknown: no {target} checker in this build of convertctl"
    nodes = [NodeVerdict(node=name, op_type=node.op_type, domain="" if node.domain in ("", "ai.onnx") else node.domain,
                         verdict="unknown", reason=reason, source=facts.sources.get(name))
             for name, node in facts.nodes]
    nodes.append(NodeVerdict(node="", op_type="", verdict="unknown", reason=reason))
    return TargetReport(target=target, version=None, judged_by="nothing: no checker", verdict="unknown",
                        nodes=nodes, notes=[reason])


def _merge(report: TargetReport, findings: list[NodeVerdict], facts) -> TargetReport:
    have = {(n.node, n.verdict, n.reason) for n in report.nodes}
    merged = list(report.nodes)
    for f in findings:
        if f.verdict == "unknown" and f.node:
            continue  # the target judged that node itself
        if f.kind == "dynamic_dim":
            # ONNX Runtime and OpenVINO run dynamic shapes as they are; TensorRT needs an optimization
            # profile and its checker says so in its own words. The finding stays in CheckReport.findings.
            continue
        if (f.node, f.verdict, f.reason) not in have:
            merged.append(f)
            have.add((f.node, f.verdict, f.reason))
    for n in merged:  # name the source layer wherever the exporter kept it
        if n.node and n.source is None:
            n.source = facts.sources.get(n.node)
    return report.model_copy(update={
        "nodes": merged,
        "verdict": worst([report.verdict, *(n.verdict for n in merged)]),
        "ops": roll_up(merged, facts.op_counts, facts.opsets),
    })


def check_model(path: Path, targets: list[str], dim_ranges: dict[str, tuple[int, int, int]] | None = None,
                inputs=None, source_framework: str | None = None) -> CheckReport:
    """Judge the ONNX model at `path` for each target (default: every registered one). `dim_ranges`: (min, opt,
    max) per dim name; `inputs`: the recipe's input specs, whose shapes may name the model's dynamic dims
    differently or fix them (model_facts.input_specs): the check then names them as the recipe does."""
    from convertctl.targets.registry import target_names

    known = target_names()
    wanted = []
    for t in targets or known:
        name = str(t).strip().lower()
        if name not in known:
            raise UsageError(f"unknown target {t!r}: known targets are {', '.join(known)}")
        if name not in wanted:
            wanted.append(name)
    start = time.perf_counter()
    from convertctl.checks.model_facts import analyse

    facts = analyse(Path(path), dim_ranges, inputs)
    facts.source_framework = source_framework
    analysed = time.perf_counter() - start
    reports = []
    for target in wanted:
        t0 = time.perf_counter()
        check = _checker(target)
        report = check(facts) if check is not None else _no_checker_report(facts, target)
        report = _merge(report, facts.findings, facts)
        report.notes.append(f"judged in {time.perf_counter() - t0:.2f} s")
        reports.append(report)
    return CheckReport(
        model=str(path), sha256=facts.sha256, ir_version=facts.ir_version, opsets=facts.opsets,
        node_count=len(facts.nodes), findings=facts.findings, targets=reports,
        seconds=round(time.perf_counter() - start, 3),
        notes=[*facts.notes, f"model read, checked and shape-inferred in {analysed:.2f} s"],
    )
