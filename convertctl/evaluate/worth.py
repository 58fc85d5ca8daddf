"""Is a reduced-precision artifact worth shipping? An INT8 (or FP16) artifact that is slower or larger than
its FP32 counterpart is flagged: quantization that loses accuracy and buys nothing is a regression, not a
result (on a CPU without VNNI, ONNX Runtime's and OpenVINO's INT8 kernels can be slower than FP32).

The counterpart is the FP32 artifact of the same runtime when the run built one, else the FP32 ONNX (its
size, and the latency baseline, which is ONNX Runtime). "Slower" means beyond both measurements' own
noise, (p90 - p50) / p50, so jitter alone is never flagged.
"""

from __future__ import annotations

# the model itself, not reports: ONNX (+ external data), IR and engines; a target adds its own (Target.model_suffixes)
_SIZE_SUFFIXES = (".onnx", ".data", ".bin", ".xml", ".engine", ".plan")


def _suffixes() -> tuple[str, ...]:
    from convertctl.targets import registry

    return _SIZE_SUFFIXES + tuple(s for t in registry.all_targets() for s in t.model_suffixes)


def model_bytes(record) -> int:
    suffixes = _suffixes()
    return sum(f.bytes for f in record.files if f.path.endswith(suffixes))


def _noise(latency) -> float:
    if latency.p50_ms and latency.p90_ms:
        return max(0.0, (latency.p90_ms - latency.p50_ms) / latency.p50_ms)
    return 0.0


def _measured(latency) -> bool:
    return latency is not None and latency.status == "measured" and bool(latency.p50_ms)


def _built(record) -> bool:
    """It has its model files: run or not (an engine built where it cannot run is "skipped" but has its size)."""
    return record.status != "error" and model_bytes(record) > 0


def worth_findings(artifacts, baseline=None, fp32_onnx_bytes: int | None = None) -> list[str]:
    """One line per INT8/FP16 artifact that is slower or larger than its FP32 counterpart."""
    fp32 = {a.runtime: a for a in artifacts if a.precision == "fp32" and _built(a)}
    lines = []
    for a in artifacts:
        if a.precision == "fp32" or not _built(a):
            continue
        twin = fp32.get(a.runtime)
        size, twin_size = model_bytes(a), (model_bytes(twin) if twin else fp32_onnx_bytes)
        if size and twin_size and size > twin_size:
            what = twin.id if twin else "the FP32 ONNX"
            lines.append(f"{a.id} is larger than {what}: {size / 1e6:.2f} MB vs {twin_size / 1e6:.2f} MB")
        other = twin.latency if twin is not None else baseline
        if _measured(a.latency) and _measured(other):
            margin = 1.0 + max(_noise(a.latency), _noise(other))
            if a.latency.p50_ms > other.p50_ms * margin:
                what = twin.id if twin else f"the baseline ({other.of})"
                lines.append(f"{a.id} is slower than {what}: p50 {a.latency.p50_ms:.3g} ms vs {other.p50_ms:.3g} ms "
                             f"({other.p50_ms / a.latency.p50_ms:.2f}x), beyond both measurements' noise")
    return lines
