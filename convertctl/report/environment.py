"""The machine and tool versions a run used, read without importing any heavy package."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess

# The core's distributions (onnxruntime: the reference executor every parity check runs in); each target adds
# its own (Target.environment), after these, in registry order
CORE_TRACKED = ["convertctl", "torch", "onnx", "onnxscript", "onnxruntime", "onnxslim", "onnxsim", "numpy", "protobuf",
                "pydantic", "efficientnet-lite-pytorch", "tensorflow-cpu", "tensorflow", "tf2onnx", "tf-keras", "keras"]


def tracked() -> list[str]:
    """The distributions whose versions a run records: the core's, then every registered target's."""
    from convertctl.targets.registry import all_targets

    return list(dict.fromkeys([*CORE_TRACKED, *(d for t in all_targets() for d in t.environment)]))


# The CPU features that change which kernels runtimes pick (and so latency and, for INT8, numerics)
_CPU_FEATURES = re.compile(r"^(sse4_2|avx|avx2|fma|f16c|avx512\w*|avx_vnni\w*|amx\w*|sha_ni|vaes)$")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names=None) -> dict[str, str]:
    found = {}
    for name in tracked() if names is None else names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in set(flags) if _CPU_FEATURES.match(f))


def gpus() -> list[dict]:
    """NVIDIA GPUs and driver from nvidia-smi when it is there (no CUDA library is loaded for this)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "compute_capability": r[2] if len(r) > 2 else None} for r in rows]


def fingerprint(env: dict) -> str:
    """A short hash of what decides speed and numerics: CPU model and features, GPUs, package versions."""
    keys = ("machine", "cpu", "cpu_count", "cpu_flags", "gpus", "packages")
    return hashlib.sha256(json.dumps({k: env.get(k) for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


def environment() -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "gpus": gpus(),
        "packages": package_versions(),
    }
    env["fingerprint"] = fingerprint(env)
    return env
