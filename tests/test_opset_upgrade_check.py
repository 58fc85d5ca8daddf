"""The opset upgrade (quantize/opset.py) checks the model it wrote with onnx_save.check_file, the one place that
runs ONNX's full checker on what convertctl writes; an invalid upgrade is the version converter's fault, said as
such (exit 2, re-export at opset 13), not as a convertctl bug, and leaves no file behind. Small helper-built models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convertctl.errors import UsageError
from convertctl.quantize.opset import QDQ_OPSET, upgrade_for_qdq
from convertctl.schema import Tolerance

FP32 = Tolerance(min_cosine=0.9999, max_abs=1e-2)


def _opset11(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                               helper.make_node("Neg", ["r"], ["y"], name="neg")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=6), str(path))
    return path


def test_valid_upgrade_is_written_and_checked(tmp_path):
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)}
    up = upgrade_for_qdq(_opset11(tmp_path / "m.onnx"), tmp_path / "q", feeds, None, FP32)
    assert up is not None and up.path == tmp_path / "q" / f"model.opset{QDQ_OPSET}.onnx" and up.details["passed"]


def test_invalid_upgrade_is_the_converters_fault(tmp_path, monkeypatch):
    from onnx import version_converter

    real = version_converter.convert_version

    def broken(model, target):  # a converter bug: a node reads a value nothing defines
        out = real(model, target)
        out.graph.node[1].input[0] = "nowhere"
        return out

    monkeypatch.setattr(version_converter, "convert_version", broken)
    with pytest.raises(UsageError) as err:
        upgrade_for_qdq(_opset11(tmp_path / "m.onnx"), tmp_path / "q", {"x": np.zeros((2, 4), np.float32)}, None,
                        FP32)
    message = err.value.message
    assert message.startswith("m.onnx is at opset 11; INT8 (per-channel Q/DQ) needs opset 13 or newer; ONNX's "
                              "version converter upgraded it to an invalid model: ")
    assert "input 'nowhere' of node: name: neg" in message  # the checker's whole reason, on one line
    assert "\n" not in message and "convertctl wrote" not in message
    assert "opset 13 or newer" in err.value.hint
    assert list((tmp_path / "q").iterdir()) == []  # the invalid model is not left for a later stage
