"""OpenVINO (CPU): ask the installed OpenVINO whether it can convert and run the model, node by node.

1. The ONNX frontend converts the model partially: nodes it cannot convert stay as framework nodes
   (no conversion rule, or the rule failed); each is "unsupported" with the frontend's reason.
2. The converted model goes through the transformations `ov.convert_model` applies.
3. `Core.query_model(model, "CPU")`: operations the CPU plugin does not claim are mapped back to the
   ONNX nodes they came from (by output tensor names) and are "unsupported".
4. When all of it passed, the model is compiled for the CPU (f32), as a build would: some kernels
   refuse types query_model claimed (Equal on strings); such a failure is reported where it names a
   node, else for the model.
"""

from __future__ import annotations

import re

from convertctl.checks.model_facts import ModelFacts, node_named_in, one_line
from convertctl.checks.verdicts import NodeVerdict, TargetReport, not_installed_report, worst
from convertctl.errors import MissingDependencyError, require

TARGET = "openvino"
_PLUMBING = {"Parameter", "Result", "Constant"}


def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def _is_framework_node(op) -> bool:
    info = op.get_type_info()
    while info is not None:
        if "FrameworkNode" in info.name:
            return True
        info = info.parent
    return False


def _bodies(op) -> list:
    """The subgraph bodies of an If / Loop / TensorIterator (If.get_function(i) past the last body crashes)."""
    kind = op.get_type_name()  # (hasattr on these bindings is slow: a 3000-node model paid a second for it)
    if kind == "If":
        return [op.get_then_body(), op.get_else_body()]
    if kind in ("Loop", "TensorIterator"):
        return [op.get_function()]
    return []


def _framework_nodes(model, top=None) -> list[tuple]:
    """(framework node, the top-level operation holding it in a body, or None), through subgraph bodies."""
    found = []
    for op in model.get_ordered_ops():
        if _is_framework_node(op):
            found.append((op, top))
        for body in _bodies(op):
            found += _framework_nodes(body, top if top is not None else op)
    return found


def _conversion_log(fe, path: str) -> dict[str, str]:
    """The frontend's per-node failure messages (only `convert()` reports them): output tensor or op -> reason."""
    try:
        fe.convert(fe.load(path))
    except Exception as exc:  # OpConversionFailure, with the detailed log in its text
        text = str(exc)
    else:
        return {}
    reasons: dict[str, str] = {}
    for m in re.finditer(r"^-- (\S+?)(?:-\d+)? with a message:\n(.*?)(?=^-- |^Summary:|\Z)", text, re.S | re.M):
        op, msg = m.group(1), m.group(2)
        where = re.search(r"ONNX node '<Node\(\w+\): ([^>]*)>'", msg)
        msg = re.sub(r"While validating ONNX node '<Node\([^']*'\s*:\s*", "", msg)
        reasons[where.group(1) if where else op] = _condense(msg, 240)
    return reasons


def check_openvino(facts: ModelFacts) -> TargetReport:
    try:
        ov = require("openvino", "openvino")
    except MissingDependencyError:
        return not_installed_report(facts, TARGET, "openvino", "openvino")
    from openvino.frontend import FrontEndManager

    version = ov.__version__.split("-")[0]
    judged_by = f"openvino {version} ONNX frontend + CPU query_model + compile_model"
    nodes: list[NodeVerdict] = []
    notes: list[str] = []
    by_output = {out: label for label, node in facts.nodes for out in node.output if out}
    by_raw = {node.name: label for label, node in facts.nodes if node.name}
    node_of = dict(facts.nodes)

    def verdict_for(label: str, reason: str, suggestion: str | None) -> NodeVerdict:
        node = node_of[label]
        return NodeVerdict(node=label, op_type=node.op_type, domain=_domain(node), verdict="unsupported",
                           reason=reason, suggestion=suggestion, source=facts.sources.get(label))

    def model_level(reason: str, suggestion: str | None = None) -> TargetReport:
        hit = node_named_in(reason, by_raw) or next((t for t in _tensor_names_in(reason) if t in by_output), None)
        label = (by_raw.get(hit) or by_output.get(hit)) if hit else None
        finding = (verdict_for(label, reason, suggestion) if label else
                   NodeVerdict(node="", op_type="", verdict="unsupported", reason=reason, suggestion=suggestion))
        return TargetReport(target=TARGET, version=version, judged_by=judged_by, verdict="unsupported",
                            nodes=[*nodes, finding], notes=notes)

    fe = FrontEndManager().load_by_framework("onnx")
    path = str(facts.path)
    try:
        input_model = fe.load(path)
        # input_model must outlive the converted model: framework nodes read their attributes through it
        model = fe.convert_partially(input_model)
    except Exception as exc:
        return model_level(f"OpenVINO's ONNX frontend cannot read the model: {_condense(exc)}")

    found = _framework_nodes(model)
    framework = [op for op, top in found if top is None]  # top-level ones; the others sit in subgraph bodies
    holders = {top.get_instance_id() for _, top in found if top is not None}
    if found:
        log = _conversion_log(fe, path)
        for op, _ in found:
            attrs = op.get_attributes()
            onnx_type = attrs.get("ONNX_META_type", "")
            domain = attrs.get("ONNX_META_domain", "")
            outs = [n for port in op.outputs() for n in port.get_names()]
            label = next((by_output[t] for t in outs if t in by_output), None) or _onnx_node_of(op, by_output, by_raw)
            if label is None:  # still a failed conversion: the model as a whole cannot be converted
                nodes.append(NodeVerdict(
                    node="", op_type=onnx_type, domain=domain, verdict="unsupported",
                    reason=f"OpenVINO's ONNX frontend leaves {op.get_type_name()} {op.get_friendly_name()!r} "
                           f"unconverted{' (' + onnx_type + ')' if onnx_type else ''}"))
                continue
            kind = f"{domain}::{onnx_type}" if domain else (onnx_type or node_of[label].op_type)
            failed = next((log[t] for t in outs if t in log), None) or log.get(onnx_type)
            if failed:
                reason = f"OpenVINO's ONNX frontend fails to convert {kind}: {failed}"
                suggestion = "give the input shapes/ranks statically (recipe inputs) or re-export without this operator"
            else:
                reason = f"OpenVINO's ONNX frontend has no conversion rule for {kind} (opset {facts.opsets.get(_domain(node_of[label]), '?')})"
                suggestion = ("implement it as an OpenVINO extension (ov.Core.add_extension), or decompose it into "
                              "standard operators before export")
            if not any(n.node == label and n.reason == reason for n in nodes):  # one per node, bodies repeat
                nodes.append(verdict_for(label, reason, suggestion))
        notes.append("the model has unconverted nodes: the CPU query covered only the converted part")
    else:
        try:
            from openvino._offline_transformations import (
                apply_moc_transformations,
                compress_quantize_weights_transformation,
            )

            apply_moc_transformations(model, cf=False, smart_reshape=True)  # what ov.convert_model applies
            compress_quantize_weights_transformation(model)
        except Exception as exc:
            return model_level(f"OpenVINO's model transformations (convert_model) fail: {_condense(exc)}")

    try:
        query_model = _cut_framework_nodes(ov, model, framework, facts) if framework else model
        supported = ov.Core().query_model(query_model, "CPU")
    except Exception as exc:
        return model_level(f"the CPU plugin rejects the model: {_condense(exc)}")
    flagged = {n.node for n in nodes}
    framework_ids = {op.get_instance_id() for op in framework}
    for op in model.get_ordered_ops():
        if op.get_friendly_name() in supported or op.get_type_name() in _PLUMBING:
            continue
        if op.get_instance_id() in framework_ids or op.get_instance_id() in holders:
            continue  # reported above, node by node
        label = _onnx_node_of(op, by_output, by_raw)
        feeder = next((v.get_node() for v in op.input_values() if v.get_node().get_instance_id() in framework_ids),
                      None)
        if feeder is not None and label is not None and label not in flagged:
            flagged.add(label)
            src = _onnx_node_of(feeder, by_output, by_raw) or feeder.get_friendly_name()
            nodes.append(NodeVerdict(
                node=label, op_type=node_of[label].op_type, domain=_domain(node_of[label]), verdict="unknown",
                reason=f"not judged: its input comes from {src!r}, which OpenVINO could not convert (type unknown)",
                source=facts.sources.get(label)))
            continue
        if label is None:
            notes.append(f"CPU plugin does not support {op.get_type_name()} {op.get_friendly_name()!r} "
                         "(no ONNX node maps to it)")
            continue
        if label in flagged:
            continue
        flagged.add(label)
        nodes.append(verdict_for(label, f"unsupported: the CPU plugin cannot run it (OpenVINO operation "
                                        f"{op.get_type_name()} {op.get_friendly_name()!r})", None))
    if not found and not any(n.verdict == "unsupported" for n in nodes):
        # query_model claims some operations whose kernels then refuse the types (e.g. Equal on strings):
        # compile the model as a build would, and report a failure where it names a node
        try:
            ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        except Exception as exc:
            reason = f"the CPU plugin fails to compile the model: {_condense(exc)}"
            named = re.search(r"name: (\S+)", str(exc))
            op = next((o for o in model.get_ordered_ops() if named and o.get_friendly_name() == named.group(1)), None)
            label = _onnx_node_of(op, by_output, by_raw) if op is not None else None
            if label is not None:
                nodes.append(verdict_for(label, reason, None))
                return TargetReport(target=TARGET, version=version, judged_by=judged_by, verdict="unsupported",
                                    nodes=nodes, notes=notes)
            return model_level(reason)
    return TargetReport(target=TARGET, version=version, judged_by=judged_by,
                        verdict=worst(n.verdict for n in nodes), nodes=nodes, notes=notes)


_OV_TYPES = {1: "f32", 2: "u8", 3: "i8", 4: "u16", 5: "i16", 6: "i32", 7: "i64", 8: "string", 9: "boolean",
             10: "f16", 11: "f64", 12: "u32", 13: "u64", 16: "bf16"}


def _cut_framework_nodes(ov, model, framework, facts: ModelFacts):
    """The converted part on its own: every framework node's outputs become Parameters (typed from the
    ONNX model where OpenVINO left the type open), so the CPU query judges what follows them too."""
    import openvino.opset13 as ops

    params = list(model.get_parameters())
    for op in framework:
        for port in op.outputs():
            etype, shape = port.get_element_type(), port.get_partial_shape()
            tp = next((facts.value_types[n] for n in port.get_names() if n in facts.value_types), None)
            if tp is not None and tp.HasField("tensor_type"):
                if etype.is_dynamic() and tp.tensor_type.elem_type in _OV_TYPES:
                    etype = getattr(ov.Type, _OV_TYPES[tp.tensor_type.elem_type])
                if shape.rank.is_dynamic and tp.tensor_type.HasField("shape"):
                    shape = ov.PartialShape([d.dim_value if d.HasField("dim_value") else -1
                                             for d in tp.tensor_type.shape.dim])
            if etype.is_dynamic():
                continue  # what follows stays fed by the framework node: reported as not judged
            param = ops.parameter(shape, etype)
            param.output(0).set_names(port.get_names())
            for target in list(port.get_target_inputs()):
                target.replace_source_output(param.output(0))
            params.append(param)
    results = [r for r in model.get_results() if not _is_framework_node(r.input_value(0).get_node())]
    cut = ov.Model(results, params, "converted_part")
    try:
        cut.validate_nodes_and_infer_types()
    except Exception:  # a type the rest cannot take: the query then judges what it can
        pass
    return cut


def _condense(exc, limit: int = 300) -> str:
    """OpenVINO's exception text without source locations and check expressions, on one line."""
    text = re.sub(r"Exception from src/\S+:\d+:\s*", "", str(exc))
    text = re.sub(r"Check '.*?' failed at src/\S+:\d+:\s*", "", text, flags=re.S)
    text = re.sub(r"FrontEnd API failed with \w+:\s*", "", text)
    return one_line(text, limit)


def _tensor_names_in(text: str) -> list[str]:
    return re.findall(r"<Node\(\w+\): ([^>]*)>", text) + re.findall(r"'([^']+)'", text)


def _onnx_node_of(op, by_output: dict[str, str], by_raw: dict[str, str]) -> str | None:
    """The ONNX node an OpenVINO operation came from: its output tensor names or friendly name, else the
    first downstream operation that carries one (decompositions name only their last operation)."""
    seen, frontier = set(), [op]
    for _ in range(64):
        nxt = []
        for cur in frontier:
            if cur.get_instance_id() in seen:
                continue
            seen.add(cur.get_instance_id())
            for port in cur.outputs():
                for name in port.get_names():
                    if name in by_output:
                        return by_output[name]
            friendly = cur.get_friendly_name()
            if friendly in by_raw:
                return by_raw[friendly]
            base = friendly.split("/")[0]
            if base in by_raw:
                return by_raw[base]
            for port in cur.outputs():
                nxt += [t.get_node() for t in port.get_target_inputs()]
        if not nxt:
            return None
        frontier = nxt
    return None
