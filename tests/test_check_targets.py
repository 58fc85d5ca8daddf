"""`check_model` against the real ONNX Runtime and OpenVINO, on models built here with onnx.helper."""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from convertctl.checks.model_facts import analyse  # noqa: E402
from convertctl.checks.run_check import check_model  # noqa: E402
from convertctl.checks.verdicts import RANK  # noqa: E402
from convertctl.errors import SourceModelError, UsageError  # noqa: E402

BOTH = ["onnxruntime", "openvino"]


def vi(name, elem=T.FLOAT, shape=None):
    return h.make_tensor_value_info(name, elem, shape)


def save(tmp_path, nodes, inputs, outputs, inits=(), opsets=(("", 17),), ir=9, name="model.onnx"):
    model = h.make_model(h.make_graph(nodes, "g", inputs, outputs, list(inits)),
                         opset_imports=[h.make_opsetid(d, v) for d, v in opsets], ir_version=ir)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def target(report, name):
    return next(t for t in report.targets if t.target == name)


def bad(report_target):
    """node -> its worst verdict on the target (a node may carry a target verdict and a model-wide finding)."""
    out = {}
    for n in report_target.nodes:
        if n.node and n.verdict != "supported" and (n.node not in out or RANK[n.verdict] > RANK[out[n.node].verdict]):
            out[n.node] = n
    return out


def conv_relu_chain(tmp_path, blocks=1, elem=T.FLOAT, dtype=np.float32, name="model.onnx"):
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        w = f"block{i}.conv.weight"
        inits.append(nh.from_array((rng.standard_normal((4, 4, 3, 3)) * 0.1).astype(dtype), w))
        nodes += [h.make_node("Conv", [x, w], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  h.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x = f"r{i}"
    return save(tmp_path, nodes, [vi("x", elem, [1, 4, 8, 8])], [vi(x, elem, [1, 4, 8, 8])], inits, name=name)


def test_conv_relu_is_supported_everywhere_with_one_session_per_signature(tmp_path):
    report = check_model(conv_relu_chain(tmp_path, blocks=20), BOTH)
    assert report.node_count == 40 and report.opsets == {"": 17} and len(report.sha256) == 64
    for t in report.targets:
        assert t.verdict == "supported", (t.target, t.nodes)
        assert {(o.op_type, o.count, o.verdict) for o in t.ops} == {("Conv", 20, "supported"), ("Relu", 20, "supported")}
    assert target(report, "onnxruntime").version and target(report, "openvino").version
    # 40 nodes, 2 distinct signatures: 2 one-node sessions
    assert any(n.startswith("2 one-node sessions for 40 nodes") for n in target(report, "onnxruntime").notes)
    # the source layer comes from the weight initializer's name when the exporter kept nothing else
    assert analyse(tmp_path / "model.onnx").sources["conv3"] == "block3.conv"


def test_onnxruntime_lacks_a_float64_conv_kernel(tmp_path):
    """ONNX allows Conv on double; ONNX Runtime's CPU provider has no such kernel (OpenVINO converts it)."""
    w32 = nh.from_array(np.ones((4, 4, 1, 1), np.float32), "w32")
    w64 = nh.from_array(np.ones((4, 4, 1, 1), np.float64), "w64")
    path = save(tmp_path, [
        h.make_node("Conv", ["x", "w32"], ["a"], name="conv_f32"),
        h.make_node("Cast", ["a"], ["a64"], name="to_f64", to=T.DOUBLE),
        h.make_node("Conv", ["a64", "w64"], ["b"], name="conv_f64"),
        h.make_node("Conv", ["b", "w64"], ["y"], name="conv_f64_again"),
    ], [vi("x", T.FLOAT, [1, 4, 5, 5])], [vi("y", T.DOUBLE, [1, 4, 5, 5])], [w32, w64])
    report = check_model(path, BOTH)
    ort = target(report, "onnxruntime")
    assert ort.verdict == "unsupported"
    flagged = {name for name, n in bad(ort).items() if n.verdict == "unsupported"}
    assert flagged == {"conv_f64", "conv_f64_again"}
    reason = bad(ort)["conv_f64"].reason
    assert reason.startswith("NOT_IMPLEMENTED: Could not find an implementation for Conv(11) node"), reason
    assert "\n" not in reason and "conv_f64" not in reason  # one line, said of every node of the signature
    conv_row = next(o for o in ort.ops if o.op_type == "Conv")
    assert conv_row.verdict == "unsupported" and sorted(conv_row.nodes) == ["conv_f64", "conv_f64_again"]
    assert conv_row.count == 3
    # float64 is recorded as a condition for every target; OpenVINO converts and runs it
    ov = target(report, "openvino")
    assert ov.verdict == "conditional" and not any(n.verdict == "unsupported" for n in ov.nodes)
    assert any(f.node == "conv_f64" and f.verdict == "conditional" and "float64" in f.reason for f in report.findings)


def test_custom_domain_operator_is_named_on_both_targets(tmp_path):
    path = save(tmp_path, [h.make_node("Relu", ["x"], ["r"], name="relu"),
                           h.make_node("FancyOp", ["r"], ["y"], name="fancy", domain="acme.ops")],
                [vi("x", T.FLOAT, [2, 3])], [vi("y", T.FLOAT, [2, 3])], opsets=(("", 17), ("acme.ops", 1)))
    report = check_model(path, BOTH)
    finding = next(f for f in report.findings if f.node == "fancy")
    assert finding.verdict == "unknown" and "custom operator acme.ops::FancyOp" in finding.reason
    for name in BOTH:
        t = target(report, name)
        assert t.verdict == "unsupported", name
        assert bad(t)["fancy"].verdict == "unsupported" and bad(t)["fancy"].domain == "acme.ops"
        assert "relu" not in bad(t)
    assert "acme.ops:FancyOp" in bad(target(report, "onnxruntime"))["fancy"].reason
    assert "no conversion rule for acme.ops::FancyOp" in bad(target(report, "openvino"))["fancy"].reason


def test_operator_openvino_cannot_convert(tmp_path):
    """OpenVINO 2026.4's ONNX frontend has no conversion rule for Det (ONNX Runtime runs it)."""
    path = save(tmp_path, [h.make_node("Relu", ["x"], ["r"], name="relu"),
                           h.make_node("Det", ["r"], ["d"], name="determinant"),
                           h.make_node("Neg", ["d"], ["y"], name="neg")],
                [vi("x", T.FLOAT, [2, 3, 3])], [vi("y", T.FLOAT, [2])])
    report = check_model(path, BOTH)
    ov = target(report, "openvino")
    assert ov.verdict == "unsupported"
    assert set(bad(ov)) == {"determinant"}  # Neg after it is judged too (the query runs on the converted part)
    assert "no conversion rule for Det" in bad(ov)["determinant"].reason and bad(ov)["determinant"].suggestion
    assert target(report, "onnxruntime").verdict == "supported"


def test_dynamic_dim_needs_a_range(tmp_path):
    path = save(tmp_path, [h.make_node("Relu", ["x"], ["y"], name="relu")],
                [vi("x", T.FLOAT, ["batch", 3])], [vi("y", T.FLOAT, ["batch", 3])])
    report = check_model(path, BOTH)
    finding = next(f for f in report.findings if f.node == "")
    assert finding.verdict == "conditional" and "'batch'" in finding.reason
    assert finding.suggestion == ("give it a range: --dim batch=1:1:8, or in the recipe: dims: {batch: {min: 1, opt: 1, "
                                  "max: 8}}; batch: a batch dim; its max is the largest batch the model is run with")
    assert all(t.verdict == "supported" for t in report.targets)  # both run dynamic shapes as they are
    trt = check_model(path, ["tensorrt"]).targets[0]  # an engine needs an optimization profile
    assert trt.verdict == "conditional" and sum("'batch'" in n.reason for n in trt.nodes) == 1
    ranged = check_model(path, BOTH, dim_ranges={"batch": (1, 4, 8)})
    assert ranged.findings == [] and all(t.verdict == "supported" for t in ranged.targets)


def test_ir_version_newer_than_onnxruntime_supports(tmp_path):
    path = save(tmp_path, [h.make_node("Relu", ["x"], ["y"], name="relu")],
                [vi("x", T.FLOAT, [1])], [vi("y", T.FLOAT, [1])], ir=99)
    ort = target(check_model(path, ["onnxruntime"]), "onnxruntime")
    model_level = next(n for n in ort.nodes if n.node == "")
    assert ort.verdict == "unsupported" and "Unsupported model IR version: 99" in model_level.reason


def test_bad_files_and_bad_targets(tmp_path):
    good = conv_relu_chain(tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceModelError, match="truncated ONNX file"):
        check_model(truncated, BOTH)
    text = tmp_path / "notes.onnx"
    text.write_text("these are my notes, not a model\n" * 4)
    with pytest.raises(SourceModelError, match="is not an ONNX model"):
        check_model(text, BOTH)
    with pytest.raises(UsageError, match="model file not found"):
        check_model(tmp_path / "missing.onnx", BOTH)
    with pytest.raises(UsageError, match="unknown target 'coreml': known targets are litert, mnn, ncnn, onnxruntime, openvino, tensorrt"):
        check_model(good, ["onnxruntime", "coreml"])
    broken = save(tmp_path, [h.make_node("Add", ["x", "z"], ["y"], name="the_add")],
                  [vi("x", T.FLOAT, [2, 3]), vi("z", T.FLOAT, [4, 5])], [vi("y", T.FLOAT, None)], name="broken.onnx")
    with pytest.raises(SourceModelError, match=r"shape inference fails at node 'the_add' \(Add\): .*Incompatible dimensions"):
        check_model(broken, BOTH)


@pytest.mark.slow
def test_dynamo_export_keeps_the_source_module_of_an_offending_node(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.features(x).mean((2, 3)))

    torch.manual_seed(0)
    path = tmp_path / "net.onnx"
    # float64: ONNX Runtime has no double Conv kernel on CPU, so the Conv is an offending node
    torch.onnx.export(Net().double().eval(), (torch.randn(1, 3, 8, 8, dtype=torch.float64),), str(path),
                      dynamo=True, external_data=False, verbose=False)
    report = check_model(path, ["onnxruntime"])
    conv = next(n for n in target(report, "onnxruntime").nodes if n.op_type == "Conv" and n.verdict == "unsupported")
    assert conv.source == "features.0 (Conv2d)"
    facts = analyse(path)
    assert "head (Linear)" in facts.sources.values()


def test_runtime_not_installed_is_unknown_never_supported(tmp_path, monkeypatch):
    path = conv_relu_chain(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails as if not installed
    monkeypatch.setitem(sys.modules, "openvino", None)
    report = check_model(path, BOTH)
    for t in report.targets:
        assert t.verdict == "unknown" and t.version is None
        assert {o.verdict for o in t.ops} == {"unknown"}
        extra = t.target
        assert f"unknown: {extra} not installed (pip install 'convertctl[{extra}]')" in t.notes


def test_a_node_fused_away_by_onnxruntime_is_conditional_not_unsupported(tmp_path):
    """A LayerNorm written out in bfloat16: no bfloat16 kernel for ReduceMean/Sub/Pow/... on their own, but
    ONNX Runtime's optimizer fuses them into LayerNormalization, which has one: the model loads as built."""
    import numpy as np
    from onnx import numpy_helper

    def const(name, value, dtype=T.BFLOAT16):
        if dtype == T.INT64:
            return numpy_helper.from_array(np.asarray(value, np.int64), name)
        return h.make_tensor(name, dtype, np.shape(value), np.ravel(np.asarray(value, np.float32)).tolist())

    n = h.make_node
    nodes = [n("ReduceMean", ["x", "ax"], ["mu"]), n("Sub", ["x", "mu"], ["d"]), n("Pow", ["d", "two"], ["d2"]),
             n("ReduceMean", ["d2", "ax"], ["var"]), n("Add", ["var", "eps"], ["ve"]), n("Sqrt", ["ve"], ["sd"]),
             n("Div", ["d", "sd"], ["nrm"]), n("Mul", ["nrm", "g"], ["sc"]), n("Add", ["sc", "be"], ["y"])]
    inits = [const("ax", [-1], T.INT64), const("two", 2.0), const("eps", 1e-5), const("g", [1.0] * 4),
             const("be", [0.0] * 4)]
    path = tmp_path / "ln.onnx"
    onnx.save(h.make_model(h.make_graph(nodes, "ln", [vi("x", T.BFLOAT16, [2, 3, 4])], [vi("y", T.BFLOAT16, [2, 3, 4])],
                                        inits), opset_imports=[h.make_opsetid("", 18)], ir_version=9), str(path))
    ort = check_model(path, ["onnxruntime"]).targets[0]
    assert ort.verdict == "conditional", [(x.node, x.verdict, x.reason) for x in ort.nodes]
    assert all("optimizer fuses it" in x.reason for x in ort.nodes if x.verdict == "conditional" and x.node)
