"""PyTorch -> ONNX (parent side): prepares the request and runs torch_worker in a child process."""

from __future__ import annotations

from pathlib import Path

from convertctl.frontends.child import run_child
from convertctl.frontends.result import ExportResult, load_reference


def export(recipe, samples_path: Path, workdir: Path) -> ExportResult:
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
        "opset": recipe.export.opset,
        "exporter": recipe.export.exporter,
        "output_names": recipe.export.output_names,
        "samples": str(samples_path),
        "onnx": str(onnx_path),
        "reference": str(reference),
    }
    result = run_child("convertctl.frontends.torch_worker", request, workdir, "export")
    details = {k: result[k] for k in ("exporter", "attempts", "torch", "parameters_bytes", "external_data")}
    findings = [f"exported with torch.onnx.export ({result['exporter']} exporter), opset {recipe.export.opset}"]
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
