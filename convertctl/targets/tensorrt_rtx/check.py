"""TensorRT-RTX target of `convertctl check`: every node judged by TensorRT-RTX's own ONNX parser.

TensorRT for RTX installs with pip and its parser runs without a GPU, so unlike the `tensorrt` target (judged from a
support table) this judge is NVIDIA's parser itself: the shared parser code of the tensorrt package
(targets/tensorrt/parser.py) runs `parse_from_file` and `supports_model_v2` with the `tensorrt_rtx` module, in a
child process, so a native crash or abort of the parser ends that child and the verdict says so ("unknown"), never
the check. Each parser error names a top-level node (and the failing node inside an If/Loop body, when it is
there); the verdict goes to that node, with the source-framework layer where the exporter kept it:

- a node an error names: "unsupported", NVIDIA's message as the reason;
- an error tied to no node: a model-level "unsupported";
- a node the parser gave no word on (the parse failed elsewhere and the partition left it out): "unknown";
- every other node: supported;
- dynamic dims without a range: "conditional" (an engine needs an optimization profile), as for TensorRT.

Where `tensorrt_rtx` is not installed, every node is "unknown: tensorrt_rtx not installed", never "supported".
The parser's word is not the builder's: a graph the parser imports can still fail `build_serialized_network`
(measured: a recurrent If/Loop model), so `convertctl build -t tensorrt_rtx` stays the final proof.
"""

from __future__ import annotations

import importlib.util

from convertctl.checks.model_facts import ModelFacts
from convertctl.checks.verdicts import NodeVerdict, TargetReport, not_installed_report, roll_up, worst
from convertctl.targets.tensorrt.check import GraphIndex, profile_finding
from convertctl.targets.tensorrt.parser import ParserCrash, ParserResult, Product, parse_isolated

TARGET = "tensorrt_rtx"
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _rtx() -> Product:
    from convertctl.targets.tensorrt_rtx.builder import RTX

    return RTX


def not_installed(facts: ModelFacts, product: Product | None = None) -> TargetReport:
    """The report where the product's module is missing: every node "unknown", with the extra that installs it."""
    product = product or _rtx()
    extra = getattr(product, "extra", "tensorrt-rtx")
    return not_installed_report(facts, TARGET, extra, product.module)


def _all_unknown(facts: ModelFacts, reason: str, judged_by: str, version: str | None) -> TargetReport:
    nodes = [NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unknown", reason=reason,
                         source=facts.sources.get(name)) for name, node in facts.nodes]
    nodes.append(NodeVerdict(node="", op_type="", verdict="unknown", reason=reason))
    return TargetReport(target=TARGET, version=version, judged_by=judged_by, verdict="unknown", nodes=nodes,
                        ops=roll_up([n for n in nodes if n.node], _counts(facts), _opsets(facts)), notes=[reason])


def _domain(node) -> str:
    return "" if node.domain in _DEFAULT_DOMAINS else node.domain


def _counts(facts: ModelFacts) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for _, node in facts.nodes:
        key = (_domain(node), node.op_type)
        counts[key] = counts.get(key, 0) + 1
    for (domain, op), count in facts.op_counts.items():
        key = ("" if domain in _DEFAULT_DOMAINS else domain, op)
        counts[key] = max(counts.get(key, 0), count)
    return counts


def _opsets(facts: ModelFacts) -> dict[str, int]:
    return {("" if k == "ai.onnx" else k): v for k, v in facts.opsets.items()}


def _suggestion(node, title: str) -> str:
    if _domain(node):
        return (f"{title} imports an operator it has no importer for as a plugin: register a plugin named "
                f"'{node.op_type}' (IPluginV3) with the engine, or re-export {node.op_type} with standard ONNX operators")
    return (f"rewrite {node.op_type} with operators {title} imports, or run this part outside the engine "
            "(e.g. ONNX Runtime)")


def _where(graph: GraphIndex, tops: list[int], top: int, node_name: str) -> int:
    """The index in graph.nodes of the node an error names: the failing node inside the top-level node's subgraphs
    when the error names one there, else the top-level node itself. `tops`: graph.nodes' indices of the top-level
    nodes (each followed by the nodes of its subgraphs, depth first)."""
    start = tops[top]
    end = tops[top + 1] if top + 1 < len(tops) else len(graph.nodes)
    if node_name and graph.top_nodes[top].name != node_name:
        for i in range(start + 1, end):
            if graph.nodes[i][0].name == node_name:
                return i
    return start


def verdicts(facts: ModelFacts, graph: GraphIndex, result: ParserResult) -> tuple[list[NodeVerdict], list[str]]:
    """The parser's result as node verdicts (only the nodes that are not supported) and notes."""
    label = result.label
    by_index: dict[int, list[str]] = {}
    tops = [i for i, (_, scope) in enumerate(graph.nodes) if not scope]
    model_level: list[NodeVerdict] = []
    for err in result.error_list:
        if err.node < 0 or err.node >= len(graph.top_nodes):
            reason = f"{label} ONNX parser (not tied to a node): {err.message}"
            if all(n.reason != reason for n in model_level):
                model_level.append(NodeVerdict(node="", op_type="", verdict="unsupported", reason=reason))
            continue
        messages = by_index.setdefault(_where(graph, tops, err.node, err.node_name), [])
        if err.message not in messages:
            messages.append(err.message)
    nodes: list[NodeVerdict] = []
    for i, ((node, scope), name) in enumerate(zip(graph.nodes, graph.names, strict=True)):
        source = facts.sources.get(name) or facts.sources.get(node.name)
        if i in by_index:
            reason = f"{label} ONNX parser: " + "; ".join(by_index[i]) + (f" [in {scope}]" if scope else "")
            nodes.append(NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                                     reason=reason, suggestion=_suggestion(node, result.product), source=source))
    judged = {graph.top_names[i] for i in range(len(graph.top_nodes)) if result.accepted(i) or result.rejected(i)}
    rejected_names = {n.node for n in nodes}
    unjudged = [(node, name) for node, name in zip(graph.top_nodes, graph.top_names, strict=True)
                if name not in judged and name not in rejected_names]
    for node, name in unjudged:
        nodes.append(NodeVerdict(
            node=name, op_type=node.op_type, domain=_domain(node), verdict="unknown",
            reason=f"unknown: {label}'s parser failed on another node and gave no word on this one "
                   "(supports_model_v2 left it out of every partition: a data-dependent-shape operator, or fed by "
                   "an input it refused)",
            source=facts.sources.get(name) or facts.sources.get(node.name)))
    if not result.parsed and not result.error_list:
        model_level.append(NodeVerdict(node="", op_type="", verdict="unsupported",
                                       reason=f"{label} ONNX parser failed without giving a reason"))
    notes = []
    if not result.parsed:
        rejected = len({n.node for n in nodes if n.verdict == "unsupported"})
        notes.append(f"{label}'s parser refused {rejected} node(s){' and the model' if model_level else ''}; the "
                     "other nodes raised no parser error (where the parse fails, the parser does not import "
                     "every node, so an error further on may be hidden until these are fixed)")
    return model_level + nodes, notes


def check_tensorrt_rtx(facts: ModelFacts, product: Product | None = None) -> TargetReport:
    """Judge every node with TensorRT-RTX's ONNX parser (`product`: the builder's RTX flavour by default)."""
    product = product or _rtx()
    if importlib.util.find_spec(product.module) is None:
        return not_installed(facts, product)
    graph = GraphIndex(facts)
    try:
        result = parse_isolated(facts.path, product)
    except ParserCrash as exc:
        return _all_unknown(facts, f"unknown: {exc} (no verdict: the check itself went on)",
                            f"{product.title} ONNX parser (crashed)", None)
    nodes, notes = verdicts(facts, graph, result)
    profile = profile_finding(facts)
    if profile is not None:
        nodes.insert(0, profile)
    notes.append("the parser's word is not the builder's: a graph the parser imports can still fail the engine "
                 f"build; `convertctl build -t {TARGET}` builds a real engine here (no GPU needed)")
    ops = roll_up([n for n in nodes if n.node], _counts(facts), _opsets(facts))
    return TargetReport(target=TARGET, version=result.version,
                        judged_by=f"{result.label} ONNX parser (parse_from_file + supports_model_v2, per node, "
                                  "in a child process)",
                        verdict=worst(n.verdict for n in nodes), nodes=nodes, ops=ops, notes=notes)
