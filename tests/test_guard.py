"""The parity guard around graph passes: a pass that changes outputs, or fails, is rolled back."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convertctl.passes.guard import guarded_pass
from convertctl.passes.simplify import simplify
from convertctl.schema import Tolerance

STRICT = Tolerance(min_cosine=0.999999, max_abs=1e-6)


def conv_bn_model(path):
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "s"),
            numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b"),
            numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "m"),
            numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "v")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 16, 16])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return {"x": rng.normal(size=(2, 3, 16, 16)).astype(np.float32)}


def round_weights_to_int(src, dst):
    """A real (lossy) transformation: weights rounded to integers. It must never pass a strict guard."""
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(np.round(numpy_helper.to_array(init)), init.name))
    onnx.save(model, str(dst))
    return {"rounded": len(model.graph.initializer)}


def test_simplifier_passes_guard_and_fuses_batchnorm(tmp_path):
    feeds = conv_bn_model(tmp_path / "m.onnx")
    for tool in ("onnxslim", "onnxsim"):
        dst = tmp_path / f"{tool}.onnx"
        result = guarded_pass(tool, lambda s, d, t=tool: simplify(s, d, t), tmp_path / "m.onnx", dst, feeds, ["y"],
                              STRICT)
        assert result.status == "ok" and result.model == dst
        assert result.details["nodes_before"] == 2 and result.details["nodes_after"] == 1  # BN folded into Conv
        assert result.verification[0].passed is True


def test_lossy_pass_is_rolled_back(tmp_path):
    src = tmp_path / "m.onnx"
    feeds = conv_bn_model(src)
    dst = tmp_path / "out.onnx"
    result = guarded_pass("round", round_weights_to_int, src, dst, feeds, ["y"], STRICT)
    assert result.status == "rolled_back" and result.model == src
    assert not dst.exists() and (tmp_path / "out.rejected.onnx").exists()
    assert result.verification[0].passed is False
    assert "outputs changed beyond tolerance" in result.findings[0]


def test_failing_pass_is_rolled_back(tmp_path):
    src = tmp_path / "m.onnx"
    feeds = conv_bn_model(src)

    def broken(s, d):
        raise ValueError("cannot handle this graph")

    result = guarded_pass("broken", broken, src, tmp_path / "o.onnx", feeds, ["y"], STRICT)
    assert result.status == "rolled_back" and result.model == src
    assert "ValueError: cannot handle this graph" in result.findings[0]
