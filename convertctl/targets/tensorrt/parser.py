"""NVIDIA's own ONNX parser as a judge, for any product of the TensorRT family (a builder `Flavour`: its module
and title). TensorRT itself cannot be installed on this project's machines; TensorRT for RTX can, and its parser
(the same onnx-tensorrt lineage, its own operator set) runs without a GPU, so this code runs in the tests against
it. The product's module is imported inside `run_parser` only, in a child process (`parse_isolated`): a native
crash or abort of the parser ends that child, never the check.

What the parser says, per node:
- `parse_from_file` imports the graph and records an error per failing node (the node's index in the top-level
  graph, `node_name()` the failing node, which may sit inside an If/Loop body of that top-level node);
- `supports_model_v2` parses again and partitions the top-level nodes into the runs it could import
  (onnx-tensorrt ModelImporter::doSupportsModel). A node is left out of every partition when an error names it,
  when it is a data-dependent-shape operator the partitioner leaves out (NonZero, NonMaxSuppression, RoiAlign), or
  when it reads a graph input the parser refused; every other node is in a partition, so where the parse failed,
  "in a partition" means "no error names it", not "imported". Note: `is_subgraph_supported(i)` is only true when the WHOLE
  model is supported ("unknown" otherwise), so it says nothing about a single node.

A node is thus "rejected" (an error names it), "accepted" (the whole model parsed, or the node is in a partition:
no error names it), or neither (not judged: the parser gave no word on it).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from convertctl.checks.verdicts import NodeVerdict

PARSE_TIMEOUT_S = 600.0  # a parse of a real model takes seconds; a hang must not hold the check forever


class Product(Protocol):
    """What the parser needs of a product: a builder `Flavour` (builder.py) or a `Target` record both have it."""

    module: str  # the Python module ("tensorrt", ...)
    title: str  # how messages name the product


class ParserCrash(Exception):
    """The parser's child process died (a native crash or abort) or hung: no verdict from it."""


@dataclass
class ParserError:
    node: int  # top-level node index; -1: not tied to a node
    node_name: str  # the failing node's name (may be a node inside a subgraph of the top-level node)
    operator: str
    code: str
    desc: str

    @property
    def message(self) -> str:
        return f"{self.code}: {self.desc}" + (f" (node '{self.node_name}')" if self.node_name else "")


@dataclass
class ParserResult:
    product: str  # the product's title
    version: str
    parsed: bool  # parse_from_file succeeded: every node imported
    error_list: list[ParserError] = field(default_factory=list)
    partition: list[int] | None = None  # top-level nodes supports_model_v2 imported; None: it did not run

    @property
    def label(self) -> str:
        return f"{self.product} {self.version}"

    @property
    def errors(self) -> dict[int, list[str]]:
        """Messages by top-level node index (-1: not tied to a node)."""
        out: dict[int, list[str]] = {}
        for err in self.error_list:
            if err.message not in out.setdefault(err.node, []):
                out[err.node].append(err.message)
        return out

    def rejected(self, index: int) -> bool:
        return any(e.node == index for e in self.error_list)

    def accepted(self, index: int) -> bool:
        """The whole model parsed, or supports_model_v2 kept the node in a partition (no error names it)."""
        if self.rejected(index):
            return False
        return self.parsed or (self.partition is not None and index in self.partition)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ParserResult:
        return cls(product=data["product"], version=data["version"], parsed=data["parsed"],
                   error_list=[ParserError(**e) for e in data["error_list"]], partition=data["partition"])


def parser_errors(parser) -> dict[int, list[str]]:
    """An OnnxParser's errors by top-level node index (-1: not tied to a node), with the node's name.

    Also used by the engine builder."""
    errors: dict[int, list[str]] = {}
    for err in _error_records(parser):
        errors.setdefault(err.node, []).append(err.message)
    return errors


def _error_records(parser) -> list[ParserError]:
    found = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        found.append(ParserError(node=int(err.node()),
                                 node_name=str(err.node_name()) if hasattr(err, "node_name") else "",
                                 operator=str(err.node_operator()) if hasattr(err, "node_operator") else "",
                                 code=str(err.code()), desc=str(err.desc())))
    return found


def _default_product() -> Product:
    from convertctl.targets.tensorrt.builder import TENSORRT

    return TENSORRT


def run_parser(path: Path, product: Product | None = None) -> ParserResult:
    """Parse the model with `product`'s ONNX parser (default: TensorRT) in THIS process and collect per-node errors.

    Written against the TensorRT 10.x/11.x Python API (python/src/parsers/pyOnnx.cpp in NVIDIA/TensorRT), which
    TensorRT for RTX shares. A native crash here ends the process: the check calls `parse_isolated`.
    """
    import importlib

    product = product or _default_product()
    trt = importlib.import_module(product.module)  # deliberately lazy: the module exists only where installed

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10.x: opt in; 11.x and TensorRT for RTX: always on
        flags |= 1 << int(strongly_typed)

    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = bool(parser.parse_from_file(str(path)))
    errors = _error_records(parser)
    partition: list[int] | None = None
    if hasattr(trt.OnnxParser, "supports_model_v2"):  # TensorRT >= 10.1
        # The network must outlive its parser: the bindings do not keep it alive, and a parser over a freed network
        # segfaults in supports_model_v2 (measured with TensorRT-RTX 1.7).
        check_network = builder.create_network(flags)
        checker = trt.OnnxParser(check_network, logger)
        checker.supports_model_v2(path.read_bytes(), str(path))
        partition = sorted({int(i) for s in range(checker.num_subgraphs) for i in checker.get_subgraph_nodes(s)})
        seen = {(e.node, e.message) for e in errors}
        errors += [e for e in _error_records(checker) if (e.node, e.message) not in seen]
        del checker, check_network
    del parser, network
    return ParserResult(product=product.title, version=str(trt.__version__), parsed=parsed, error_list=errors,
                        partition=partition)


_RESULTS: dict[tuple, ParserResult] = {}  # one parse per model file and product in a process (check -t A -t B)


def parse_isolated(path: Path, product: Product | None = None, timeout: float = PARSE_TIMEOUT_S) -> ParserResult:
    """`run_parser` in a child process: the parser's native crash or abort (or hang) raises ParserCrash here
    instead of killing convertctl. Results are kept per (file, size, mtime, product) for this process."""
    import subprocess
    import tempfile

    from convertctl import processes
    from convertctl.frontends.child import exit_description

    product = product or _default_product()
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, product.module)
    if key in _RESULTS:
        return _RESULTS[key]
    with tempfile.TemporaryDirectory(prefix="convertctl-parse-") as folder:
        out, log = Path(folder) / "result.json", Path(folder) / "parser.log"
        cmd = [sys.executable, "-m", "convertctl.targets.tensorrt.parser", product.module, product.title,
               str(path), str(out)]
        with open(log, "wb") as sink:
            try:
                proc = processes.run(cmd, timeout=timeout, stdout=sink, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            except subprocess.TimeoutExpired:
                raise ParserCrash(f"{product.title}'s ONNX parser did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0 or not out.is_file():
            tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
            raise ParserCrash(f"{product.title}'s ONNX parser process {exit_description(proc.returncode)}"
                              + (f"; last output: {' | '.join(tail)}"[:600] if tail else ""))
        result = ParserResult.from_dict(json.loads(out.read_text()))
    _RESULTS[key] = result
    return result


def merge_parser(result: ParserResult, top_nodes: list[Any], top_names: list[str], by_node: dict[str, NodeVerdict],
                 notes: list[str], override: bool = True) -> None:
    """Compare the parser with the table on every top-level node and note each disagreement. `top_nodes` are the
    graph's top-level nodes in order (the parser's node indices), `top_names` their verdict names.

    override=True (the product judged is the one that parsed): a node the parser rejects becomes "unsupported"
    with its message, a node it imported that the table rejects becomes "conditional". override=False (the parser
    is evidence from a sibling product, not the judged one): only notes, labelled with the product that parsed."""
    label = result.label
    evidence = "" if override else f"{result.product} evidence (the table's verdict stands): "
    errors = result.errors
    for index, (node, name) in enumerate(zip(top_nodes, top_names, strict=True)):
        table = by_node.get(name)
        table_verdict = table.verdict if table else "supported"
        if result.rejected(index) and table_verdict in ("supported", "conditional", "unknown"):
            messages = "; ".join(errors.get(index, []))
            notes.append(f"{evidence}{name} ({node.op_type}): table says {table_verdict}, {label} parser "
                         f"rejects it: {messages}")
            if override:
                by_node[name] = NodeVerdict(node=name, op_type=node.op_type, domain=node.domain or "",
                                            verdict="unsupported", reason=f"{label} ONNX parser: {messages}",
                                            suggestion=table.suggestion if table else None,
                                            source=table.source if table else None)
        elif result.accepted(index) and table_verdict in ("unsupported", "unknown"):
            notes.append(f"{evidence}{name} ({node.op_type}): table says {table_verdict}, {label} parser "
                         "accepts it")
            if override and table is not None:
                by_node[name] = table.model_copy(update={
                    "verdict": "conditional",
                    "reason": f"{label} ONNX parser accepts it (table: {table.reason}); the engine build decides"})
    for message in errors.get(-1, []):
        notes.append(f"{evidence}{label} parser (not tied to a node): {message}")


def _child(argv: list[str]) -> int:
    """python -m convertctl.targets.tensorrt.parser MODULE TITLE MODEL OUT_JSON (what parse_isolated runs)."""
    from types import SimpleNamespace

    module, title, model, out = argv
    result = run_parser(Path(model), SimpleNamespace(module=module, title=title))
    tmp = Path(out + ".tmp")
    tmp.write_text(json.dumps(result.to_dict()))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
