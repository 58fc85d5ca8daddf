"""A model that a converter (paddle2onnx, tf2onnx) turns into ONNX in a child process: the parent side that the
paddle and tensorflow front ends share.

The child (the front end's `worker`) loads the model, runs the framework's own inference on the samples
(the reference), converts and writes the ONNX. The parent never imports the framework. Afterwards the ONNX's
dynamic dims get the recipe's names (dims.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from convertctl.frontends.base import Frontend, ModelFiles
from convertctl.frontends.formats import detect


def _setup(frontend: Frontend, recipe):
    from convertctl.frontends.interpreters import resolve_stack

    files = detect(recipe.source.path, recipe.source.format)
    if files.framework != recipe.source.framework:
        from convertctl.errors import SourceModelError

        raise SourceModelError(f"source.framework is {recipe.source.framework!r} but {recipe.source.path} is a "
                               f"{files.framework} model ({files.format})", hint=f"set source.framework: {files.framework}")
    return files, resolve_stack(frontend.stacks, frontend.stack(files.format).name, recipe.export.python)


def _base_request(files: ModelFiles) -> dict:
    return {"format": files.format, "model": str(files.model.resolve()),
            "params": str(files.params.resolve()) if files.params else None}


def preflight(recipe) -> None:
    """A wrong folder or a missing weights file, and a missing framework environment: before anything is written."""
    from convertctl.frontends.interpreters import resolve

    found = detect(recipe.source.path, recipe.source.format)
    resolve(found.framework, found.format, recipe.export.python)


def source_files(recipe) -> list[Path]:
    found = detect(recipe.source.path, recipe.source.format)
    if found.model.is_dir():  # a SavedModel: every file in it
        return sorted(f for f in found.model.rglob("*") if f.is_file())
    return [found.model] + ([found.params] if found.params else [])


def check_source(source) -> None:
    if source.path is None or source.factory:
        raise ValueError(f"a {source.framework} source takes 'path' (the model's folder or file) only")


def cli_source(framework: str, source: str) -> dict:
    from convertctl.errors import UsageError

    found = detect(Path(source))  # the framework from the files; a wrong folder is one clear error
    if framework != found.framework:
        raise UsageError(f"--framework {framework}, but {source} is a {found.framework} model ({found.format})")
    return {"framework": found.framework, "path": source}


def describe_inputs(frontend: Frontend, recipe, workdir: Path) -> list[dict]:
    """The model's inputs from its own signature, for a recipe that gives none: [{name, shape, dtype}] with
    the dynamic dims named as data/dims.py says (first dim `batch`, others `<input>_<axis>`); a scalar stays []."""
    from convertctl.data.dims import auto_name
    from convertctl.frontends.child import run_child

    files, interpreter = _setup(frontend, recipe)
    result = run_child(frontend.worker, {"mode": "describe", **_base_request(files)}, workdir, "describe",
                       interpreter.python)
    inputs = []
    for spec in result["inputs"]:
        shape = [d if isinstance(d, int) and d > 0 else auto_name(spec["name"], axis)
                 for axis, d in enumerate(spec["shape"])]
        inputs.append({"name": spec["name"], "shape": shape, "dtype": spec["dtype"]})
    return inputs


def export(frontend: Frontend, version_of: str, recipe, samples_path: Path, workdir: Path,
           chunk: int | None = None):
    """The export; `version_of`: the distribution whose version names the reference ("paddlepaddle")."""
    from convertctl.frontends.child import run_child
    from convertctl.frontends.dims import name_dynamic_dims
    from convertctl.frontends.result import ExportResult, load_reference

    files, interpreter = _setup(frontend, recipe)
    onnx_path, reference = workdir / "model.onnx", workdir / "reference.npz"
    request = {
        "mode": "export", **_base_request(files),
        "inputs": [i.model_dump() for i in recipe.inputs],
        "dims": {k: v.model_dump() for k, v in recipe.dims.items()},
        "opset": recipe.export.opset or frontend.default_opset,
        "samples": os.path.relpath(samples_path, workdir),
        "chunk": chunk, "onnx": onnx_path.name, "reference": reference.name,
    }
    result = run_child(frontend.worker, request, workdir, "export", interpreter.python)
    renamed = name_dynamic_dims(onnx_path, recipe.inputs)
    versions = result.get("versions", {})
    main_version = versions.get(version_of, "")
    warnings = [interpreter.warning] if interpreter.warning else []
    # a converter that failed before the one that worked (tf2onnx's from_keras on any Keras 3 Sequential model):
    # a finding, not a warning, since the result is verified against the framework either way
    fallbacks = [f"{a['converter']} failed, fell back to the next: {a.get('reason', '')}"
                 for a in result.get("attempts", []) if not a.get("ok")]
    findings = [f"{files.format} model converted with {result['converter']}, opset {result.get('opset')}",
                f"reference: {frontend.reference_name} {main_version} in {interpreter.python} "
                f"(chosen by {interpreter.origin})", *result.get("notes", []), *fallbacks, *warnings]
    if renamed:
        findings.append("dynamic dims renamed: " + ", ".join(f"{a} -> {b}" for a, b in renamed.items()))
    return ExportResult(
        onnx=onnx_path,
        reference=load_reference(reference),
        reference_name=f"{frontend.reference_name} {main_version}".strip(),
        details={"format": files.format, "converter": result["converter"], "attempts": result.get("attempts", []),
                 "versions": versions, "opset": result.get("opset"), "stack": interpreter.stack,
                 "python": {"executable": interpreter.python, "chosen_by": interpreter.origin},
                 "dims_renamed": renamed, "child_seconds": result["child_seconds"]},
        findings=findings,
        warnings=warnings,
        logs=[workdir / "export.log"],
    )
