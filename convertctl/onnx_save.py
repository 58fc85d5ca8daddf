"""Every ONNX convertctl writes is topologically sorted and passes ONNX's full checker before any runtime
loads it: ONNX Runtime trusts node order and crashes natively (a segfault, no message) on a graph whose
nodes use values defined later, which is what onnxruntime.transformers' FP16 converter can emit.

Why a sort of our own: onnx has no public one, and onnxruntime.transformers' `topological_sort` sorts
only the top-level graph and ignores the outer-scope values a subgraph (If/Loop/Scan body) reads, so it
can move an If before the node that feeds its branches. This one keeps the original order wherever it is
already valid (a graph in order comes out unchanged) and sorts every subgraph too.
"""

from __future__ import annotations

import heapq
from pathlib import Path

from convertctl.errors import ConvertctlError


def subgraphs(node):
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def _reads(node) -> set[str]:
    """Every value a node needs before it runs: its inputs and the outer-scope values its subgraphs read."""
    needed = {name for name in node.input if name}
    for graph in subgraphs(node):
        defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
        defined |= {i.name for i in graph.sparse_initializer}
        for inner in graph.node:
            needed |= _reads(inner) - defined
            defined |= set(inner.output)
    return needed


def sort_graph(graph, available: set[str] = frozenset()) -> bool:
    """Put the nodes of `graph` (and of its subgraphs) in an order where every value is defined before it is
    used; stable (the original order wins among ready nodes). Returns whether the order changed. A value
    that nothing defines (neither an input, an initializer, `available` from an outer scope, nor a node) is
    left to the checker to name; a cycle raises ConvertctlError."""
    defined = set(available) | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    defined |= {i.name for i in graph.sparse_initializer}
    nodes = list(graph.node)
    produced = {out: idx for idx, node in enumerate(nodes) for out in node.output if out}
    waits_on: list[set[int]] = []
    users: dict[int, list[int]] = {}
    for idx, node in enumerate(nodes):
        deps = {produced[name] for name in _reads(node) if name not in defined and name in produced}
        deps.discard(idx)
        waits_on.append(deps)
        for dep in deps:
            users.setdefault(dep, []).append(idx)
    ready = [idx for idx, deps in enumerate(waits_on) if not deps]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        idx = heapq.heappop(ready)
        order.append(idx)
        for user in users.get(idx, ()):
            waits_on[user].discard(idx)
            if not waits_on[user]:
                heapq.heappush(ready, user)
    if len(order) != len(nodes):
        stuck = [nodes[i].name or nodes[i].op_type for i in range(len(nodes)) if waits_on[i]][:3]
        raise ConvertctlError(f"the ONNX graph has a cycle (through {', '.join(stuck)}); it cannot be run")
    changed = order != sorted(order)
    if changed:
        graph.ClearField("node")
        graph.node.extend(nodes[i] for i in order)
    scope = defined | set(produced)
    for node in graph.node:
        for sub in subgraphs(node):
            changed |= sort_graph(sub, scope)
    return changed


def save_checked(model, path: Path) -> bool:
    """Sort, save, and run the full ONNX checker (with shape inference) on the file as written. Returns
    whether the nodes had to be reordered. A model the checker refuses is convertctl's own bug: it is
    raised as such (exit 1), with the checker's reason, before a runtime can crash on it."""
    import onnx

    reordered = sort_graph(model.graph)
    path = Path(path)
    onnx.save(model, str(path))
    check_file(path)
    return reordered


def check_file(path: Path) -> None:
    """ONNX's full checker on a file convertctl wrote (by path, so models over 2 GB are checked too)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        reason = " ".join(str(exc).split())[:400]
        raise ConvertctlError(f"convertctl wrote an invalid ONNX {Path(path).name}: {reason}",
                              hint="this is a bug in convertctl: please report it with the model") from exc
