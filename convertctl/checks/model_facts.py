"""Facts about an ONNX model that every target checker needs, read once (no runtime involved).

`analyse()` loads the model (without external weights), runs the ONNX checker and shape inference
(errors mapped to nodes where possible), and collects: opsets, IR version, operator counts, the
element type and shape of every typed tensor, dynamic input dims, source-layer names kept by the
exporter, and the model-level findings that hold for every target (dtypes such as float64/string,
custom domains, unknown operators, dynamic dims without a recipe range, size over 2 GB).

IR version and opset against what an installed runtime supports are judged by the target checkers
(they ask the runtime); here they are only recorded.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convertctl.checks.verdicts import NodeVerdict
from convertctl.errors import SourceModelError, UsageError, require
from convertctl.onnx_graph import Graph
from convertctl.onnx_save import subgraphs
from convertctl.report.manifest import sha256_file

TWO_GB = 2**31
# element types recorded as a condition for every target (which targets cast or reject them is
# said by the target checkers)
NOTABLE_DTYPES = {11: "float64", 8: "string", 14: "complex64", 15: "complex128"}
_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25, 26}  # onnx.ModelProto field numbers


@dataclass
class ModelFacts:
    path: Path
    model: Any  # onnx.ModelProto, external data not loaded
    sha256: str
    ir_version: int
    opsets: dict[str, int]  # domain ("" = ONNX) -> version
    op_counts: dict[tuple[str, str], int]  # (domain, op_type) -> count
    types: dict[str, tuple[int, list[int | str | None]]]  # tensor name -> (onnx elem type, shape; None = unknown dim)
    dynamic_inputs: dict[str, list[str]]  # graph input -> its dynamic dims, named as `inputs` names them
    dim_ranges: dict[str, tuple[int, int, int]]  # symbolic dim -> (min, opt, max), from the recipe when given
    sources: dict[str, str]  # node name -> source-framework layer, where the exporter kept it
    size_bytes: int  # the model file plus its external data files
    findings: list[NodeVerdict] = field(default_factory=list)  # model-level and node-level, for every target
    # every node of the model, subgraphs included, with the name the verdicts use for it (the node's
    # own name, or "<op_type>_<index>" for an unnamed node)
    nodes: list[tuple[str, Any]] = field(default_factory=list)
    value_types: dict[str, Any] = field(default_factory=dict)  # tensor name -> onnx.TypeProto (after inference)
    initializers: set[str] = field(default_factory=set)  # initializer names (subgraphs included)
    notes: list[str] = field(default_factory=list)  # what could not be checked here, and why
    # every graph input ({name, shape, batch_axis}) with its dims in the names `--dim` and `dims` take (input_specs)
    inputs: list[dict] = field(default_factory=list)
    # the framework this ONNX was exported from, in a run (None: an ONNX file checked on its own): a target that may
    # convert the source itself judges the ONNX with that in mind
    source_framework: str | None = None


def analyse(path: Path, dim_ranges: dict[str, tuple[int, int, int]] | None = None, inputs=None) -> ModelFacts:
    """Read `path` once and collect the facts; bad input raises SourceModelError / UsageError.

    `dim_ranges`: (min, opt, max) per dim name; `inputs`: the recipe's input specs (name, shape, batch_axis), whose
    shapes may name the model's dynamic dims differently or fix them (input_specs)."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    if not path.exists():
        raise UsageError(f"model file not found: {path}")
    if not path.is_file():
        raise UsageError(f"{path} is not a file (give the .onnx file)")
    model = _load(onnx, path)
    size = _size_and_external_data(path, model)  # external data confined and bounded before anything reads it
    sha = sha256_file(path)
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
    notes: list[str] = []
    findings: list[NodeVerdict] = []

    graph = Graph(model.graph, subgraphs=True)
    nodes = list(zip(display_names(graph.nodes), graph.nodes, strict=True))
    initializers = set(graph.initializers)
    sources = {name: src for name, node in nodes if (src := source_of(node, initializers))}

    unknown = _unknown_operators(onnx, nodes, opsets)
    for name, node, reason in unknown:
        findings.append(NodeVerdict(node=name, op_type=node.op_type, domain=_domain(node), verdict="unknown",
                                    reason=reason, source=sources.get(name)))

    inferred = _check_and_infer(onnx, path, model, opsets, {name for name, _, _ in unknown}, nodes, notes, findings)
    value_types = Graph(inferred.graph, subgraphs=True).value_types
    types = {name: _elem_and_shape(tp) for name, tp in value_types.items() if tp.HasField("tensor_type")}

    findings += _dtype_findings(nodes, value_types, sources)
    # every dynamic dim under the name --dim and a recipe's dims take, unnamed ones included
    specs = input_specs(model.graph, initializers, inputs)
    dynamic_inputs = {}
    for spec in specs:
        dims = [d for d in spec["shape"] if isinstance(d, str)]
        if dims:
            dynamic_inputs[spec["name"]] = list(dict.fromkeys(dims))
    ranges = dict(dim_ranges or {})
    findings += _dynamic_dim_findings(model, specs, ranges)
    if size > TWO_GB:
        findings.append(NodeVerdict(
            node="", op_type="", verdict="conditional",
            reason=f"the model is {size / 2**30:.1f} GiB, over the 2 GB protobuf limit: it only works with its "
                   "weights in external data files beside the .onnx",
            suggestion="keep the external data file(s) next to the .onnx, and save it with "
                       "onnx.save(..., save_as_external_data=True), never with the weights inline"))

    op_counts: dict[tuple[str, str], int] = {}
    for _, node in nodes:
        key = (_domain(node), node.op_type)
        op_counts[key] = op_counts.get(key, 0) + 1
    return ModelFacts(
        path=path, model=model, sha256=sha, ir_version=model.ir_version, opsets=opsets, op_counts=op_counts,
        types=types, dynamic_inputs=dynamic_inputs, dim_ranges=ranges, sources=sources, size_bytes=size,
        findings=findings, nodes=nodes, value_types=value_types, initializers=initializers, notes=notes, inputs=specs,
    )


# ---------------------------------------------------------------------------------------------- loading

def _load(onnx, path: Path):
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if _looks_truncated(path):
            raise SourceModelError(
                f"{path} is a truncated ONNX file: it ends inside a field ({path.stat().st_size} bytes; {first})",
                hint="the file was cut short (an interrupted download or copy): write or fetch it again") from None
        raise SourceModelError(f"{path} is not an ONNX model (it does not parse as one: {first})",
                               hint="give an .onnx file (an onnx.ModelProto)") from None
    if not model.HasField("graph") or model.ir_version <= 0:
        what = "an empty file" if path.stat().st_size == 0 else "no graph and no IR version in it"
        raise SourceModelError(f"{path} is not an ONNX model ({what})", hint="give an .onnx file (an onnx.ModelProto)")
    return model


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise EOFError
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _looks_truncated(path: Path) -> bool:
    """True when the file's top level reads as ModelProto fields until the data ends mid-field."""
    data = path.read_bytes()
    pos, fields = 0, 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if number not in _MODEL_FIELDS or wire not in (0, 2):
                return False
            if wire == 0:
                _, pos = _varint(data, pos)
            else:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    return fields > 0 or number in (1, 7)
                pos += length
            fields += 1
    except EOFError:
        return fields > 0
    except ValueError:
        return False
    return False  # parsed to the end: the corruption is elsewhere, not a truncation


def _size_and_external_data(path: Path, model) -> int:
    """File size plus external data. The external data files are checked by convertctl.model's one rule (inside
    the model's folder, regular files, offset + length within them) before the ONNX checker or a runtime opens
    them: those would follow a location such as ../../etc/passwd, or hang on a FIFO."""
    from convertctl.model import external_data_files

    return path.stat().st_size + sum(ext.size for ext in external_data_files(path, model))


# ------------------------------------------------------------------------------------- nodes and names

def _domain(node) -> str:
    return "" if node.domain in ("", "ai.onnx") else node.domain


def display_name(node, index: int, used: set[str]) -> str:
    """The node's name, or "<op_type>_<index>" when it has none or repeats one (added to `used`)."""
    name = node.name
    if not name or name in used:
        base = node.name or node.op_type
        name = f"{base}_{index}"
        while name in used:
            index += 1
            name = f"{base}_{index}"
    used.add(name)
    return name


def display_names(nodes) -> list[str]:
    """The verdicts' names of `nodes` (every node, depth first through subgraphs: Graph(..., subgraphs=True)):
    each node's name, unique, or "<op_type>_<index>" (display_name)."""
    used: set[str] = set()
    return [display_name(node, index, used) for index, node in enumerate(nodes)]


def _literal_list(text: str) -> list[str] | None:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else None


def source_of(node, initializers: set[str]) -> str | None:
    """The source-framework layer of a node, where the exporter kept it.

    torch.onnx (dynamo) keeps `pkg.torch.onnx.name_scopes` (module paths, the last entry being the aten
    op) and `pkg.torch.onnx.class_hierarchy` (their classes) in the node's metadata_props, and a
    "namespace" string; the TorchScript exporter names nodes "/module/path/Op"; otherwise the weight
    initializer's name (exporters derive it from the module path) is the best lead.
    """
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = _literal_list(meta.get("pkg.torch.onnx.name_scopes", ""))
    classes = _literal_list(meta.get("pkg.torch.onnx.class_hierarchy", "")) or []
    if scopes and len(scopes) >= 2:
        module = scopes[-2]
        cls = classes[-2].rsplit(".", 1)[-1] if len(classes) == len(scopes) else ""
        if module:
            return f"{module} ({cls})" if cls else module
        if cls:
            return cls
    if meta.get("namespace"):
        parts = [p.split(":")[0].strip() for p in meta["namespace"].split("/")]
        classes_ns = [p.split(":", 1)[1].strip().rsplit(".", 1)[-1] if ":" in p else "" for p in meta["namespace"].split("/")]
        if len(parts) >= 2 and parts[-2]:
            return f"{parts[-2]} ({classes_ns[-2]})" if classes_ns[-2] else parts[-2]
    from convertctl.quantize.layers import source_module

    weight = source_module(node, initializers)
    if weight:
        return weight
    if node.name.startswith("/") and node.name.count("/") >= 2:
        # TorchScript exporter: "/layer1/layer1.0/conv1/Conv" is module layer1.0.conv1
        path = ""
        for seg in node.name.split("/")[1:-1]:
            path = seg if not path or seg.startswith(path + ".") else f"{path}.{seg}"
        return path or None
    return None


# ---------------------------------------------------------------------------- checker, inference, types

def _unknown_operators(onnx, nodes, opsets) -> list[tuple[str, Any, str]]:
    found = []
    for name, node in nodes:
        domain = _domain(node)
        label = f"{domain}::{node.op_type}" if domain else node.op_type
        if domain not in opsets:
            found.append((name, node, f"unknown: domain {domain or 'ai.onnx'!r} of {label} has no opset import "
                                      "in the model"))
        elif not onnx.defs.has(node.op_type, domain):
            if domain in ("", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"):
                found.append((name, node, f"unknown: {label} is not an operator of the ONNX standard "
                                          f"(onnx {onnx.__version__})"))
            else:
                found.append((name, node, f"unknown: custom operator {label} (domain {domain!r}): no ONNX schema; "
                                          "only a runtime or plugin that registers it can run it"))
        else:
            try:
                onnx.defs.get_schema(node.op_type, opsets[domain], domain)
            except Exception:  # SchemaError: the operator does not exist at that opset yet
                found.append((name, node, f"unknown: {label} does not exist in opset {opsets[domain]} of "
                                          f"{domain or 'ai.onnx'}"))
    return found


_NODE_PATTERNS = (
    re.compile(r"node name: ([^)]*)\)"),
    re.compile(r"Name: (\S+) OpType"),
    re.compile(r"name: (\S+)\s+OpType"),
    re.compile(r"node name (\S+?)\.? "),
    re.compile(r"node with name '([^']*)'"),
    re.compile(r"in node \(([^)]*)\)"),
)


def node_named_in(message: str, names) -> str | None:
    """The first known node name a checker/runtime message names, if any."""
    for pattern in _NODE_PATTERNS:
        for m in pattern.finditer(message):
            if m.group(1) in names:
                return m.group(1)
    return None


def one_line(message: str, limit: int = 300) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_and_infer(onnx, path: Path, model, opsets, unknown: set[str], nodes, notes, findings):
    """The ONNX checker (its complaints become findings: runtimes differ in what they accept), then strict
    shape inference (a failure there is an error: no runtime loads such a model); returns the inferred model."""
    by_name = {name: node for name, node in nodes}
    raw_names = {node.name: name for name, node in nodes if node.name}
    ir_max = onnx.IR_VERSION
    opset_max = onnx.defs.onnx_opset_version()
    too_new = model.ir_version > ir_max or opsets.get("", 0) > opset_max
    if too_new:
        notes.append(f"IR version {model.ir_version} / opset {opsets.get('', 0)} is newer than onnx "
                     f"{onnx.__version__} knows (IR {ir_max}, opset {opset_max}): the ONNX checker and strict shape "
                     "inference were skipped")
    checker_says = ""
    if not too_new:
        try:
            # by path: the checker then finds external data files beside the model (confined by analyse())
            onnx.checker.check_model(str(path), full_check=False)
        except Exception as exc:
            msg = checker_says = str(exc)
            hit = node_named_in(msg, raw_names)
            name = raw_names.get(hit) if hit else None
            if name is not None and name in unknown:
                notes.append(f"the ONNX checker stopped at node {name!r} (an operator it does not know); the nodes "
                             "after it were checked by shape inference only")
            elif "Field 'shape' of 'type' is required but missing" in msg:
                notes.append("the ONNX checker wants a shape on every graph input and output (some have none); "
                             "runtimes infer them")
            else:
                node = by_name.get(name) if name else None
                findings.append(NodeVerdict(
                    node=name or "", op_type=node.op_type if node is not None else "",
                    domain=_domain(node) if node is not None else "", verdict="conditional",
                    reason=f"the ONNX checker rejects it: {one_line(_strip_context(msg), 240)}",
                    suggestion="fix the model or re-export it: tools that run the ONNX checker (simplifiers, "
                               "some converters) will refuse it"))
    sorted_model, cycle = _toposorted(model)
    if cycle:  # no runtime loads such a model: it is invalid, not an unsupported operator (exit 2, not 3)
        said = f" (the ONNX checker: {one_line(_strip_context(checker_says), 300)})" if checker_says else ""
        raise SourceModelError(
            f"{path.name} is not a valid ONNX model: its graph has a cycle, nodes {', '.join(cycle[:5])}"
            f"{' …' if len(cycle) > 5 else ''} depend on each other{said}",
            hint="a graph must be acyclic (each tensor computed before it is used): fix or re-export the model")
    if sorted_model is not model:
        notes.append("the nodes are not in topological order: shape inference ran on a sorted copy")
    try:
        return onnx.shape_inference.infer_shapes(sorted_model, check_type=True, strict_mode=not too_new,
                                                 data_prop=True)
    except Exception as exc:
        msg = str(exc)
        hit = node_named_in(msg, raw_names)
        name = raw_names.get(hit) if hit else None
        first_op = re.search(r"\(op_type:(\w+)", msg)
        if name is None and first_op:  # unnamed nodes: "(op_type:Add)" names one when only one Add exists
            same = [label for label, node in nodes if node.op_type == first_op.group(1)]
            name = same[0] if len(same) == 1 else None
        lenient = None
        if name is not None and name in unknown:
            lenient = (f"shape inference stopped at node {name!r} (an operator it does not know): types after it "
                       "are those the model declares")
        elif first_op and re.search(r"Inference error\(s\):.*Inference error\(s\): \(op_type:", msg, re.S):
            # the error sits inside the operator's function body: onnx's own expansion (e.g. onnx 1.23 fails on
            # MeanVarianceNormalization's body); the runtimes implement the operator directly
            lenient = (f"shape inference fails inside the function body of {first_op.group(1)}"
                       f"{f' (node {name!r})' if name else ''}: {one_line(_strip_context(msg), 200)}; "
                       "types after it are those the model declares")
        if lenient:
            notes.append(lenient)
            return onnx.shape_inference.infer_shapes(sorted_model, check_type=False, strict_mode=False,
                                                     data_prop=False)
        where = f" at node {name!r} ({by_name[name].op_type})" if name else ""
        raise SourceModelError(f"{path.name}: shape inference fails{where}: {one_line(_strip_context(msg, hit))}",
                               hint="the model's shapes or types do not fit together; fix or re-export it") from None


def _strip_context(msg: str, node: str | None = None) -> str:
    msg = msg.split("==> Context:")[0].strip()
    msg = re.sub(r"^\[\w+\]\s*Inference error\(s\):\s*", "", msg)
    if node is not None:  # the node is named in front already
        msg = re.sub(r"\(op_type:[^,]*, node name: " + re.escape(node) + r"\):\s*", "", msg)
    return msg.strip()


def _used_names(node) -> set[str]:
    names = {i for i in node.input if i}
    for sub in subgraphs(node):
        for inner in sub.node:
            names |= _used_names(inner)
    return names


def _toposorted(model):
    """(the model itself when its main graph is topologically sorted, else a copy with sorted nodes; the names
    of the nodes that cannot be ordered because they form or follow a cycle, [] when there is none).
    ONNX Runtime and OpenVINO accept unsorted graphs; ONNX shape inference does not; nobody takes a cycle."""
    graph = model.graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    produced_by = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    deps = [{produced_by[t] for t in _used_names(n) if t in produced_by and t not in known} for n in graph.node]
    if all(all(d < k for d in ds) for k, ds in enumerate(deps)):
        return model, []
    order, placed, pending = [], set(), list(range(len(graph.node)))
    while pending:
        rest = [k for k in pending if not deps[k] <= placed]
        ready = [k for k in pending if deps[k] <= placed]
        if not ready:
            stuck = _cycle_members(set(rest), deps)
            return model, [graph.node[k].name or f"{graph.node[k].op_type}_{k}" for k in sorted(stuck)]
        order += ready
        placed |= set(ready)
        pending = rest
    copy = type(model)()
    copy.CopyFrom(model)
    del copy.graph.node[:]
    copy.graph.node.extend(graph.node[k] for k in order)
    return copy, []


def _cycle_members(stuck: set[int], deps: list[set[int]]) -> set[int]:
    """The nodes that cannot be ordered, without those that merely follow a cycle (no stuck node needs them)."""
    while True:
        sinks = stuck - {d for k in stuck for d in deps[k]}
        if not sinks or sinks == stuck:
            return stuck
        stuck -= sinks


def _elem_and_shape(tp) -> tuple[int, list[int | str | None]]:
    t = tp.tensor_type
    shape: list[int | str | None] = []
    for d in t.shape.dim:
        shape.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return t.elem_type, shape


def _dtype_findings(nodes, value_types, sources) -> list[NodeVerdict]:
    out = []
    for name, node in nodes:
        hits = []
        for role, tensors in (("input", node.input), ("output", node.output)):
            for t in tensors:
                tp = value_types.get(t)
                if t and tp is not None and tp.HasField("tensor_type") and tp.tensor_type.elem_type in NOTABLE_DTYPES:
                    hits.append(f"{NOTABLE_DTYPES[tp.tensor_type.elem_type]} {role} {t!r}")
        if hits:
            kinds = sorted({h.split()[0] for h in hits})
            out.append(NodeVerdict(
                node=name, op_type=node.op_type, domain=_domain(node), verdict="conditional",
                reason=f"{'/'.join(kinds)} tensors: " + ", ".join(hits[:4]) + (" …" if len(hits) > 4 else ""),
                suggestion=("cast to float32 before export if a target casts or rejects float64"
                            if "float64" in kinds else None),
                source=sources.get(name)))
    return out


# ------------------------------------------------------------------------------------------ dynamic dims

SIZE = "SIZE"  # the placeholder of a size the check cannot know: the user writes the size the model is used at


def input_specs(graph, initializers, declared=None) -> list[dict]:
    """Every graph input as {name, shape, batch_axis}, its dims in the names `--dim` and a recipe's `dims` take.

    Without a recipe (`declared`: its inputs, objects with name, shape, batch_axis): the model's names as
    data/dims.py gives them, batch axes as a run that reads the model infers them (data/inputs.py). An input the
    recipe declares (same rank) is named as the recipe's inputs[].shape names it, as in a run (which renames the
    dims of the model in flight): the recipe's name for a dynamic dim (its `dims` entry is that dim's range), or
    the size it fixes that dim to (a fixed dim: not open, its range is min = opt = max), and its batch_axis."""
    from convertctl.data.dims import onnx_input_dims
    from convertctl.data.inputs import infer_batch_axes

    specs = [{"name": vi.name, "shape": onnx_input_dims(vi)} for vi in graph.input
             if vi.name not in initializers and vi.type.HasField("tensor_type")]
    infer_batch_axes(specs)
    by_name = {spec.name: spec for spec in declared or ()}
    for spec in specs:
        given = by_name.get(spec["name"])
        if given is None or len(given.shape) != len(spec["shape"]):
            continue  # not declared, or another rank: the recipe's shape does not describe it (the run says so)
        spec["shape"] = [g if isinstance(d, str) and isinstance(g, int | str) and not isinstance(g, bool) else d
                         for d, g in zip(spec["shape"], given.shape, strict=True)]
        spec["batch_axis"] = getattr(given, "batch_axis", 0)
    return specs


@dataclass
class OpenDim:
    """A dynamic input dim without a range, under the name `--dim` and a recipe's `dims` take (input_specs)."""

    name: str
    input: str  # the first input that has it
    axis: int
    raw: int | str  # the model's own dim there: its dim_param, or its dim_value (-1, 0) for an unnamed one
    batch: bool  # at an input's batch axis: it takes a range (1..8), never a single made-up size
    size: tuple[int, str] | None = None  # (size, where it was read) when the model's metadata states one

    @property
    def flag(self) -> str:
        return f"--dim {self.name}={'1:1:8' if self.batch else self.size[0] if self.size else SIZE}"

    @property
    def entry(self) -> str:
        value = "{min: 1, opt: 1, max: 8}" if self.batch else self.size[0] if self.size else SIZE
        return f"{self.name}: {value}"


def open_dims(model, specs: list[dict], ranges) -> list[OpenDim]:
    """Every dynamic dim of the inputs (input_specs) without a range in `ranges`, once, in input and axis order,
    with its size from the model's metadata where it states one."""
    from types import SimpleNamespace

    from convertctl.data.inputs import metadata_sizes

    graph_inputs = {vi.name: vi for vi in model.graph.input}
    batch = set()
    for spec in specs:
        axis = spec.get("batch_axis", 0)
        if axis is not None and spec["shape"] and isinstance(spec["shape"][axis], str):
            batch.add(spec["shape"][axis])
    metadata = {p.key: p.value for p in model.metadata_props}
    views = [SimpleNamespace(name=s["name"], shape=s["shape"], dynamic_dims=[d for d in s["shape"] if isinstance(d, str)])
             for s in specs]
    sizes = metadata_sizes(metadata, views) if metadata else {}
    out: dict[str, OpenDim] = {}
    for spec in specs:
        raw_dims = graph_inputs[spec["name"]].type.tensor_type.shape.dim
        for axis, (d, name) in enumerate(zip(raw_dims, spec["shape"], strict=True)):
            if isinstance(name, str) and name not in ranges and name not in out:
                raw = d.dim_value if d.HasField("dim_value") else d.dim_param
                out[name] = OpenDim(name, spec["name"], axis, raw, name in batch, sizes.get(name))
    return list(out.values())


def dims_suggestion(dims: list[OpenDim], lead: str, engine: bool = False) -> str:
    """What to give `dims`, in the forms `--dim` and a recipe's `dims` take verbatim: a range for a batch dim,
    the size for any other dim (the model's metadata's, else SIZE to fill), and the range around that size for
    other sizes. Never `min 1` for a height or a width: verified at 1 it proves nothing. `engine`: said of a
    TensorRT engine (which takes only its profile's range), else of any artifact."""
    from convertctl.data.limits import MAX_DIM

    others = "an engine that takes other sizes" if engine else "other sizes"
    text = (f"{lead}: {' '.join(d.flag for d in dims)}, or in the recipe: dims: "
            f"{{{', '.join(d.entry for d in dims)}}}")
    notes = []
    placeholders = [d for d in dims if not d.batch and not d.size]
    if placeholders:
        first = placeholders[0].name
        notes.append(f"replace {SIZE} with the size the model is used at (a fixed size), or give a range around it "
                     f"for {others}: --dim {first}=MIN:{SIZE}:MAX, {first}: {{min: MIN, opt: {SIZE}, max: MAX}}")
    known = [d for d in dims if not d.batch and d.size]
    if known:
        around = []
        for d in known:
            size = d.size[0]
            low, high = max(1, size // 2), min(MAX_DIM, size * 2)
            around.append(f"--dim {d.name}={low}:{size}:{high} ({d.name}: {{min: {low}, opt: {size}, max: {high}}})")
        notes.append("; ".join(f"{d.name} = {d.size[0]} from {d.size[1]}" for d in known)
                     + f"; for {others} give a range around it: " + ", ".join(around))
    batch = [d.name for d in dims if d.batch]
    if batch:
        notes.append(f"{', '.join(batch)}: a batch dim; its max is the largest batch "
                     + ("the engine takes" if engine else "the model is run with"))
    return "; ".join([text, *notes])


def _dynamic_dim_findings(model, specs: list[dict], ranges) -> list[NodeVerdict]:
    """One finding per dynamic dim without a range, each with its own suggestion (dims_suggestion: the form
    `--dim` and a recipe's `dims` take verbatim). A TensorRT check says the same of all of them at once (one
    optimization profile): `convertctl check` then shows that one only."""
    from convertctl.data.dims import dim_name

    out = []
    for d in open_dims(model, specs, ranges):
        by = "convertctl" if dim_name(d.input, d.axis, d.raw) == d.name else "the recipe"
        if isinstance(d.raw, str) and d.raw == d.name:
            what = f"the dynamic dim {d.name!r}"
        elif isinstance(d.raw, str) and d.raw:
            what = f"dynamic ({d.raw!r}), named {d.name!r} by {by}"
        else:
            what = f"dynamic and unnamed, named {d.name!r} by {by}"
        out.append(NodeVerdict(
            node="", op_type="", verdict="conditional", kind="dynamic_dim",
            reason=f"input {d.input!r} axis {d.axis} is {what}, with no range given",
            suggestion=dims_suggestion([d], "give it a range" if d.batch else "give it a size")))
    return out
