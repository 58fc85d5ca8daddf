"""Build a TensorRT-RTX engine with the builder shared with the `tensorrt` target (targets/tensorrt/builder.py).

What differs from TensorRT is decided in `RTX` below, and only there: the module (`tensorrt_rtx`), networks are
always strongly typed (TensorRT-RTX has no precision builder flags), the compute capabilities the engine targets
(`set_compute_capability`), and no timing cache (its calls are no-ops in TensorRT-RTX). The build is ahead of time
and needs no GPU; kernels are compiled just in time on the user's GPU. So the engine's metadata is read from the
network definition, not from the engine inspector (deserializing an engine needs a supported GPU and driver).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from convertctl.errors import require
from convertctl.targets.tensorrt.builder import Flavour, building, describe_network, serialize
from convertctl.targets.tensorrt.profiles import Profiles

# From TensorRT-RTX's support matrix: engines run on 8.0, 8.6, 8.9, 12.0, 12.1 and later by default; Turing (7.5)
# only when built for it; Hopper (9.0) is refused ("TensorRT-RTX does not support this compute capability").
RUNS_ON = "8.0, 8.6, 8.9, 12.x"
NO_SUPPORTED_GPU = f"no supported GPU (TensorRT-RTX runs on compute capability {RUNS_ON})"
DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0", "12.1")
_CC_NAMES = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}


def supported(compute_capability: str, targeted: list[str] | None) -> bool:
    """Whether a GPU of this compute capability runs an engine built for `targeted` (None: the default set)."""
    major = compute_capability.split(".")[0]
    if targeted:
        return compute_capability in targeted
    return compute_capability in DEFAULT_TARGETS or (major.isdigit() and int(major) >= 12)


def _configure(trt, config, spec, graph_int8: bool) -> None:
    if spec.compute_capabilities:
        config.num_compute_capabilities = len(spec.compute_capabilities)
        for index, cc in enumerate(spec.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, _CC_NAMES[cc]), index)


RTX = Flavour(module="tensorrt_rtx", extra="tensorrt-rtx", title="TensorRT-RTX", target="tensorrt_rtx",
              strongly_typed=lambda spec, version: True,  # the only kind of network TensorRT-RTX builds
              configure=_configure)


def _targeted(trt, config) -> list[str]:
    names = {v: k for k, v in _CC_NAMES.items()}
    return [names.get(str(config.get_compute_capability(i)).split(".")[-1], str(config.get_compute_capability(i)))
            for i in range(config.num_compute_capabilities)]


def build_engine(onnx_path: Path, spec, profiles: Profiles, out_dir: Path, graph_precision: str) -> dict:
    """Write model.engine and build.log in out_dir; return the engine metadata (engine.json's dict). No GPU needed."""
    trt = require(RTX.module, RTX.extra)
    version = str(trt.__version__)
    log: list[str] = [f"TensorRT-RTX {version}: ahead-of-time build (no GPU needed; kernels compile on the user's GPU)"]
    with building(trt, RTX, onnx_path, spec, profiles, graph_precision.startswith("int8"), out_dir, log) as b:
        engine_bytes, seconds = serialize(b)
        (out_dir / "model.engine").write_bytes(engine_bytes)
        network = describe_network(b, profiles)
        targeted = _targeted(trt, b.config)
    return {
        "format": "convertctl.tensorrt-rtx-engine/1",
        "engine": "model.engine",
        "tensorrt_rtx": {"version": version},
        "compute_capabilities": {"targeted": targeted or list(DEFAULT_TARGETS),
                                 "source": "recipe" if targeted else "TensorRT-RTX default (portable engine)"},
        "precision": {"requested": spec.precision, "graph": graph_precision, "network": "strongly typed",
                      "layer_output_types": network["layer_output_types"]},
        "profiles": profiles.to_dict(),
        "io_tensors": network["io_tensors"],
        "layer_count": network["layer_count"],
        "layer_types": network["layer_types"],
        "layers": network["layers"],
        "layers_from": "network definition (the engine's own layers are chosen just in time on the GPU)",
        "build_options": {"strongly_typed": True, "tf32": spec.tf32, "workspace_mib": spec.workspace_mib,
                          "builder_optimization_level": spec.builder_optimization_level,
                          "profiling_verbosity": "detailed",
                          "timing_cache": "none (its calls are no-ops in TensorRT-RTX)"},
        "build_seconds": seconds,
        "engine_bytes": len(engine_bytes),
        "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
    }


def why_not_run(spec) -> str | None:
    """None where a supported GPU and driver are present, else the one-line reason the engine is not run here."""
    from convertctl.errors import ConvertctlError
    from convertctl.targets.tensorrt.cuda_device import gpu_info

    try:
        gpu = gpu_info(spec.device)
    except ConvertctlError as exc:  # no CUDA binding, no driver, no device
        return f"{NO_SUPPORTED_GPU}; here: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - a CUDA library that will not load: the engine cannot run here either
        return f"{NO_SUPPORTED_GPU}; here: {type(exc).__name__}: {exc}"[:300]
    if not supported(gpu["compute_capability"], spec.compute_capabilities):
        return (f"{NO_SUPPORTED_GPU}; here: {gpu['name']}, compute capability {gpu['compute_capability']}"
                + (f", engine built for {', '.join(spec.compute_capabilities)}" if spec.compute_capabilities else ""))
    return None
