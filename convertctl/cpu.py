"""What the CPU that builds and verifies an artifact can do, as far as INT8 accuracy depends on it.

On x86 CPUs without VNNI, the INT8 kernels of ONNX Runtime (U8S8) and OpenVINO multiply U8 activations
by S8 weights with VPMADDUBSW, which adds pairs of products into a saturating 16-bit integer: large
activations times large weights overflow. VNNI (AVX512-VNNI, AVX-VNNI) and AMX accumulate in 32 bits
and do not saturate. Both targets pick their INT8 form from these flags (`auto`), and the stage cache
keys INT8 work by them.
"""

from __future__ import annotations

import functools

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The flags /proc/cpuinfo lists for the first CPU (empty when it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((frozenset(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")),
                        frozenset())
    except OSError:
        return frozenset()


def vnni_flags(flags: set[str] | frozenset[str] | None = None) -> list[str]:
    """The non-saturating INT8 dot-product features among `flags` (default: this CPU's), sorted."""
    return sorted((cpu_flags() if flags is None else set(flags)) & set(VNNI_FLAGS))
