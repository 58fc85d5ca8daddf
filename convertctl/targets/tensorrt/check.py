"""TensorRT target of `convertctl check`: every node judged from a versioned support table.

TensorRT cannot be installed on this project's machines (no NVIDIA download host; see docs/check.md),
so the judge is `data/tensorrt_support.yaml`: TensorRT's own ONNX operator matrix
(onnx-tensorrt `docs/operators.md`) for TensorRT 10.x and 11.x, with supported types, restrictions
restated in checkable form, and the release an operator or restriction changed, each with its source
and date. `check_tensorrt(facts, version)` judges every node of the model (subgraphs included) as
supported / conditional / unsupported / unknown, and adds the model-level findings TensorRT needs
(opset range, dynamic inputs without optimization-profile ranges, INT64 bindings, strong typing).

Version selection: `version` is "10" or "11" (a table section), "10.8" (a release: since/until rows
are then judged exactly), or "auto" (the installed TensorRT's release, else "10").

When the `tensorrt` Python module is installed (it cannot be on this project's machines), the check also
runs TensorRT's ONNX parser on the model and adds a note for every node where the parser and the
table disagree; a node the parser rejects becomes "unsupported" with the parser's message. That code
path (parser.py) is written against the documented Python API
(`tensorrt.OnnxParser`: parse_from_file, supports_model_v2, num_subgraphs, get_subgraph_nodes, num_errors,
get_error(i) -> ParserError with code(), desc(), node(), node_name(), node_operator()), which TensorRT for RTX
shares: the same parser code runs in the tests against `tensorrt_rtx`. The parser always runs in a child process
(parser.parse_isolated), so a native crash of it cannot end the check.

Where `tensorrt` is absent and TensorRT for RTX (`tensorrt_rtx`, a sibling target that builds with this
package's code) is installed, its parser's verdicts are compared with the table's and every disagreement is a
note labelled as TensorRT-RTX evidence; the table's verdicts stand (the two share the onnx-tensorrt parser
lineage, not an identical operator set; benchmarks/README.md measures how far they agree). The sibling is found
through the target registry (Target.shares), so this package names no other target.
`onnx` and `numpy` are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from convertctl.checks.model_facts import ModelFacts, dims_suggestion, display_names, open_dims
from convertctl.checks.verdicts import RANK, NodeVerdict, TargetReport, Verdict, roll_up, worst
from convertctl.onnx_graph import Graph
from convertctl.targets.tensorrt.parser import merge_parser, parse_isolated
from convertctl.targets.tensorrt.table import (
    Condition,
    OpEntry,
    Selection,
    SupportTable,
    VersionSection,
    installed_tensorrt_version,
    judged_by,
    load_table,
    release_tuple,
    select_version,
)

# ---------------------------------------------------------------------------------------------------------
# The model as the judge sees it

_ONNX_NAMES = {  # onnx.TensorProto.DataType values (fixed by the ONNX standard)
    1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL",
    10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
    17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4",
    23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2",
}
_NONDETERMINISTIC = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                     "Multinomial"}
_DEFAULT_DOMAINS = ("", "ai.onnx")


def onnx_type_name(elem_type: int) -> str:
    return _ONNX_NAMES.get(elem_type, f"onnx-type-{elem_type}")


class GraphIndex:
    """The model as the judge sees it: the shared graph index (convertctl.onnx_graph.Graph, subgraphs
    included) with model_facts' inferred types and shapes, the verdicts' node names, and what TensorRT can
    compute at build time (no weights are read until a condition asks for a value)."""

    def __init__(self, facts: ModelFacts):
        self.facts = facts
        self.graph = Graph(facts.model, subgraphs=True, base_dir=str(facts.path.parent))
        self.types: dict[str, int] = {name: elem for name, (elem, _) in facts.types.items()}
        self.shapes: dict[str, list[int | str | None] | None] = {name: shape for name, (_, shape) in facts.types.items()}
        self.graph_inputs = self.graph.input_names
        self.graph_outputs = self.graph.output_names
        # (node, scope: "" top level, else "If 'x' then_branch / ...")
        self.nodes: list[tuple[Any, str]] = list(zip(self.graph.nodes, self.graph.scopes, strict=True))
        self.top_nodes = self.graph.top_nodes
        self.names = self._display_names()
        self.top_names = [self.names[i] for i, (_, scope) in enumerate(self.nodes) if not scope]
        self._fold_cache: dict[str, bool] = {}

    def _display_names(self) -> list[str]:
        """The names the verdicts use: model_facts' names (the node's name, or "<op_type>_<index>")."""
        given = getattr(self.facts, "nodes", None) or []
        if len(given) == len(self.nodes) and all(
            g[1].op_type == n.op_type and g[1].name == n.name for g, (n, _) in zip(given, self.nodes, strict=True)
        ):
            return [name for name, _ in given]
        return display_names(self.graph.nodes)  # the same depth-first order and rule as model_facts

    # -- tensors -------------------------------------------------------------------------------------
    def elem_type(self, name: str) -> int | None:
        return self.types.get(name) or self.graph.elem_type(name) or None

    def shape(self, name: str) -> list[int | str | None] | None:
        return self.shapes[name] if name in self.shapes else self.graph.shape(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def static(self, name: str) -> bool | None:
        shape = self.shape(name)
        if shape is None:
            return None
        return all(isinstance(d, int) and d > 0 for d in shape)

    def is_weights(self, name: str) -> bool:
        """An initializer or a Constant node's output (what TensorRT's importer receives as weights)."""
        return self.graph.is_constant(name)

    def is_foldable(self, name: str, depth: int = 0) -> bool:
        """Whether the tensor can be computed at build time (weights, static shapes, and ops over those)."""
        if name in self._fold_cache:
            return self._fold_cache[name]
        result = False
        if self.is_weights(name):
            result = True
        elif depth < 64 and name not in self.graph_inputs:
            node = self.graph.producer(name)
            if node is not None and node.op_type not in _NONDETERMINISTIC and not any(
                a.HasField("g") or len(a.graphs) for a in node.attribute
            ):
                if node.op_type in ("Shape", "Size"):
                    result = bool(node.input) and self.static(node.input[0]) is True
                else:
                    result = all(self.is_foldable(i, depth + 1) for i in node.input if i)
        self._fold_cache[name] = result
        return result

    def value(self, name: str):
        """The value of a weights tensor as numpy, or None when it cannot be read."""
        return self.graph.value(name)

    def is_graph_io(self, name: str) -> bool:
        return name in self.graph_inputs or name in self.graph_outputs


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            if isinstance(value, list) and value and isinstance(value[0], bytes):
                return [v.decode("utf-8", "replace") for v in value]
            return value
    return default


def _has_attr(node, name: str) -> bool:
    return any(a.name == name for a in node.attribute)


def _input(node, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def _present(node, indices) -> list[str]:
    """The names of the inputs at `indices` that the node has (an omitted optional input is "")."""
    return [name for name in (_input(node, i) for i in indices) if name]


def _output(node, index: int) -> str:
    return node.output[index] if index < len(node.output) else ""


@lru_cache(maxsize=2048)
def _schema_types(op_type: str, opset: int) -> tuple[list[str], bool] | None:
    """(type strings of the formal inputs, last one variadic) of the ONNX schema in force at `opset`."""
    try:
        import onnx.defs

        schema = onnx.defs.get_schema(op_type, max(opset, 1), "")
    except Exception:  # noqa: BLE001 - not a standard operator at that opset
        return None
    formal = list(schema.inputs)
    if not formal:
        return [], False
    variadic = formal[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    return [p.type_str for p in formal], variadic


def _typed_inputs(node, entry: OpEntry, opset: int) -> list[int]:
    if entry.typed_inputs is not None:
        return [i for i in entry.typed_inputs if i < len(node.input)]
    formal = _schema_types(node.op_type, opset)
    if formal is None or not formal[0]:
        return [0] if node.input else []
    types, variadic = formal

    def type_of(index: int) -> str | None:
        if index < len(types):
            return types[index]
        return types[-1] if variadic else None

    first = type_of(0)
    return [i for i in range(len(node.input)) if type_of(i) == first]


# ---------------------------------------------------------------------------------------------------------
# The judge


@dataclass
class _Finding:
    verdict: Verdict
    reason: str
    suggestion: str | None = None


@dataclass
class _Judge:
    table: SupportTable
    sel: Selection
    graph: GraphIndex
    notes: list[str] = field(default_factory=list)
    op_notes: set[tuple[str, str]] = field(default_factory=set)

    @property
    def section(self) -> VersionSection:
        return self.table.versions[self.sel.section]

    @property
    def trt(self) -> str:
        return f"TensorRT {self.sel.label}"

    def note_once(self, op_type: str, text: str) -> None:
        if (op_type, text) not in self.op_notes:
            self.op_notes.add((op_type, text))
            self.notes.append(f"{op_type}: {text}")

    # -- release gating --------------------------------------------------------------------------------
    def since(self, since: str | None) -> Literal["yes", "no", "maybe"]:
        """Is something available from release `since` on present in the judged TensorRT?"""
        if since is None:
            return "yes"
        first = release_tuple(since)
        major = int(self.sel.section)
        if self.sel.release is not None:
            return "yes" if self.sel.release >= first else "no"
        if first[0] < major or first == (major, 0):
            return "yes"
        return "no" if first[0] > major else "maybe"

    def until(self, until: str | None) -> Literal["yes", "no", "maybe"]:
        """Does a restriction that holds up to release `until` apply to the judged TensorRT?"""
        if until is None:
            return "yes"
        last = release_tuple(until)
        major = int(self.sel.section)
        if self.sel.release is not None:
            return "yes" if self.sel.release <= last else "no"
        if last[0] < major:
            return "no"
        return "yes" if last[0] > major else "maybe"

    # -- one node ----------------------------------------------------------------------------------------
    def judge(self, node, scope: str, opset: int) -> list[_Finding]:
        domain = node.domain or ""
        if domain not in _DEFAULT_DOMAINS:
            if domain.startswith("ai.onnx"):
                return [_Finding(
                    "unknown",
                    f"domain '{domain}' is not in the support table (onnx-tensorrt's operator matrix covers the "
                    "default ONNX domain only)",
                    "run these operators outside the TensorRT engine (e.g. ONNX Runtime), or rewrite them with "
                    "default-domain ONNX operators",
                )]
            return [_Finding(
                "unknown",
                f"custom domain '{domain}': not in the support table (it covers the standard ONNX operators)",
                f"TensorRT imports an operator it has no importer for as a plugin: register a TensorRT plugin "
                f"named '{node.op_type}' (IPluginV3), or re-export {node.op_type} with standard ONNX operators",
            )]
        entry = self.table.entry(node.op_type, self.sel.section)
        if entry is None:
            return [_Finding(
                "unknown",
                f"unknown: {node.op_type} is not in the support table (onnx-tensorrt's operator matrix does not list it)",
                "check with TensorRT's ONNX parser on a GPU machine (trtexec --onnx=... or polygraphy inspect "
                "capability); if it is rejected, decompose it into listed operators or add a plugin",
            )]
        if not entry.supported:
            reason = entry.reason or f"the ONNX parser of {self.trt} has no importer for it (onnx-tensorrt operator matrix: N)"
            return [_Finding("unsupported", f"{node.op_type}: {reason}", entry.suggestion)]
        findings: list[_Finding] = []
        available = self.since(entry.since)
        if available == "no":
            findings.append(_Finding(
                "unsupported",
                f"{node.op_type} needs TensorRT >= {entry.since} (added to the ONNX parser in {entry.since}); "
                f"judged for {self.trt}",
                f"use TensorRT >= {entry.since}" + (f", or: {entry.suggestion}" if entry.suggestion else ""),
            ))
            return findings
        if available == "maybe":
            findings.append(_Finding(
                "conditional",
                f"{node.op_type} needs TensorRT >= {entry.since} (added to the ONNX parser in {entry.since})",
                f"build with TensorRT {entry.since} or newer",
            ))
        for note in entry.notes:
            self.note_once(node.op_type, note)
        findings += self.dtypes(node, entry, opset)
        for cond in entry.conditions:
            applies = self.until(cond.until)
            if applies == "no" or self.since(cond.since) == "no":
                continue
            try:
                results = self.condition(node, cond, opset)
            except Exception as exc:  # noqa: BLE001 - an odd model must not stop the check
                results = [_Finding("conditional", f"{cond.text} (could not be checked: {type(exc).__name__}: {exc})",
                                    cond.suggestion)]
            for finding in results:
                if applies == "maybe" and finding.verdict == "unsupported":
                    finding = _Finding(
                        "conditional",
                        f"{finding.reason} (a restriction of TensorRT {self.sel.section}.x up to {cond.until})",
                        finding.suggestion,
                    )
                findings.append(finding)
        return findings

    # -- data types ----------------------------------------------------------------------------------------
    def dtypes(self, node, entry: OpEntry, opset: int) -> list[_Finding]:
        if entry.types is None:
            self.note_once(node.op_type, f"supported types are not documented for {self.trt}; data types not checked")
            return []
        tensors = [("input", node.input[i]) for i in _typed_inputs(node, entry, opset) if node.input[i]]
        tensors += [("output", _output(node, i)) for i in entry.typed_outputs if _output(node, i)]
        by_type: dict[int, list[tuple[str, str]]] = {}
        seen: set[str] = set()
        for role, name in tensors:
            elem = self.graph.elem_type(name)
            if elem and name not in seen:
                seen.add(name)
                by_type.setdefault(elem, []).append((role, name))
        findings = [self.dtype(node, entry, group, elem) for elem, group in by_type.items()]
        return [f for f in findings if f is not None]

    def dtype(self, node, entry: OpEntry, group: list[tuple[str, str]], elem: int) -> _Finding | None:
        """The verdict on the tensors `group` [(role, name)] of ONNX element type `elem`."""
        onnx_name = onnx_type_name(elem)
        rule = self.table.dtypes.get(onnx_name)
        listed = ", ".join(entry.types or [])
        names = ", ".join(f"{role} '{name}'" for role, name in group)
        where = f"{names} {'is' if len(group) == 1 else 'are'} {onnx_name}"
        first = group[0][1]
        if rule is None:
            return _Finding(
                "unsupported",
                f"{where}: TensorRT has no {onnx_name} type (its ONNX parser rejects it)",
                entry.suggestion or f"Cast to a type {node.op_type} takes in TensorRT ({listed})",
            )
        if rule.handling == "cast":
            if rule.trt in (entry.types or []):
                return _Finding(
                    "conditional",
                    f"{where}: {onnx_name} is cast to {rule.trt} by {self.trt} ({rule.note})",
                    "export in float32 so that the engine computes what the model computes",
                )
            return _Finding("unsupported", f"{where}: {node.op_type} takes {listed} in {self.trt}",
                            entry.suggestion or f"Cast to one of {listed} before {node.op_type}")
        if self.since(rule.since) == "no":
            return _Finding("unsupported", f"{where}: {rule.trt} needs TensorRT >= {rule.since}",
                            f"use TensorRT >= {rule.since}")
        if rule.trt in (entry.types or []):
            type_since = entry.types_since.get(rule.trt)
            gate = self.since(type_since)
            if gate == "no":
                return _Finding("unsupported", f"{where}: {node.op_type} takes {rule.trt} from TensorRT {type_since} on",
                                f"use TensorRT >= {type_since}, or Cast to a type it took before")
            if gate == "maybe":
                return _Finding("conditional", f"{where}: {node.op_type} takes {rule.trt} from TensorRT {type_since} on",
                                f"build with TensorRT {type_since} or newer")
            inner = [name for _, name in group if not self.graph.is_graph_io(name)]
            if rule.handling == "io_only" and inner:
                return _Finding("unsupported", f"{where}: {rule.note} ({', '.join(repr(n) for n in inner)} "
                                f"{'is an intermediate tensor' if len(inner) == 1 else 'are intermediate tensors'})",
                                "keep UINT8 at the model's inputs and outputs and Cast right after/before them")
            return None
        if rule.handling == "quantized":
            return _Finding(
                "unsupported",
                f"{where}: {node.op_type} takes {listed} in {self.trt}; {rule.note}",
                entry.suggestion or "DequantizeLinear to a float type before it, or quantize the model to the QDQ format",
            )
        if rule.handling == "io_only":
            return _Finding(
                "unsupported",
                f"{where}: {node.op_type} takes {listed} in {self.trt}; {rule.note}",
                entry.suggestion
                or f"Cast the UINT8 input to {'FP32' if 'FP32' in (entry.types or []) else listed} right after it",
            )
        target = "INT32 (values must fit)" if rule.trt == "INT64" and "INT32" in (entry.types or []) else listed
        return _Finding(
            "unsupported",
            f"{where}: {node.op_type} takes {listed} in {self.trt} (onnx-tensorrt operator matrix), not {rule.trt}",
            entry.suggestion or f"Cast {group[0][0]} '{first}' to {target} before {node.op_type}",
        )

    # -- conditions ------------------------------------------------------------------------------------------
    def condition(self, node, cond: Condition, opset: int) -> list[_Finding]:
        g = self.graph
        text = cond.text
        bad = "unsupported"
        out: list[_Finding] = []
        kind = cond.kind

        def fail(detail: str, verdict: Verdict = bad, suggestion: str | None = None) -> None:
            out.append(_Finding(verdict, f"{text}: {detail}", suggestion or cond.suggestion))

        def cannot(detail: str) -> None:
            out.append(_Finding("conditional", f"{text} (could not be checked: {detail})", cond.suggestion))

        def constant(name: str, missing: str):
            """The value of input `name` when it is a readable initializer; else a finding and None."""
            if not g.is_weights(name):
                fail(f"'{name}' is {missing}")
                return None
            value = g.value(name)
            if value is None:
                cannot(f"the value of '{name}' could not be read")
            return value

        if kind == "manual":
            self.note_once(node.op_type, f"not checked statically: {text}")
        elif kind == "constant_input":
            name = _input(node, cond.input)
            if name and not g.is_weights(name):
                if cond.level == "initializer" and g.is_foldable(name):
                    fail(f"'{name}' is computed from constants but is not an initializer", "conditional")
                elif cond.level == "initializer" or not g.is_foldable(name):
                    fail(f"'{name}' is computed at run time")
        elif kind == "constant_value":
            name = _input(node, cond.input)
            value = constant(name, "not an initializer") if name else None
            if value is not None and not (value.size == 1 and value.reshape(-1)[0] == cond.equals):
                fail(f"'{name}' is {value.reshape(-1)[:4].tolist()}")
        elif kind == "zero_input":
            name = _input(node, cond.input)
            value = constant(name, "not a constant") if name else None
            if value is not None and value.size and (value.astype("float64") != 0).any():
                fail(f"'{name}' holds non-zero values")
        elif kind == "max_value":
            name = _input(node, cond.input)
            if name:
                value = g.value(name) if g.is_weights(name) else None
                if value is None:
                    cannot(f"'{name}' is not a readable constant")
                elif value.size and float(value.max()) > cond.max:
                    fail(f"'{name}' is {value.reshape(-1)[:4].tolist()}")
        elif kind == "rank":
            for name in _present(node, cond.inputs):
                rank = g.rank(name)
                if rank is None:
                    cannot(f"the rank of '{name}' is unknown")
                elif rank not in cond.ranks:
                    fail(f"'{name}' has rank {rank}")
        elif kind == "static_shape":
            for name in _present(node, cond.inputs):
                static = g.static(name)
                if static is None:
                    cannot(f"the shape of '{name}' is unknown")
                elif not static:
                    fail(f"'{name}' has shape {g.shape(name)}",
                         suggestion=cond.suggestion or "give the input dims fixed values")
        elif kind == "static_axis_dim":
            name = _input(node, cond.input)
            shape = g.shape(name) if name else None
            axis = _attr(node, cond.attr, -1 if opset >= 13 else 1)
            if name and shape is None:
                cannot(f"the shape of '{name}' is unknown")
            elif name and shape:
                dim = shape[axis] if -len(shape) <= axis < len(shape) else None
                if not (isinstance(dim, int) and dim > 0):
                    fail(f"dim {axis} of '{name}' is {dim!r}")
        elif kind == "input_dtype":
            name = _input(node, cond.input)
            elem = g.elem_type(name) if name else None
            if elem:
                rule = self.table.dtypes.get(onnx_type_name(elem))
                if rule is None or rule.trt not in cond.types:
                    fail(f"'{name}' is {onnx_type_name(elem)}", suggestion=f"Cast '{name}' to {cond.types[0]}")
        elif kind == "absent_input":
            present = _present(node, cond.inputs)
            if present:
                fail(f"the node uses {', '.join(repr(p) for p in present)}")
        elif kind == "absent_output":
            for index in cond.outputs:
                name = _output(node, index)
                if not name:
                    continue
                used = name in g.graph_outputs or any(name in n.input for n, _ in g.nodes)
                if used:
                    fail(f"output '{name}' is used")
                else:
                    fail(f"output '{name}' is declared (unused)", "conditional",
                         "drop the unused output from the node (leave its name empty)")
        elif kind == "attr_absent":
            present = [a for a in cond.attrs if _has_attr(node, a)]
            if present:
                fail(f"the node sets {', '.join(present)}")
        elif kind == "attr_in":
            value = _attr(node, cond.attr, cond.default)
            if value not in cond.values:
                fail(f"{cond.attr} is {value!r}")
        elif kind == "attr_all_ones":
            value = _attr(node, cond.attr, [])
            if value and any(v != 1 for v in value):
                fail(f"{cond.attr} is {list(value)}")
        elif kind == "pads_symmetric":
            pads = list(_attr(node, cond.attr, []) or [])
            half = len(pads) // 2
            if pads and pads[:half] != pads[half:]:
                fail(f"{cond.attr} is {pads}")
        elif kind == "rnn_activations":
            direction = _attr(node, "direction", "forward")
            acts = list(_attr(node, "activations", []) or [])
            n = cond.per_direction
            if direction == "bidirectional" and len(acts) == 2 * n and acts[:n] != acts[n:]:
                fail(f"forward {acts[:n]} vs reverse {acts[n:]}")
        elif kind == "if_branches":
            then_g, else_g = _attr(node, "then_branch"), _attr(node, "else_branch")
            if then_g is not None and else_g is not None:
                for a, b in zip(then_g.output, else_g.output, strict=False):
                    if a.name == b.name:
                        fail(f"both branches name an output '{a.name}'")
                    ra = len(a.type.tensor_type.shape.dim) if a.type.tensor_type.HasField("shape") else None
                    rb = len(b.type.tensor_type.shape.dim) if b.type.tensor_type.HasField("shape") else None
                    if ra is not None and rb is not None and ra != rb:
                        fail(f"outputs '{a.name}' (rank {ra}) and '{b.name}' (rank {rb})")
        elif kind == "resize_axes":
            scales = _input(node, 2)
            axes = _attr(node, "axes")
            if scales and axes is not None and not g.is_weights(scales):
                rank = g.rank(node.input[0])
                if rank is None:
                    cannot(f"the rank of '{node.input[0]}' is unknown")
                elif [a % rank for a in axes] != list(range(rank)):
                    fail(f"axes is {list(axes)} with a tensor `scales` '{scales}'")
        elif kind == "last_dim":
            name = _input(node, cond.input)
            shape = g.shape(name) if name else None
            if name and not shape:
                cannot(f"the shape of '{name}' is unknown")
            elif name and shape[-1] != cond.equals:
                fail(f"the last dim of '{name}' is {shape[-1]!r}")
        return out


# ---------------------------------------------------------------------------------------------------------
# Model-level findings


def _model_findings(judge: _Judge, facts: ModelFacts) -> list[NodeVerdict]:
    section = judge.section
    found: list[NodeVerdict] = []
    opset = facts.opsets.get("", facts.opsets.get("ai.onnx", 0))
    span = f"opset {section.opset_min}-{section.opset_max}"
    basis = f"the onnx-tensorrt operator matrix for TensorRT {section.matrix_release}"
    if not section.opset_confirmed:
        basis += f", unconfirmed for {section.label}"
    if opset and opset < section.opset_min:
        found.append(NodeVerdict(node="", op_type="", verdict="unsupported",
                                 reason=f"ONNX opset {opset}: {judge.trt} parses {span} ({basis})",
                                 suggestion=f"convert the model to opset >= {section.opset_min} "
                                            "(onnx.version_converter) or re-export it"))
    elif opset and opset > section.opset_max:
        found.append(NodeVerdict(node="", op_type="", verdict="conditional",
                                 reason=f"ONNX opset {opset} is newer than the table's {span} ({basis}): "
                                        f"operators changed after opset {section.opset_max} are not covered",
                                 suggestion=f"export with opset <= {section.opset_max}"))
    elif opset and section.opset_max_by_release:
        known = sorted((release_tuple(r), m) for r, m in section.opset_max_by_release.items())
        first_release, first_max = known[0]
        if opset > first_max:
            enough = next((r for r, m in known if m >= opset), None)
            if judge.sel.release is None and enough is not None:
                found.append(NodeVerdict(
                    node="", op_type="", verdict="conditional",
                    reason=f"ONNX opset {opset}: TensorRT {first_release[0]}.{first_release[1]} parsed opset up to "
                           f"{first_max}, TensorRT {enough[0]}.{enough[1]} up to {section.opset_max}",
                    suggestion=f"build with TensorRT {enough[0]}.{enough[1]} or newer, or export with opset <= {first_max}"))
            elif judge.sel.release is not None and enough is not None and judge.sel.release < enough:
                found.append(NodeVerdict(
                    node="", op_type="", verdict="conditional",
                    reason=f"ONNX opset {opset}: documented for TensorRT {enough[0]}.{enough[1]} (up to opset "
                           f"{section.opset_max}), not for {judge.trt}",
                    suggestion=f"export with opset <= {first_max}, or use TensorRT >= {enough[0]}.{enough[1]}"))
    # dynamic inputs: TensorRT builds need an optimization profile (min/opt/max) for each dynamic dim
    profile = profile_finding(facts)
    if profile is not None:
        found.append(profile)
    return found


def profile_finding(facts: ModelFacts) -> NodeVerdict | None:
    """One finding for every dynamic dim without a range (one optimization profile holds them all), with the
    suggestion `--dim` and a recipe's `dims` take verbatim (model_facts.dims_suggestion). It says for TensorRT
    what the model-level findings say per dim: `convertctl check` shows this one in their place."""
    dims = open_dims(facts.model, facts.inputs, facts.dim_ranges)
    if not dims:
        return None
    listed = ", ".join(f"'{d.name}' (input '{d.input}' axis {d.axis}{', a batch dim' if d.batch else ''})" for d in dims)
    reason = (f"dynamic dim{'s' if len(dims) > 1 else ''} {listed} without a range: a TensorRT engine needs an "
              "optimization profile (min/opt/max shape) for every dynamic input")
    return NodeVerdict(node="", op_type="", verdict="conditional", kind="dynamic_dim", reason=reason,
                       suggestion=dims_suggestion(dims, "give each a profile", engine=True))


def _model_notes(judge: _Judge, facts: ModelFacts) -> list[str]:
    notes = list(judge.section.notes)
    g = judge.graph
    int64_io = [n for n in list(g.graph_inputs) + list(g.graph_outputs) if g.elem_type(n) == 7]
    if int64_io:
        rule = judge.table.dtypes.get("INT64")
        notes.append(f"INT64 model inputs/outputs {sorted(int64_io)}: " + (rule.note if rule and rule.note else ""))
    if judge.sel.section == "11":
        elems = {g.elem_type(n) for n in g.types}
        has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n, _ in g.nodes)
        if not has_qdq and not elems & {10, 16}:
            notes.append("TensorRT 11.x builds the types the ONNX has: this model has no FP16/BF16 tensors and no "
                         "Q/DQ nodes, so it builds as an FP32 engine (FP16 needs an FP16-typed ONNX, INT8 a Q/DQ ONNX)")
    return notes


def _sibling_evidence(facts: ModelFacts, graph: GraphIndex, by_node: dict[str, NodeVerdict], notes: list[str]) -> str:
    """Where TensorRT itself is absent: the ONNX parser of each installed sibling product (the targets that build
    with this package's code, `Target.shares`; today TensorRT for RTX) parses the model, and every node where it
    disagrees with the table gets a note labelled with that product. The table's verdicts stand: the sibling
    shares the onnx-tensorrt parser lineage, not TensorRT's exact operator set. Returns what `judged_by` adds."""
    import importlib.util

    from convertctl.targets import registry

    added = ""
    for sibling in registry.all_targets():
        if "tensorrt" not in sibling.shares or importlib.util.find_spec(sibling.module) is None:
            continue
        try:
            result = parse_isolated(facts.path, sibling)
        except Exception as exc:  # noqa: BLE001 - evidence that could not be had is said, never fatal
            notes.append(f"{sibling.title} evidence: its ONNX parser could not run: {type(exc).__name__}: {exc}")
            continue
        before = len(notes)
        merge_parser(result, graph.top_nodes, graph.top_names, by_node, notes, override=False)
        agreed = len(notes) == before
        notes.append(f"{result.label} ONNX parser (evidence, not TensorRT itself) "
                     + ("found no node where it disagrees with the table" if agreed else
                        f"disagrees with the table on {len(notes) - before} node(s): noted above; the table's verdicts stand"))
        added += f"; {result.label} ONNX parser compared as evidence (notes)"
    return added


def check_tensorrt(facts: ModelFacts, version: str = "10", evidence: bool = True) -> TargetReport:
    """Judge every node of the model for TensorRT `version` ("10", "11", "10.8", or "auto"). `evidence`: where
    TensorRT is absent, compare the table with the ONNX parser of an installed sibling product (notes only)."""
    table = load_table()
    installed = installed_tensorrt_version()
    sel = select_version(version, table, installed)
    graph = GraphIndex(facts)
    judge = _Judge(table=table, sel=sel, graph=graph)

    by_node: dict[str, NodeVerdict] = {}
    counts: dict[tuple[str, str], int] = {}
    for (node, scope), name in zip(graph.nodes, graph.names, strict=True):
        domain = "" if node.domain in _DEFAULT_DOMAINS else node.domain
        counts[(domain, node.op_type)] = counts.get((domain, node.op_type), 0) + 1
        opset = facts.opsets.get(domain, facts.opsets.get("ai.onnx", 0) if domain == "" else 1)
        findings = judge.judge(node, scope, opset)
        if not findings:
            continue
        verdict = worst(f.verdict for f in findings)
        ordered = sorted(findings, key=lambda f: -RANK[f.verdict])
        reasons = list(dict.fromkeys(f.reason for f in ordered))
        if scope:
            reasons[-1] += f" [in {scope}]"
        by_node[name] = NodeVerdict(
            node=name, op_type=node.op_type, domain=domain, verdict=verdict, reason="; ".join(reasons),
            suggestion=next((f.suggestion for f in ordered if f.suggestion and f.verdict == verdict), None),
            source=facts.sources.get(name) or facts.sources.get(node.name),
        )

    notes = _model_notes(judge, facts)
    how = judged_by(table)
    if sel.installed and not sel.parser:
        notes.append(f"TensorRT {sel.installed} is installed but the check was asked for {sel.section}.x: "
                     "its ONNX parser was not run")
    if sel.parser:
        try:
            result = parse_isolated(facts.path)
            merge_parser(result, graph.top_nodes, graph.top_names, by_node, notes)
            how += f" + TensorRT {result.version} ONNX parser"
        except Exception as exc:  # noqa: BLE001 - a broken installation (or a parser crash) must not break the check
            notes.append(f"TensorRT {sel.installed} is installed but its ONNX parser could not run: "
                         f"{type(exc).__name__}: {exc}")
    elif evidence and installed is None:
        how += _sibling_evidence(facts, graph, by_node, notes)
    notes += judge.notes

    model_level = _model_findings(judge, facts)
    nodes = model_level + list(by_node.values())
    for key, count in facts.op_counts.items():
        norm = ("" if key[0] in _DEFAULT_DOMAINS else key[0], key[1])
        counts[norm] = max(counts.get(norm, 0), count)
    ops = roll_up([n for n in nodes if n.node], counts, {("" if k == "ai.onnx" else k): v for k, v in facts.opsets.items()})
    verdict = worst(n.verdict for n in nodes)
    return TargetReport(target="tensorrt", version=sel.description, judged_by=how, verdict=verdict,
                        nodes=nodes, ops=ops, notes=notes)
