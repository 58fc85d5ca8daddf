"""LiteRT: the judge of `convertctl check -t litert`, from onnx2tf 1.29.24's own operator list (ops.py).

A node whose operator onnx2tf has no converter for is "unsupported" (onnx2tf stops with "<Op> OP is not yet
implemented"); one its README marks partially supported, or one it converts to TensorFlow ops the ai-edge-litert
interpreter cannot run (Flex), is "conditional"; the rest "supported". Dynamic input dims are a condition too:
onnx2tf converts reliably only static shapes (the target fixes them by default, `static_shapes`). A trial
conversion is not part of the check: one takes TensorFlow's start-up plus seconds to minutes per model, and the
build reports a conversion failure by the node onnx2tf stopped at."""

from __future__ import annotations

from convertctl.checks.model_facts import ModelFacts
from convertctl.checks.verdicts import NodeVerdict, TargetReport, worst
from convertctl.targets.litert.ops import CONVERTED, NEEDS_FLEX, ONNX2TF_VERSION, PARTIAL

TARGET = "litert"


def check_litert(facts: ModelFacts) -> TargetReport:
    nodes: list[NodeVerdict] = []
    for label, node in facts.nodes:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        op = node.op_type
        kind = f"{domain}::{op}" if domain else op
        if op not in CONVERTED or (domain and domain != "com.microsoft"):
            verdict, reason = "unsupported", f"onnx2tf {ONNX2TF_VERSION} has no converter for {kind}"
            suggestion = "decompose it into standard ONNX operators before export"
            if facts.source_framework == "tensorflow":  # converter auto converts the source, not this ONNX
                verdict = "conditional"
                reason += ("; TFLiteConverter (the default for a TensorFlow source) converts the source itself and "
                           "does not read this ONNX")
                suggestion = "keep converter: auto (or tflite_converter)"
        elif op in NEEDS_FLEX:
            verdict = "conditional"
            reason = (f"onnx2tf converts {kind} to TensorFlow ops TFLite has no builtin kernel for (Flex): the "
                      "ai-edge-litert interpreter cannot run the result")
            suggestion = "do this step outside the model"
        elif op in PARTIAL:
            verdict, reason = "conditional", f"onnx2tf {ONNX2TF_VERSION} supports {kind} partially (its README)"
            suggestion = None
        else:
            continue
        nodes.append(NodeVerdict(node=label, op_type=op, domain=domain, verdict=verdict, reason=reason,
                                 suggestion=suggestion, source=facts.sources.get(label)))
    notes = []
    dynamic = {name: dims for name, dims in facts.dynamic_inputs.items() if dims}
    if dynamic:
        notes.append("dynamic input dims " + ", ".join(f"{k}: {v}" for k, v in dynamic.items()) + " are fixed "
                     "before conversion (batch 1, the others at the recipe's opt; static_shapes: false keeps them)")
    return TargetReport(target=TARGET, version=ONNX2TF_VERSION,
                        judged_by=f"onnx2tf {ONNX2TF_VERSION} operator list (its ops/ modules and README table)",
                        verdict=worst(n.verdict for n in nodes), nodes=nodes, notes=notes)
