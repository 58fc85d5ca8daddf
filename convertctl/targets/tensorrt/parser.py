"""TensorRT's own ONNX parser, as a second judge next to the support table: ONLY where the `tensorrt`
module is installed. TensorRT cannot be installed on this project's machines, so this code is written
against the documented Python API (tensorrt.OnnxParser) and its test (tests/test_check_tensorrt.py) is skipped
here. `tensorrt` is imported inside run_parser only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convertctl.checks.verdicts import NodeVerdict


@dataclass
class ParserResult:
    version: str
    parsed: bool
    errors: dict[int, list[str]]  # top-level node index (-1: not tied to a node) -> messages
    unsupported_nodes: set[int]  # node indices in subgraphs supports_model_v2 reports unsupported
    partitioned: bool  # supports_model_v2 ran (TensorRT >= 10.1)


def parser_errors(parser) -> dict[int, list[str]]:
    """A tensorrt.OnnxParser's errors by top-level node index (-1: not tied to a node), with the node's name.

    Also used by the engine builder."""
    errors: dict[int, list[str]] = {}
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        index = int(err.node())
        name = err.node_name() if hasattr(err, "node_name") else ""
        errors.setdefault(index, []).append(f"{err.code()}: {err.desc()}" + (f" (node '{name}')" if name else ""))
    return errors


def run_parser(path: Path) -> ParserResult:
    """Parse the model with TensorRT's ONNX parser (tensorrt.OnnxParser) and collect per-node errors.

    Written against the TensorRT 10.x/11.x Python API (python/src/parsers/pyOnnx.cpp in NVIDIA/TensorRT).
    Only called after importlib.util.find_spec("tensorrt") found the module.
    """
    import tensorrt as trt  # noqa: PLC0415 - deliberately lazy: the module exists only on GPU machines

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # 10.x: opt in; 11.x: always on (flag kept, deprecated)
        flags |= 1 << int(strongly_typed)

    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = bool(parser.parse_from_file(str(path)))
    errors = parser_errors(parser)
    unsupported: set[int] = set()
    partitioned = False
    if hasattr(trt.OnnxParser, "supports_model_v2"):  # TensorRT >= 10.1: a partition of all nodes
        checker = trt.OnnxParser(builder.create_network(flags), logger)
        checker.supports_model_v2(path.read_bytes(), str(path))
        partitioned = True
        for s in range(checker.num_subgraphs):
            if not checker.is_subgraph_supported(s):
                unsupported.update(int(i) for i in checker.get_subgraph_nodes(s))
        for index, messages in parser_errors(checker).items():
            errors.setdefault(index, [])
            errors[index] += [m for m in messages if m not in errors[index]]
    return ParserResult(version=str(trt.__version__), parsed=parsed, errors=errors,
                        unsupported_nodes=unsupported, partitioned=partitioned)


def merge_parser(result: ParserResult, top_nodes: list[Any], top_names: list[str], by_node: dict[str, NodeVerdict],
                 notes: list[str]) -> None:
    """Let the parser overrule the table where it rejects a node; note every disagreement. `top_nodes` are the
    graph's top-level nodes in order (the parser's node indices), `top_names` their verdict names."""
    for index, (node, name) in enumerate(zip(top_nodes, top_names, strict=True)):
        table = by_node.get(name)
        table_verdict = table.verdict if table else "supported"
        rejected = index in result.unsupported_nodes or index in result.errors
        messages = "; ".join(result.errors.get(index, [])) or "in a subgraph supports_model_v2 marks unsupported"
        if rejected and table_verdict in ("supported", "conditional", "unknown"):
            notes.append(f"{name} ({node.op_type}): table says {table_verdict}, TensorRT {result.version} parser "
                         f"rejects it: {messages}")
            by_node[name] = NodeVerdict(node=name, op_type=node.op_type, domain=node.domain or "",
                                        verdict="unsupported",
                                        reason=f"TensorRT {result.version} ONNX parser: {messages}",
                                        suggestion=table.suggestion if table else None,
                                        source=table.source if table else None)
        elif not rejected and result.partitioned and table_verdict in ("unsupported", "unknown"):
            notes.append(f"{name} ({node.op_type}): table says {table_verdict}, TensorRT {result.version} parser "
                         "accepts it")
            if table is not None:
                by_node[name] = table.model_copy(update={
                    "verdict": "conditional",
                    "reason": f"TensorRT {result.version} ONNX parser accepts it (table: {table.reason}); "
                              "the engine build decides"})
    for message in result.errors.get(-1, []):
        notes.append(f"TensorRT {result.version} parser (not tied to a node): {message}")


# ---------------------------------------------------------------------------------------------------------
