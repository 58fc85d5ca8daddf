"""INT8 forms chosen from the CPU's flags: ONNX Runtime's int8_form and OpenVINO's overflow_fix.

On x86 CPUs without VNNI the U8S8 INT8 kernels (VPMADDUBSW) saturate 16-bit sums of two products; both
targets resolve `auto` from the flags of the CPU that builds and verifies the artifact. The flags are
passed explicitly here: these tests never depend on the CPU they run on.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper

from convertctl.cpu import vnni_flags
from convertctl.errors import UsageError
from convertctl.quantize.emit import EMISSIONS
from convertctl.quantize.stage import u8s8_form
from convertctl.targets.onnxruntime.options import OnnxRuntimeOptions, int8_emission, resolve_int8_form
from convertctl.targets.openvino.options import resolve_overflow_fix

from .conftest import load_manifest, run_cli
from .test_quantize_digits import digits_recipe, train_digits

AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}  # an AMD EPYC Zen 3: no VNNI
ZEN4 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
ALDER_LAKE = AVX2 | {"avx_vnni"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_tile", "amx_int8", "amx_bf16"}


def ort_int8(form: str = "auto", **extra) -> OnnxRuntimeOptions:
    return OnnxRuntimeOptions(runtime="onnxruntime", precision="int8", int8_form=form, **extra)


def test_vnni_flags_from_given_flags():
    assert vnni_flags(AVX2) == []
    assert vnni_flags(ZEN4) == ["avx512_vnni"]
    assert vnni_flags(ALDER_LAKE) == ["avx_vnni"]
    assert vnni_flags(SAPPHIRE_RAPIDS) == ["amx_int8", "avx512_vnni"]
    assert vnni_flags({"avx512f", "amx_tile"}) == []  # AVX-512 alone and AMX tiles without amx_int8: no VNNI


@pytest.mark.parametrize("flags, ort_form, ov_fix", [
    (AVX2, "u8s8_reduce_range", "enable"),
    (set(), "u8s8_reduce_range", "enable"),  # unknown CPU (no /proc/cpuinfo): the form that cannot saturate
    (ZEN4, "u8s8", "disable"),
    (ALDER_LAKE, "u8s8", "disable"),
    (SAPPHIRE_RAPIDS, "u8s8", "disable"),
])
def test_auto_follows_the_cpu_flags(flags, ort_form, ov_fix):
    form, why = resolve_int8_form("auto", flags)
    assert form == ort_form
    fix, fix_why = resolve_overflow_fix("auto", flags)
    assert fix == ov_fix
    if vnni_flags(flags):
        assert vnni_flags(flags)[0] in why and "u8s8_reduce_range" in why  # what to do on a CPU without VNNI
        assert vnni_flags(flags)[0] in fix_why
    else:
        assert "no VNNI" in why and "no VNNI" in fix_why


@pytest.mark.parametrize("flags", [AVX2, ZEN4])
def test_explicit_choice_wins_over_the_cpu(flags):
    for form in ("u8s8", "u8s8_reduce_range", "u8u8"):
        assert resolve_int8_form(form, flags) == (form, "set in the recipe")
    for fix in ("disable", "first_layer", "enable"):
        assert resolve_overflow_fix(fix, flags) == (fix, "set in the recipe")


def test_emission_of_each_form():
    assert "qdq_u8u8" in EMISSIONS
    assert int8_emission(ort_int8("u8u8")) == "qdq_u8u8"
    for form in ("auto", "u8s8", "u8s8_reduce_range"):  # S8-typed weights either way: one qdq_u8s8 model
        assert int8_emission(ort_int8(form)) == "qdq_u8s8"


def test_u8s8_form_shared_by_the_targets():
    fp32 = OnnxRuntimeOptions(runtime="onnxruntime", precision="fp32")
    assert u8s8_form([fp32, ort_int8()], AVX2)[0] == "u8s8_reduce_range"
    assert u8s8_form([fp32, ort_int8()], ZEN4)[0] == "u8s8"
    assert u8s8_form([ort_int8("u8u8", name="a"), ort_int8("u8s8", name="b")], AVX2)[0] == "u8s8"
    assert u8s8_form([ort_int8("u8s8_reduce_range", name="a"), ort_int8(name="b")], AVX2)[0] == "u8s8_reduce_range"
    with pytest.raises(UsageError, match="both u8s8 and u8s8_reduce_range"):  # auto on a VNNI CPU is u8s8
        u8s8_form([ort_int8("u8s8_reduce_range", name="a"), ort_int8(name="b")], ZEN4)


def _weights(path, dtype) -> list[np.ndarray]:
    """The quantized weight tensors (initializers of `dtype` feeding a DequantizeLinear's first input)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear"
            and n.input[0] in inits and inits[n.input[0]].dtype == dtype and inits[n.input[0]].ndim == 4]


@pytest.mark.slow
def test_choice_lands_in_the_manifest(tmp_path):
    """Explicit forms (so the run does not depend on this CPU): the quantize record, the artifacts' settings
    and the emitted models say and are what was chosen."""
    train_digits(tmp_path, epochs=2)
    recipe = digits_recipe("digits_int8_forms", targets=[
        {"runtime": "onnxruntime", "precision": "int8", "int8_form": "u8s8_reduce_range"},
        {"runtime": "onnxruntime", "precision": "int8", "int8_form": "u8u8", "name": "onnxruntime_int8_u8u8"},
    ], verify={"tolerances": {"int8": {"min_cosine": 0.95}}})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    res = run_cli("run", tmp_path / "recipe.yaml", cwd=tmp_path)
    assert res.code == 0, res.stderr
    out = tmp_path / "out"
    m = load_manifest(out)
    quant = next(s for s in m["stages"] if s["name"] == "quantize")
    rr = quant["details"]["qdq_u8s8"]
    assert (rr["int8_form"], rr["int8_form_reason"], rr["reduce_range"]) == ("u8s8_reduce_range", "set in the recipe",
                                                                            True)
    assert "7 bits" in rr["weights"] and quant["details"]["qdq_u8u8"]["reduce_range"] is False
    assert "qdq_u8s8: u8s8_reduce_range (set in the recipe)" in quant["findings"]
    arts = {a["id"]: a for a in m["artifacts"]}
    assert arts["onnxruntime_int8"]["built_from"] == "qdq_u8s8"
    assert arts["onnxruntime_int8"]["settings"]["int8_form"] == "u8s8_reduce_range"
    assert arts["onnxruntime_int8"]["settings"]["int8_form_reason"] == "set in the recipe"
    assert arts["onnxruntime_int8_u8u8"]["built_from"] == "qdq_u8u8"
    assert arts["onnxruntime_int8_u8u8"]["settings"]["int8_form"] == "u8u8"
    s7 = _weights(out / "quantize" / "model.qdq_u8s8.onnx", np.int8)
    assert s7 and all(w.min() >= -64 and w.max() <= 64 for w in s7)  # 7-bit symmetric weights: -64..64
    assert max(int(np.abs(w).max()) for w in s7) == 64  # and the 7 bits are used
    assert _weights(out / "quantize" / "model.qdq_u8u8.onnx", np.uint8)  # U8 weights
    assert not _weights(out / "quantize" / "model.qdq_u8u8.onnx", np.int8)
