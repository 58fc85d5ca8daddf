"""One index of an ONNX graph, shared by every module that asks questions of one.

`Graph(model_or_graph)` answers, without running anything and without reading weights until asked: the nodes
in order (through If/Loop/Scan bodies with `subgraphs=True`, each with the scope it sits in), which node
produces a tensor and which nodes read it, the initializers by name, whether a tensor is a build-time constant
(an initializer, a Constant node, or an Identity of one), the value of such a constant as numpy, and the element
type and shape a tensor is declared with. `onnx` and `numpy` are imported inside the methods that need them, so
importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any

_FLOAT, _INT64 = 1, 7  # onnx.TensorProto.DataType values (fixed by the ONNX standard)


def node_label(node) -> str:
    """How a message names a node: its name, else "<op_type>(<first output>)"."""
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


class Graph:
    """The index of an onnx.ModelProto's graph or of an onnx.GraphProto.

    `subgraphs`: walk the If/Loop/Scan bodies too (their nodes, initializers and declared types join the
    index; `scopes` says where each node sits). Consumers are the nodes that name a tensor as an input; a
    subgraph reading an outer-scope value implicitly is not one. `base_dir`: where the external-data files of
    initializers live (`value` reads them from there)."""

    def __init__(self, source, *, subgraphs: bool = False, base_dir: str = ""):
        graph = source.graph if hasattr(source, "opset_import") else source
        self.proto = graph
        self.base_dir = base_dir
        self.top_nodes: list[Any] = list(graph.node)
        self.nodes: list[Any] = []  # every node, depth first through subgraphs when they are walked
        self.scopes: list[str] = []  # per node: "" at the top level, else "If 'x' then_branch / Loop 'y' body"
        self.graphs: list[Any] = []  # every graph walked, the top one first
        self.initializers: dict[str, Any] = {}
        self._walk(graph, "", subgraphs)
        top_initializers = {t.name for t in graph.initializer}
        self.input_names: set[str] = {i.name for i in graph.input} - top_initializers  # the model's real inputs
        self.output_names: set[str] = {o.name for o in graph.output}
        self._producer: dict[str, Any] | None = None
        self._named: dict[str, Any] | None = None
        self._consumers: dict[str, list[tuple[Any, int]]] | None = None
        self._value_types: dict[str, Any] | None = None
        self._values: dict[str, Any] = {}

    def _walk(self, graph, scope: str, deep: bool) -> None:
        self.graphs.append(graph)
        for init in graph.initializer:
            self.initializers[init.name] = init
        for node in graph.node:
            self.nodes.append(node)
            self.scopes.append(scope)
            if not deep:
                continue
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    where = f"{node.op_type} '{node_label(node)}' {attr.name}"
                    self._walk(sub, f"{scope} / {where}" if scope else where, deep)

    # -- who writes and who reads a tensor ----------------------------------------------------------------
    def producer(self, name: str):
        """The node that outputs tensor `name`, or None (a graph input, an initializer, an unknown name)."""
        if self._producer is None:
            self._producer = {out: node for node in self.nodes for out in node.output if out}
        return self._producer.get(name) if name else None

    def node_named(self, name: str):
        """The node called `name` (node names are unique in a valid model), or None."""
        if self._named is None:
            self._named = {node.name: node for node in self.nodes if node.name}
        return self._named.get(name)

    def consumers(self, name: str) -> list[tuple[Any, int]]:
        """(node, input index) of every node that reads tensor `name`, in node order."""
        if self._consumers is None:
            self._consumers = {}
            for node in self.nodes:
                for index, inp in enumerate(node.input):
                    if inp:
                        self._consumers.setdefault(inp, []).append((node, index))
        return self._consumers.get(name, [])

    # -- constants ----------------------------------------------------------------------------------------
    def initializer(self, name: str):
        """The initializer (onnx.TensorProto) named `name`, or None."""
        return self.initializers.get(name)

    def _constant_node(self, name: str):
        node = self.producer(name)
        return node if node is not None and node.op_type == "Constant" and node.attribute else None

    def _identity_input(self, name: str) -> str | None:
        node = self.producer(name)
        return node.input[0] if node is not None and node.op_type == "Identity" and node.input else None

    def is_constant(self, name: str) -> bool:
        """An initializer, a Constant node's output, or an Identity of one: known when the model is built."""
        if name in self.initializers:
            return True
        source = self._identity_input(name)
        if source is not None:
            return self.is_constant(source)
        node = self.producer(name)
        return node is not None and node.op_type == "Constant"

    def value(self, name: str):
        """The value of a constant tensor as numpy, or None when it is not a constant or cannot be read (external
        data missing, a sparse or exotic tensor)."""
        if not name:
            return None
        if name in self._values:
            return self._values[name]
        from onnx import helper, numpy_helper

        value = None
        try:
            if name in self.initializers:
                value = numpy_helper.to_array(self.initializers[name], base_dir=self.base_dir)
            elif (source := self._identity_input(name)) is not None:
                value = self.value(source)
            elif (node := self._constant_node(name)) is not None:
                attr = node.attribute[0]
                if attr.name == "value":
                    value = numpy_helper.to_array(attr.t)
                elif attr.name != "sparse_value":
                    import numpy as np

                    value = np.asarray(helper.get_attribute_value(attr))
        except Exception:  # noqa: BLE001 - external data not loaded, exotic type: a constant of unknown value
            value = None
        self._values[name] = value
        return value

    def constant_shape(self, name: str) -> list[int] | None:
        """The shape of a constant tensor from its metadata (an initializer's weights are not read)."""
        if name in self.initializers:
            return list(self.initializers[name].dims)
        node = self._constant_node(name)
        if node is not None:
            if node.attribute[0].name == "value":
                return list(node.attribute[0].t.dims)
            value = self.value(name)
            return None if value is None else list(value.shape)
        source = self._identity_input(name)
        return None if source is None else self.constant_shape(source)

    # -- declared types and shapes --------------------------------------------------------------------------
    @property
    def value_types(self) -> dict[str, Any]:
        """Tensor name -> onnx.TypeProto, from the initializers and the inputs, value_info and outputs of every
        walked graph; where a name is declared twice the better-known type (element type, shape, fixed dims)
        wins."""
        if self._value_types is None:
            import onnx

            out: dict[str, Any] = {}
            for g in self.graphs:
                for t in g.initializer:
                    tp = onnx.TypeProto()
                    tp.tensor_type.elem_type = t.data_type
                    for d in t.dims:
                        tp.tensor_type.shape.dim.add().dim_value = d
                    out[t.name] = tp
                for vi in list(g.input) + list(g.value_info) + list(g.output):
                    if vi.type.WhichOneof("value") is not None:
                        prev = out.get(vi.name)
                        if prev is None or _known(vi.type) >= _known(prev):
                            out[vi.name] = vi.type
            self._value_types = out
        return self._value_types

    def elem_type(self, name: str) -> int | None:
        """The ONNX element type of a tensor as the model states it (no shape inference): an initializer's, a
        Constant's, through an Identity, else its declared type's."""
        if name in self.initializers:
            return self.initializers[name].data_type
        node = self._constant_node(name)
        if node is not None:
            attr = node.attribute[0]
            if attr.name == "value":
                return attr.t.data_type
            if attr.name in ("value_float", "value_floats"):
                return _FLOAT
            if attr.name in ("value_int", "value_ints"):
                return _INT64
        source = self._identity_input(name)
        if source is not None:
            return self.elem_type(source)
        tp = self.value_types.get(name)
        return tp.tensor_type.elem_type if tp is not None and tp.HasField("tensor_type") else None

    def shape(self, name: str) -> list[int | str | None] | None:
        """The declared shape of a tensor (a dim: its size, its name, or None), or None when no shape is known."""
        tp = self.value_types.get(name)
        if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tp.tensor_type.shape.dim]


def _known(tp) -> int:
    if tp.HasField("tensor_type"):
        t = tp.tensor_type
        return (t.elem_type != 0) + t.HasField("shape") + sum(d.HasField("dim_value") for d in t.shape.dim)
    return 1
