"""Load a TensorRT-RTX engine on a supported GPU: the `tensorrt` target's runner with the RTX flavour, after checking
this TensorRT-RTX and this GPU can load it (engine.json). Needs a CUDA driver and a GPU of compute capability 8.0,
8.6, 8.9 or 12.x; the tests that run an engine skip elsewhere with that reason."""

from __future__ import annotations

import json
from pathlib import Path

from convertctl.errors import UsageError
from convertctl.targets.tensorrt.runner import EngineMismatchError, EngineRunner
from convertctl.targets.tensorrt_rtx.builder import NO_SUPPORTED_GPU, RTX, supported


def check_engine_here(folder: Path, version: str, gpu: dict | None) -> dict:
    """engine.json, after checking the engine was built by this TensorRT-RTX for this GPU's compute capability."""
    meta_path = folder / "engine.json"
    if not (folder / "model.engine").is_file() or not meta_path.is_file():
        raise UsageError(f"no TensorRT-RTX engine with its engine.json in {folder}",
                         hint="build one with `convertctl build MODEL --target tensorrt_rtx`")
    meta = json.loads(meta_path.read_text())
    built = meta.get("tensorrt_rtx", {}).get("version")
    if built and built.split(".")[:3] != version.split(".")[:3]:
        raise EngineMismatchError(f"this engine was built with TensorRT-RTX {built} but this machine has {version}",
                                  hint="rebuild it here with `convertctl build MODEL --target tensorrt_rtx`")
    targeted = meta.get("compute_capabilities", {})
    recipe_cc = targeted.get("targeted") if targeted.get("source") == "recipe" else None
    if gpu is None or not supported(gpu["compute_capability"], recipe_cc):
        here = "no GPU" if gpu is None else f"{gpu['name']} (compute capability {gpu['compute_capability']})"
        raise EngineMismatchError(f"{NO_SUPPORTED_GPU}; here: {here}; engine built for "
                                  f"{', '.join(targeted.get('targeted', [])) or 'the default set'}")
    return meta


def open_engine(folder: Path, device: int) -> EngineRunner:
    return EngineRunner(folder, device, flavour=RTX, check=check_engine_here)
