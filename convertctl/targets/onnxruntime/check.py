"""ONNX Runtime (CPU): ask the installed runtime, node by node, whether it can run the model.

For every distinct node signature (domain, operator, opset, input and output types, attributes) a
one-node model with the node's real types is loaded into a CPU session (graph optimizations off); a
failure marks every node of that signature "unsupported" with ONNX Runtime's own message. Then the
whole model gets a session too (external data allowed, the optimization level builds use), and a
failure there is mapped to the node it names (it catches what one-node models miss: constant inputs,
subgraphs, IR version, optimizer failures).
"""

from __future__ import annotations

import re

from convertctl.checks.model_facts import ModelFacts, node_named_in, one_line
from convertctl.checks.verdicts import NodeVerdict, TargetReport, not_installed_report, worst
from convertctl.errors import MissingDependencyError, require

TARGET = "onnxruntime"


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def condense(message: str) -> str:
    """ONNX Runtime's exception text as one line: status and message, without source paths and C++ signatures."""
    text = str(message).strip()
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*", "", text)
    text = re.sub(r"^(\w+)\s+:\s+", r"\1: ", text)
    text = re.sub(r"Load model from \S+ failed:", "Load model failed: ", text)
    # "/onnxruntime_src/path.cc:123 ret ns::Func(args...) message" -> "message"
    while (m := re.search(r"/onnxruntime_src/\S+:\d+ ", text)):
        rest = text[m.end():]
        depth, cut = 0, None
        for i, ch in enumerate(rest):
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    cut = i + 1
                    break
        text = text[: m.start()] + (rest[cut:].lstrip() if cut is not None else rest)
    text = text.replace("This is an invalid model. ", "")
    text = text.split(" The operator schemas and or other functionality")[0]
    return one_line(text, 300)


def _strip_node_name(message: str, name: str) -> str:
    """A one-node session's message, said of every node of the signature: drop the probe node's name."""
    for pattern in (f" with name '{name}'", f" in node ({name})", f"Node ({name}) ", f"node ({name})"):
        message = message.replace(pattern, " " if pattern.startswith("Node") else "")
    return message.replace(f'("{name}", ', "(").strip()


def _type_key(tp) -> tuple:
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        t = getattr(tp, kind)
        return (kind, t.elem_type, len(t.shape.dim) if t.HasField("shape") else None)
    if kind == "sequence_type":
        return (kind, _type_key(tp.sequence_type.elem_type))
    if kind == "optional_type":
        return (kind, _type_key(tp.optional_type.elem_type))
    if kind == "map_type":
        return (kind, tp.map_type.key_type, _type_key(tp.map_type.value_type))
    return (kind,)


def _attr_key(attr) -> tuple:
    if attr.type in (4, 11):  # TENSOR(S): the content does not change which kernel runs, its type does
        tensors = [attr.t] if attr.type == 4 else list(attr.tensors)
        return (attr.name, attr.type, tuple((t.data_type, tuple(t.dims)) for t in tensors))
    if attr.type == 13:  # SPARSE_TENSOR
        return (attr.name, attr.type, attr.sparse_tensor.values.data_type, tuple(attr.sparse_tensor.dims))
    return (attr.name, attr.SerializeToString())


def _signature(node, facts: ModelFacts) -> tuple | None:
    """What decides whether ONNX Runtime can run the node; None when a one-node model cannot stand for it."""
    if any(a.type in (5, 10) for a in node.attribute):  # subgraphs read outer-scope tensors: whole model only
        return None
    ins = []
    for t in node.input:
        if not t:
            ins.append(None)
            continue
        tp = facts.value_types.get(t)
        if tp is None or tp.WhichOneof("value") is None:
            return None
        ins.append(_type_key(tp))
    outs = []
    for t in node.output:
        tp = facts.value_types.get(t) if t else None
        outs.append(_type_key(tp) if tp is not None and tp.WhichOneof("value") else None)
    domain = _domain(node)
    return (domain, node.op_type, facts.opsets.get(domain), tuple(ins), tuple(outs),
            tuple(sorted(_attr_key(a) for a in node.attribute)))


def _one_node_model(onnx, node, facts: ModelFacts):
    h = onnx.helper
    inputs, seen = [], set()
    for t in node.input:
        if t and t not in seen:
            seen.add(t)
            inputs.append(h.make_value_info(t, facts.value_types[t]))
    outputs = []
    for t in node.output:
        if not t:
            continue
        tp = facts.value_types.get(t)
        outputs.append(h.make_value_info(t, tp) if tp is not None and tp.WhichOneof("value") else onnx.ValueInfoProto(name=t))
    graph = h.make_graph([node], "probe", inputs, outputs)
    model = h.make_model(graph, opset_imports=list(facts.model.opset_import), ir_version=facts.ir_version)
    model.functions.extend(facts.model.functions)  # model-local functions the node may call
    return model


def _options(ort, level: str = "ORT_DISABLE_ALL"):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return opts


def _session_error(ort, model_bytes_or_path, opts) -> str | None:
    try:
        ort.InferenceSession(model_bytes_or_path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # Fail, InvalidGraph, NotImplemented, InvalidArgument, RuntimeException
        return condense(str(exc))
    return None


def check_onnxruntime(facts: ModelFacts) -> TargetReport:
    try:
        ort = require("onnxruntime", "onnxruntime")
    except MissingDependencyError:
        return not_installed_report(facts, TARGET, "onnxruntime", "onnxruntime")
    onnx = require("onnx", "onnx")
    version = ort.__version__
    judged_by = f"onnxruntime {version} CPU sessions (one per node signature, then the whole model)"
    nodes: list[NodeVerdict] = []
    notes: list[str] = []
    opts = _options(ort)

    # The model's IR version and opsets on their own: a trivial graph with the same stamps.
    probe = onnx.helper.make_model(
        onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "stamp",
                               [onnx.helper.make_tensor_value_info("x", 1, [1])],
                               [onnx.helper.make_tensor_value_info("y", 1, [1])]),
        opset_imports=[o for o in facts.model.opset_import if o.domain in ("", "ai.onnx")] or
        [onnx.helper.make_opsetid("", facts.opsets.get("", 1))],
        ir_version=facts.ir_version)
    stamp_error = _session_error(ort, probe.SerializeToString(), opts)
    if stamp_error:
        reason = f"onnxruntime {version} cannot load a model with IR {facts.ir_version} / opset {facts.opsets.get('', '?')}: {stamp_error}"
        nodes.append(NodeVerdict(node="", op_type="", verdict="unsupported", reason=reason,
                                 suggestion="convert the model to an IR version / opset this onnxruntime supports "
                                            "(onnx.version_converter), or upgrade onnxruntime"))
        nodes += [NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unknown",
                              reason="not judged: the model's IR version / opset is not supported",
                              source=facts.sources.get(name)) for name, node in facts.nodes]
        return TargetReport(target=TARGET, version=version, judged_by=judged_by, verdict="unsupported",
                            nodes=nodes, notes=notes)

    cache: dict[tuple, str | None] = {}
    unjudged: list[str] = []
    for name, node in facts.nodes:
        sig = _signature(node, facts)
        if sig is None:
            unjudged.append(name)
            continue
        if sig not in cache:
            model = _one_node_model(onnx, node, facts)
            error = _session_error(ort, model.SerializeToString(), opts)
            cache[sig] = _strip_node_name(error, node.name) if error else error
        if cache[sig] is not None:
            nodes.append(NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                                     reason=cache[sig], suggestion=_suggest(node, cache[sig]),
                                     source=facts.sources.get(name)))
    notes.append(f"{len(cache)} one-node sessions for {len(facts.nodes)} nodes"
                 + (f"; {len(unjudged)} nodes (subgraphs, untyped inputs) judged by the whole-model session only"
                    if unjudged else ""))

    # The whole model, as a build would load it (weights, subgraphs, optimizer).
    whole = _session_error(ort, str(facts.path), _options(ort, "ORT_ENABLE_ALL"))
    if whole:
        flagged = {n.node for n in nodes}
        hit = node_named_in(whole, {node.name for _, node in facts.nodes if node.name})
        name = next((label for label, node in facts.nodes if node.name == hit), None) if hit else None
        if name is None and not nodes:
            nodes.append(NodeVerdict(node="", op_type="", verdict="unsupported",
                                     reason=f"the whole-model session fails: {whole}"))
        elif name is not None and name not in flagged:
            node = next(node for label, node in facts.nodes if label == name)
            nodes.append(NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                                     reason=whole, suggestion=_suggest(node, whole), source=facts.sources.get(name)))
        else:
            notes.append(f"the whole-model session fails too: {whole}")
        flagged = {n.node for n in nodes}
        for name in unjudged:
            if name not in flagged:
                node = dict(facts.nodes)[name]
                nodes.append(NodeVerdict(
                    node=name, op_type=node.op_type, domain=_domain(node), verdict="unknown",
                    reason="not judged: no one-node model stands for it (subgraph or untyped input) and the "
                           "whole-model session fails elsewhere", source=facts.sources.get(name)))
    else:
        # The optimized whole model loads: a node without a kernel of its own was fused away (e.g. a
        # written-out LayerNorm in bfloat16 becomes LayerNormalization, which has one). It works as built,
        # but only with graph optimizations on.
        nodes = [n.model_copy(update={
            "verdict": "conditional",
            "reason": f"no kernel of its own ({n.reason}); the whole model loads because ONNX Runtime's graph "
                      "optimizer fuses it: keep graph optimizations on (session.json)"})
            if n.verdict == "unsupported" else n for n in nodes]
    verdict = worst(n.verdict for n in nodes)
    return TargetReport(target=TARGET, version=version, judged_by=judged_by, verdict=verdict, nodes=nodes,
                        notes=notes)


def _suggest(node, message: str) -> str | None:
    if "Could not find an implementation" in message:
        return ("no ONNX Runtime CPU kernel for these input types: cast the inputs to a supported type "
                "(float32 is the safest) or replace the operator")
    if any(k in message for k in ("No Op registered", "No opset import", "is not a registered function/op")):
        domain = _domain(node)
        if domain and domain != "com.microsoft":
            return f"register the custom op library for domain {domain!r} (SessionOptions.register_custom_ops_library)"
        return "re-export with the standard ONNX operator set (another opset) or decompose the operator"
    return None
