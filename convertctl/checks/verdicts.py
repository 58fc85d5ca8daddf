"""What `convertctl check` says about a model and a target: one verdict per node, rolled up per operator.

Every target's checker (its judge: `Target.check`, in targets/<name>/check.py)
returns a `TargetReport`; checks/model_facts.py adds the findings that hold for every target (opset, IR,
dtypes, dynamic dims, size, checker errors). The CLI and the pipeline only read these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Verdict = Literal["supported", "conditional", "unsupported", "unknown"]
# supported:   the target converts and runs it
# conditional: supported with a condition the user must meet (e.g. a dtype TensorRT casts, a dynamic
#              dim that needs a range); `reason` says which
# unsupported: the target cannot convert or run it; `suggestion` says what to do where one exists
# unknown:     could not be judged (runtime not installed, no table entry, ...); never counts as supported

RANK = {"supported": 0, "unknown": 1, "conditional": 2, "unsupported": 3}  # worst wins in a roll-up


class NodeVerdict(BaseModel):
    node: str  # ONNX node name ("" for a model-level finding)
    op_type: str
    domain: str = ""  # "" = the default ONNX domain
    verdict: Verdict
    reason: str = ""
    suggestion: str | None = None
    source: str | None = None  # the source-framework layer, where the exporter kept it (e.g. a PyTorch module path)
    kind: str | None = None  # a model-level finding's kind, e.g. "dynamic_dim" (see run_check._merge)


class OpVerdict(BaseModel):
    """All nodes of one operator type on one target, rolled up: the worst node verdict wins."""

    op_type: str
    domain: str = ""
    count: int
    opset: int  # the opset of the operator's domain in the model
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)  # distinct reasons, worst first
    suggestion: str | None = None
    nodes: list[str] = Field(default_factory=list)  # the nodes that are not "supported" (all of them)


class TargetReport(BaseModel):
    target: str  # a target's name (convertctl/targets/<name>/)
    version: str | None  # the runtime's installed version, or the support table's version range
    judged_by: str  # e.g. "onnxruntime 1.31.1 session", "openvino 2026.4.1 ONNX frontend + CPU query_model",
    #                 "support table tensorrt_support.yaml (TensorRT 10.x/11.x, 2026-11-21)"
    verdict: Verdict  # the worst of all its nodes and model-level findings
    nodes: list[NodeVerdict] = Field(default_factory=list)  # every node that is not "supported", and model-level ones
    ops: list[OpVerdict] = Field(default_factory=list)  # one row per operator type in the model
    notes: list[str] = Field(default_factory=list)


class CheckReport(BaseModel):
    model: str  # path of the checked ONNX
    sha256: str
    ir_version: int
    opsets: dict[str, int]  # domain ("" = ONNX) -> version
    node_count: int
    findings: list[NodeVerdict] = Field(default_factory=list)  # model-level, for every target (checks/model_facts.py)
    targets: list[TargetReport] = Field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)  # what the model-level analysis could not check, timings

    @property
    def unsupported(self) -> list[str]:
        return [t.target for t in self.targets if t.verdict == "unsupported"]


def worst(verdicts) -> Verdict:
    return max(verdicts, key=RANK.__getitem__, default="supported")


def roll_up(nodes: list[NodeVerdict], op_counts: dict[tuple[str, str], int], opsets: dict[str, int]) -> list[OpVerdict]:
    """One OpVerdict per (domain, op_type) of the model; ops without a non-supported node are "supported"."""
    rows = []
    for (domain, op), count in sorted(op_counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        mine = [n for n in nodes if n.op_type == op and n.domain == domain and n.node]
        verdict = worst(n.verdict for n in mine)
        reasons = []
        for n in sorted(mine, key=lambda n: -RANK[n.verdict]):
            if n.reason and n.reason not in reasons:
                reasons.append(n.reason)
        suggestion = next((n.suggestion for n in sorted(mine, key=lambda n: -RANK[n.verdict]) if n.suggestion), None)
        rows.append(OpVerdict(op_type=op, domain=domain, count=count, opset=opsets.get(domain, opsets.get("", 0)),
                              verdict=verdict, reasons=reasons, suggestion=suggestion,
                              nodes=list(dict.fromkeys(n.node for n in mine if n.verdict != "supported"))))
    return rows


def not_installed_report(facts, target: str, extra: str, module: str) -> TargetReport:
    """Every node "unknown" because the runtime that would judge it is not installed (`facts`: ModelFacts)."""
    from convertctl.errors import install_hint

    reason = f"unknown: {module} not installed ({install_hint(extra)})"
    nodes = [NodeVerdict(node=name, op_type=node.op_type, domain="" if node.domain in ("", "ai.onnx") else node.domain,
                         verdict="unknown", reason=reason, source=facts.sources.get(name)) for name, node in facts.nodes]
    nodes.append(NodeVerdict(node="", op_type="", verdict="unknown", reason=reason))
    return TargetReport(target=target, version=None, judged_by=f"nothing: {module} is not installed",
                        verdict="unknown", nodes=nodes, notes=[reason])
