"""PaddlePaddle and TensorFlow/Keras -> ONNX (parent side): the format, the interpreter, the child's request.

The child (paddle_worker / tf_worker) loads the model, runs the framework's own inference on the samples
(the reference), converts with paddle2onnx / tf2onnx and writes the ONNX. The parent never imports paddle
or tensorflow. Afterwards the ONNX's dynamic dims get the recipe's names (tf2onnx writes `unk__N`,
paddle2onnx `p2o.DynamicDimension.N`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from convertctl.frontends.child import run_child
from convertctl.frontends.formats import ModelFiles, detect
from convertctl.frontends.interpreters import Interpreter, resolve
from convertctl.frontends.result import ExportResult, load_reference

DEFAULT_OPSET = {"paddle": 13, "tensorflow": 17}
WORKER = {"paddle": "convertctl.frontends.paddle_worker", "tensorflow": "convertctl.frontends.tf_worker"}
REFERENCE_NAME = {"paddle": "paddle inference", "tensorflow": "tensorflow"}


def _setup(recipe) -> tuple[ModelFiles, Interpreter]:
    files = detect(recipe.source.path, recipe.source.format)
    if files.framework != recipe.source.framework:
        from convertctl.errors import SourceModelError

        raise SourceModelError(f"source.framework is {recipe.source.framework!r} but {recipe.source.path} is a "
                               f"{files.framework} model ({files.format})", hint=f"set source.framework: {files.framework}")
    return files, resolve(files.framework, files.format, recipe.export.python)


def _base_request(files: ModelFiles) -> dict:
    return {"format": files.format, "model": str(files.model.resolve()),
            "params": str(files.params.resolve()) if files.params else None}


def describe_inputs(recipe, workdir: Path) -> list[dict]:
    """The model's inputs from its own signature, for a recipe that gives none: [{name, shape, dtype}] with
    the dynamic dims named as data/dims.py says (first dim `batch`, others `<input>_<axis>`); a scalar stays []."""
    from convertctl.data.dims import auto_name

    files, interpreter = _setup(recipe)
    result = run_child(WORKER[files.framework], {"mode": "describe", **_base_request(files)}, workdir, "describe",
                       interpreter.python)
    inputs = []
    for spec in result["inputs"]:
        shape = [d if isinstance(d, int) and d > 0 else auto_name(spec["name"], axis)
                 for axis, d in enumerate(spec["shape"])]
        inputs.append({"name": spec["name"], "shape": shape, "dtype": spec["dtype"]})
    return inputs


def name_dynamic_dims(onnx_path: Path, inputs) -> dict[str, str]:
    """Give the ONNX's dynamic dims the recipe's names; returns {old dim_param: new name}.

    Inputs are renamed by position; an output dim that had one of the inputs' old names gets the new one,
    and an unnamed dynamic first dim of an output takes the inputs' common batch name."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)  # external weights stay where they are
    declared = {spec.name: list(spec.shape) for spec in inputs}
    renamed: dict[str, str] = {}
    changed = False
    for value in model.graph.input:
        shape = declared.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is None or len(shape) != len(dims):
            continue
        for dim, want in zip(dims, shape, strict=True):
            if isinstance(want, str) and not (dim.HasField("dim_value") and dim.dim_value > 0):
                if dim.dim_param and dim.dim_param != want:
                    renamed[dim.dim_param] = want
                changed = changed or dim.dim_param != want
                dim.dim_param = want  # also replaces a -1 / 0 dim_value (a oneof): unnamed dynamic
    firsts = {s[0] for s in declared.values() if s and isinstance(s[0], str)}
    batch = next(iter(firsts)) if len(firsts) == 1 else None
    outputs = {value.name for value in model.graph.output}
    for value in [*model.graph.output, *model.graph.value_info]:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]
                changed = True
            elif axis == 0 and batch and value.name in outputs and _converter_dim(dim.dim_param):
                changed = changed or dim.dim_param != batch
                dim.dim_param = batch  # unnamed, or a converter's DynamicDimension.N / unk__N
    if changed:
        onnx.save(model, str(onnx_path))
    return renamed


def _converter_dim(name: str) -> bool:
    """A dim name no user chose: empty, paddle2onnx's DynamicDimension.N, tf2onnx's unk__N."""
    return not name or not name.isidentifier() or re.fullmatch(r"unk__\d+", name) is not None


def export(recipe, samples_path: Path, workdir: Path, chunk: int | None = None) -> ExportResult:
    files, interpreter = _setup(recipe)
    framework = files.framework
    onnx_path, reference = workdir / "model.onnx", workdir / "reference.npz"
    request = {
        "mode": "export", **_base_request(files),
        "inputs": [i.model_dump() for i in recipe.inputs],
        "dims": {k: v.model_dump() for k, v in recipe.dims.items()},
        "opset": recipe.export.opset or DEFAULT_OPSET[framework],
        "samples": os.path.relpath(samples_path, workdir),
        "chunk": chunk, "onnx": onnx_path.name, "reference": reference.name,
    }
    result = run_child(WORKER[framework], request, workdir, "export", interpreter.python)
    renamed = name_dynamic_dims(onnx_path, recipe.inputs)
    versions = result.get("versions", {})
    main_version = versions.get("paddlepaddle" if framework == "paddle" else "tensorflow", "")
    warnings = [interpreter.warning] if interpreter.warning else []
    # a converter that failed before the one that worked (tf2onnx's from_keras on any Keras 3 Sequential model):
    # a finding, not a warning, since the result is verified against the framework either way
    fallbacks = [f"{a['converter']} failed, fell back to the next: {a.get('reason', '')}"
                 for a in result.get("attempts", []) if not a.get("ok")]
    findings = [f"{files.format} model converted with {result['converter']}, opset {result.get('opset')}",
                f"reference: {REFERENCE_NAME[framework]} {main_version} in {interpreter.python} "
                f"(chosen by {interpreter.origin})", *result.get("notes", []), *fallbacks, *warnings]
    if renamed:
        findings.append("dynamic dims renamed: " + ", ".join(f"{a} -> {b}" for a, b in renamed.items()))
    return ExportResult(
        onnx=onnx_path,
        reference=load_reference(reference),
        reference_name=f"{REFERENCE_NAME[framework]} {main_version}".strip(),
        details={"format": files.format, "converter": result["converter"], "attempts": result.get("attempts", []),
                 "versions": versions, "opset": result.get("opset"), "stack": interpreter.stack,
                 "python": {"executable": interpreter.python, "chosen_by": interpreter.origin},
                 "dims_renamed": renamed, "child_seconds": result["child_seconds"]},
        findings=findings,
        warnings=warnings,
        logs=[workdir / "export.log"],
    )
