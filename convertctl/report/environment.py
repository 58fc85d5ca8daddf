"""The machine and tool versions a run used, read without importing any heavy package."""

from __future__ import annotations

import importlib.metadata
import os
import platform

TRACKED = ["convertctl", "torch", "onnx", "onnxscript", "onnxruntime", "onnxslim", "onnxsim", "openvino", "nncf", "numpy",
           "protobuf", "pydantic", "efficientnet-lite-pytorch"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names=TRACKED) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }
