"""Advice between INT8 methods: an INT8 artifact its target quantized itself (OpenVINO with NNCF: built from the
FP32 ONNX, `Target.int8_quantizer`) that failed its gate while the run's Q/DQ model (ONNX Runtime's static
quantization, the `qdq_*` emissions) passed. Such a target builds from that model too (`int8_method: qdq`).
Measured on Magika: NNCF cosine 0.72 (it quantizes the decomposed GELU/LayerNorm arithmetic), the Q/DQ model
0.9985 in ONNX Runtime and in OpenVINO."""

from __future__ import annotations


def _worst_cosine(record) -> float | None:
    if not record.verification:
        return None
    cosines = [o.cosine for o in record.verification[0].outputs.values() if o.cosine is not None]
    return min(cosines) if cosines else None


def _own_int8(runtime: str):
    """The target when it quantizes INT8 itself and can be told to build from the Q/DQ model instead."""
    from convertctl.targets.registry import all_targets

    target = next((t for t in all_targets() if t.name == runtime), None)
    if target is None or not target.int8_quantizer or "int8_method" not in target.options_model.model_fields:
        return None
    return target


def int8_method_advice(artifacts) -> list[str]:
    """One line per failed self-quantized INT8 artifact for which a Q/DQ INT8 artifact of the same run passed."""
    passed_qdq = [a for a in artifacts if a.precision == "int8" and a.status == "ok"
                  and (a.built_from or "").startswith("qdq_")]
    if not passed_qdq:
        return []
    best = max(passed_qdq, key=lambda a: _worst_cosine(a) or 0.0)
    lines = []
    for a in artifacts:
        if a.precision == "int8" and a.status == "failed" and a.built_from == "fp32" and (t := _own_int8(a.runtime)):
            mine, theirs = _worst_cosine(a), _worst_cosine(best)
            numbers = f" (worst cosine {mine:.4f} vs {theirs:.4f})" if mine is not None and theirs is not None else ""
            lines.append(f"{a.id}: {t.int8_quantizer}'s INT8 failed its gate where the Q/DQ model of {best.id} passed"
                         f"{numbers}; `int8_method: qdq` on {a.id} builds {t.display_name}'s INT8 from that model")
    return lines
