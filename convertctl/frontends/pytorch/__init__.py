"""PyTorch -> ONNX: torch.onnx.export in a child process (worker.py); the parent side is parent.py, and
source.py knows a PyTorch source without importing torch."""

from __future__ import annotations

from convertctl.frontends.base import Frontend, Stack, lazy
from convertctl.frontends.pytorch import source

export = lazy("convertctl.frontends.pytorch.parent", "export")

FRONTEND = Frontend(
    name="pytorch",
    reference_name="pytorch",
    export=export,
    preflight=source.preflight,
    source_files=source.source_files,
    read_paths=source.read_paths,
    check_source=source.check_source,
    cli_source=source.cli_source,
    source_help="a TorchScript file (torch.jit.save), a factory 'file.py:callable'",
    claims=source.claims,
    default_opset=18,
    opset_note="the dynamo exporter's minimum",  # it cannot go lower
    stacks=(Stack("pytorch", ("torch",), extra="torch"),),
    worker="convertctl.frontends.pytorch.worker",
)
