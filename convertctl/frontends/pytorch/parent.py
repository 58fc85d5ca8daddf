"""PyTorch -> ONNX (parent side): prepares the request and runs the worker in a child process."""

from __future__ import annotations

import os
from pathlib import Path

from convertctl.frontends.child import run_child
from convertctl.frontends.result import ExportResult, load_reference
from convertctl.model import describe


def export(recipe, samples_path: Path, workdir: Path, chunk: int | None = None) -> ExportResult:
    from convertctl.frontends.interpreters import resolve
    from convertctl.frontends.pytorch import FRONTEND

    interpreter = resolve(FRONTEND.name, None, recipe.export.python)
    wanted = recipe.export.opset or FRONTEND.default_opset
    onnx_path = workdir / "model.onnx"
    reference = workdir / "reference.npz"
    request = {
        "source": {
            "kind": recipe.source.kind,
            "path": str(recipe.source.path) if recipe.source.path else None,
            "factory": recipe.source.factory,
            "factory_args": recipe.source.factory_args,
        },
        "inputs": [i.model_dump() for i in recipe.inputs],
        "dims": {k: v.model_dump() for k, v in recipe.dims.items()},
        "opset": wanted,
        "exporter": recipe.export.exporter,
        "external_data": recipe.export.external_data,
        "output_names": recipe.export.output_names,
        # relative to the child's working folder, so the request stays true after the folder moves
        "samples": os.path.relpath(samples_path, workdir),
        "onnx": onnx_path.name,
        "reference": reference.name,
        "chunk": chunk,  # the model's batch limit: reference outputs are computed this many samples at a time
    }
    result = run_child(FRONTEND.worker, request, workdir, "export", interpreter.python)
    details = {k: result[k] for k in ("exporter", "attempts", "torch", "parameters_bytes", "external_data",
                                      "child_seconds")}
    opset = describe(onnx_path).opset
    details["opset"] = opset
    details["python"] = {"executable": interpreter.python, "chosen_by": interpreter.origin}
    findings = [f"exported with torch.onnx.export ({result['exporter']} exporter), opset {opset}"]
    if opset != wanted:  # the dynamo exporter cannot go below 18, and says nothing
        findings.append(f"opset {wanted} was asked for; the {result['exporter']} exporter wrote {opset}")
    warnings = [f"{a['exporter']} exporter failed, fell back to the next: {a['reason']}"
                for a in result["attempts"] if not a["ok"]]
    return ExportResult(
        onnx=onnx_path,
        reference=load_reference(reference),
        reference_name="pytorch",
        details=details,
        findings=findings + warnings,
        warnings=warnings,
        logs=[workdir / "export.log"],
    )
