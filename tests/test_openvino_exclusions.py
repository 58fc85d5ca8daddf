"""`quantize.exclude_nodes` (ONNX node names) translated into the OpenVINO operations NNCF ignores.

`openvino.convert_model` folds a Conv's bias/scale ops into it (Conv(bias) -> Mul -> Add becomes Convolution ->
Add with new, unnamed weights), so the ONNX output tensor name, and often the weight's, are gone: the mapping must
still find the layer (PP-OCRv4 det: every suggested layer is such a Conv). Small models built here; seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convertctl.targets.openvino.target import ov_ignored_scope

from .conftest import REPO

ov = pytest.importorskip("openvino")

PPOCR_DET = REPO / "recipes" / "models" / "corpus" / "ppocrv4_det_onnx" / "ch_PP-OCRv4_det_infer.onnx"


def _const(name: str, *shape: int, seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def _save(tmp_path: Path, nodes, initializers, channels: int = 3) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def _fused_model(tmp_path: Path) -> Path:
    """x -> Conv(W, B) -> Mul(S) -> Add(C) -> Relu -> depthwise Conv(DW, DB) -> Add(E) -> residual Add(relu) -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["conv_out"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["conv_out", "S"], ["mul_out"], name="mul"),
        helper.make_node("Add", ["mul_out", "C"], ["add_out"], name="add"),
        helper.make_node("Relu", ["add_out"], ["relu_out"], name="relu"),
        helper.make_node("Conv", ["relu_out", "DW", "DB"], ["dw_out"], name="dwconv", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["dw_out", "E"], ["dw_add"], name="dw_bias"),
        helper.make_node("Add", ["dw_add", "relu_out"], ["y"], name="residual"),
    ]
    inits = [_const("W", 8, 3, 3, 3), _const("B", 8), _const("S", 1, 8, 1, 1, seed=1), _const("C", 1, 8, 1, 1, seed=2),
             _const("DW", 8, 1, 3, 3, seed=3), _const("DB", 8, seed=4), _const("E", 1, 8, 1, 1, seed=5)]
    return _save(tmp_path, nodes, inits)


def _ops(model, kind: str) -> list:
    return [op for op in model.get_ordered_ops() if op.get_type_name() == kind]


def _tensor_names(model) -> set[str]:
    return {n for op in model.get_ordered_ops() for out in op.outputs() for n in out.get_names()}


def test_layer_whose_names_openvino_folded_away(tmp_path):
    path = _fused_model(tmp_path)
    model = ov.convert_model(str(path))
    # What broke the old mapping (output tensor name only): the folded layers' output names and weights are gone
    assert not {"conv_out", "dw_out", "W", "DW"} & _tensor_names(model)
    (conv,), (dwconv,) = _ops(model, "Convolution"), _ops(model, "GroupConvolution")
    scope = ov_ignored_scope(model, path, ["conv", "dwconv"], [])
    assert scope.names == [conv.get_friendly_name(), dwconv.get_friendly_name()]
    assert scope.mapped == {"conv": [conv.get_friendly_name()], "dwconv": [dwconv.get_friendly_name()]}
    assert (scope.unmapped, scope.lost, scope.notes) == ([], [], [])


def test_other_nodes_keep_their_own_names(tmp_path):
    """A node without weights maps to its own operation only: the residual Add is not walked back to a layer."""
    path = _fused_model(tmp_path)
    model = ov.convert_model(str(path))
    scope = ov_ignored_scope(model, path, ["relu", "residual"], ["Conv"])
    kinds = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert [kinds[n] for n in scope.names] == ["Relu", "Add"]
    assert scope.types == ["Convolution", "GroupConvolution"]


def test_unknown_name_is_unmapped_and_a_folded_node_is_lost(tmp_path):
    path = _fused_model(tmp_path)
    model = ov.convert_model(str(path))
    scope = ov_ignored_scope(model, path, ["conv", "no_such_node", "mul"], [])
    assert scope.unmapped == ["no_such_node"]  # not in the ONNX: a recipe error (the caller raises UsageError)
    assert scope.lost == ["mul"]  # in the ONNX, folded into the conv's weights: nothing left to keep in float
    assert len(scope.names) == 1


def test_weight_finds_layer_whose_output_name_is_gone(tmp_path):
    """Gemm -> Mul: OpenVINO's MatMul -> Multiply -> Add carries no Gemm tensor name, but its weight keeps its own."""
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "W", "B"], ["gemm_out"], name="gemm", transB=1),
             helper.make_node("Mul", ["gemm_out", "S"], ["y"], name="scale")]
    path = _save(tmp_path, nodes, [_const("W", 10, 192), _const("B", 10), _const("S", 10)])
    model = ov.convert_model(str(path))
    assert "gemm_out" not in _tensor_names(model) and "W" in _tensor_names(model)
    (matmul,) = _ops(model, "MatMul")
    scope = ov_ignored_scope(model, path, ["gemm"], [])
    assert scope.names == [matmul.get_friendly_name()] and not scope.lost


def _shared_weight_model(tmp_path: Path) -> Path:
    """Two convs with one weight W, each with a bias OpenVINO folds an Add into (their output names go)."""
    nodes = [helper.make_node("Conv", ["x", "W", "B1"], ["a_out"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a_out", "C1"], ["a_add"], name="add_a"),
             helper.make_node("Relu", ["a_add"], ["relu_out"], name="relu"),
             helper.make_node("Conv", ["relu_out", "W", "B2"], ["b_out"], name="conv_b", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b_out", "C2"], ["y"], name="add_b")]
    inits = [_const("W", 4, 4, 3, 3), _const("B1", 4, seed=1), _const("C1", 1, 4, 1, 1, seed=2),
             _const("B2", 4, seed=3), _const("C2", 1, 4, 1, 1, seed=4)]
    return _save(tmp_path, nodes, inits, channels=4)


def test_shared_weight_maps_each_node_to_its_own_layer(tmp_path):
    path = _shared_weight_model(tmp_path)
    model = ov.convert_model(str(path))
    first, second = _ops(model, "Convolution")
    assert first.input_value(1).get_node().get_instance_id() == second.input_value(1).get_node().get_instance_id()
    scope = ov_ignored_scope(model, path, ["conv_a", "conv_b"], [])
    assert scope.mapped == {"conv_a": [first.get_friendly_name()], "conv_b": [second.get_friendly_name()]}
    assert not scope.notes


def test_shared_weight_without_other_clues_maps_all_its_layers(tmp_path):
    """When only the shared weight identifies the layer, every layer using it stays float, and a note says so."""
    path = _shared_weight_model(tmp_path)
    model = ov.convert_model(str(path))
    for op in model.get_ordered_ops():  # a converter that kept no activation names at all, not even the input's
        if op.get_type_name() != "Constant":
            for out in op.outputs():
                out.set_names(set())
            op.set_friendly_name(f"anonymous_{op.get_instance_id()}")
    convs = _ops(model, "Convolution")
    scope = ov_ignored_scope(model, path, ["conv_a"], [])
    assert scope.names == [op.get_friendly_name() for op in convs]
    assert len(scope.notes) == 1 and "conv_b" in scope.notes[0] and "W" in scope.notes[0]
    assert not scope.lost


@pytest.mark.corpus
@pytest.mark.skipif(not PPOCR_DET.exists(), reason="the PP-OCRv4 det corpus model is fetched by `make models`")
def test_ppocrv4_det_suggested_layers_map():
    """The layers the quantize stage suggests for PP-OCRv4 det (Conv -> Mul -> Add, folded) and all other layers."""
    model = ov.convert_model(str(PPOCR_DET))
    graph = onnx.load(str(PPOCR_DET), load_external_data=False).graph
    suggested = ["p2o.Conv.2", "p2o.Conv.6", "p2o.Conv.20", "p2o.Conv.5", "p2o.Conv.17"]
    outputs = {n.name: n.output[0] for n in graph.node}
    assert not {outputs[n] for n in suggested} & _tensor_names(model)  # the old mapping found none of them
    layers = [n.name for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    scope = ov_ignored_scope(model, PPOCR_DET, layers, [])
    assert (scope.unmapped, scope.lost, scope.notes) == ([], [], [])
    weighted = [op for op in model.get_ordered_ops()
                if op.get_type_name() in ("Convolution", "GroupConvolution", "ConvolutionBackpropData")]
    assert sorted(scope.names) == sorted(op.get_friendly_name() for op in weighted)  # one to one
    kinds = {op.get_friendly_name(): op.get_type_name() for op in weighted}
    groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1) for n in graph.node}
    for name in suggested:  # depthwise ONNX Conv -> GroupConvolution, others -> Convolution
        (op,) = scope.mapped[name]
        assert kinds[op] == ("GroupConvolution" if groups[name] > 1 else "Convolution"), name


@pytest.mark.slow
def test_build_records_lost_nodes_and_rejects_unknown_ones(tmp_path):
    """Through the NNCF build: a node the conversion lost is recorded as kept INT8, a name not in the ONNX fails."""
    pytest.importorskip("nncf")
    from convertctl.errors import UsageError
    from convertctl.targets.base import BuildContext
    from convertctl.targets.openvino.options import OpenVINOOptions
    from convertctl.targets.openvino.target import TARGET

    path = _fused_model(tmp_path)
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    spec = OpenVINOOptions(runtime="openvino", precision="int8")
    ctx = BuildContext(calibration=lambda: iter(samples), num_calibration=len(samples), exclude_nodes=["conv", "mul"])
    scope = TARGET.build(path, spec, tmp_path / "built", ctx).settings["ignored_scope"]
    assert list(scope["from_onnx"]) == ["conv"] and len(scope["names"]) == 1
    assert scope["kept_int8"] == ["mul"]
    assert "could not find these ONNX nodes after conversion" in scope["kept_int8_reason"]
    ctx.exclude_nodes = ["conv", "no_such_node"]
    with pytest.raises(UsageError, match="no_such_node"):
        TARGET.build(path, spec, tmp_path / "again", ctx)
