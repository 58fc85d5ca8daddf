"""`convertctl check -t tensorrt_rtx`: TensorRT-RTX's real ONNX parser judges every node (issue 15, part 3).

No fake module: these run the installed `tensorrt_rtx` (its parser needs no GPU) and are skipped where it is not
installed, except the not-installed report, which is checked with a builder flavour whose module does not exist.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402

from convertctl.checks.model_facts import analyse  # noqa: E402
from convertctl.targets.tensorrt.check import check_tensorrt  # noqa: E402
from convertctl.targets.tensorrt.parser import ParserCrash, parse_isolated  # noqa: E402
from convertctl.targets.tensorrt_rtx.builder import RTX  # noqa: E402
from convertctl.targets.tensorrt_rtx.check import check_tensorrt_rtx  # noqa: E402

from .conftest import run_cli  # noqa: E402

needs_rtx = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx not installed")


def _save(tmp_path: Path, name: str, nodes, inputs, outputs, extra_opsets=()) -> Path:
    graph = h.make_graph(nodes, "g", inputs, outputs)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17), *extra_opsets])
    model.ir_version = 10
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtx_check")
    x = _vi("x", T.FLOAT, [2, 3, 3])
    return {
        # Det: no importer in TensorRT-RTX 1.7 (nor in TensorRT 10's matrix); MyOp: a custom domain, no plugin
        "refused": _save(d, "refused", [h.make_node("Relu", ["x"], ["r"], name="relu0"),
                                        h.make_node("Det", ["r"], ["d"], name="det0"),
                                        h.make_node("Abs", ["d"], ["y"], name="abs0"),
                                        h.make_node("MyOp", ["x"], ["z"], name="custom0", domain="my.domain")],
                         [x], [_vi("y", T.FLOAT, [2]), _vi("z", T.FLOAT, [2, 3, 3])],
                         [h.make_opsetid("my.domain", 1)]),
        "plain": _save(d, "plain", [h.make_node("Relu", ["x"], ["r"], name="relu0"),
                                    h.make_node("Sigmoid", ["r"], ["y"], name="sig0")],
                       [x], [_vi("y", T.FLOAT, [2, 3, 3])]),
        # the failing node sits inside the then-branch of a top-level If
        "nested": _save(d, "nested", [h.make_node(
            "If", ["c"], ["y"], name="if0",
            then_branch=h.make_graph([h.make_node("Det", ["x"], ["t"], name="det_in_then")], "then", [],
                                     [_vi("t", T.FLOAT, [2])]),
            else_branch=h.make_graph([h.make_node("ReduceMax", ["x"], ["e"], name="max_in_else", axes=[1, 2],
                                                  keepdims=0)], "else", [], [_vi("e", T.FLOAT, [2])]))],
            [x, _vi("c", T.BOOL, [])], [_vi("y", T.FLOAT, [2])]),
        # Add on INT8 tensors: the TensorRT table says unsupported (INT8 is a quantized type there), TensorRT-RTX's
        # parser imports it (tensorrt_table_agreement: node/test_add_int8)
        "int8_add": _save(d, "int8_add", [h.make_node("Add", ["a", "b"], ["y"], name="add0")],
                          [_vi("a", T.INT8, [2, 3]), _vi("b", T.INT8, [2, 3])], [_vi("y", T.INT8, [2, 3])]),
    }


@needs_rtx
def test_a_refused_node_is_named_with_nvidias_message(models):
    report = check_tensorrt_rtx(analyse(models["refused"]))
    assert report.target == "tensorrt_rtx" and report.verdict == "unsupported"
    assert "TensorRT-RTX" in report.judged_by and "ONNX parser" in report.judged_by
    by_name = {n.node: n for n in report.nodes if n.node}
    assert set(by_name) == {"det0", "custom0"}  # Relu and Abs raised no parser error
    assert by_name["det0"].verdict == "unsupported" and by_name["det0"].op_type == "Det"
    assert "UNSUPPORTED_NODE" in by_name["det0"].reason and "det0" in by_name["det0"].reason
    assert by_name["custom0"].domain == "my.domain" and "Plugin not found" in by_name["custom0"].reason
    assert "plugin" in by_name["custom0"].suggestion
    rows = {o.op_type: o.verdict for o in report.ops}
    assert rows == {"Relu": "supported", "Det": "unsupported", "Abs": "supported", "MyOp": "unsupported"}


@needs_rtx
def test_a_node_inside_a_subgraph_gets_the_verdict(models):
    report = check_tensorrt_rtx(analyse(models["nested"]))
    bad = [n for n in report.nodes if n.verdict == "unsupported"]
    assert [(n.node, n.op_type) for n in bad] == [("det_in_then", "Det")]
    assert "then_branch" in bad[0].reason


@needs_rtx
def test_a_model_that_parses_is_supported(models):
    import tensorrt_rtx

    report = check_tensorrt_rtx(analyse(models["plain"]))
    assert report.verdict == "supported" and report.version == tensorrt_rtx.__version__
    assert not [n for n in report.nodes if n.verdict != "supported"]


@needs_rtx
def test_tensorrt_shows_the_rtx_parser_beside_the_table_without_overriding(models):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT itself is installed: its own parser judges, no TensorRT-RTX evidence is shown")
    report = check_tensorrt(analyse(models["int8_add"]), "10")
    assert report.verdict == "unsupported"  # the table's verdict stands
    assert "TensorRT-RTX" in report.judged_by and "evidence" in report.judged_by
    notes = [n for n in report.notes if n.startswith("TensorRT-RTX evidence")]
    assert len(notes) == 1 and "add0 (Add): table says unsupported" in notes[0] and "parser accepts it" in notes[0]
    refused = check_tensorrt(analyse(models["refused"]), "10")
    notes = [n for n in refused.notes if n.startswith("TensorRT-RTX evidence")]
    assert len(notes) == 1 and "custom0 (MyOp): table says unknown" in notes[0] and "rejects it" in notes[0]
    assert {n.node: n.verdict for n in refused.nodes if n.node} == {"det0": "unsupported", "custom0": "unknown"}
    plain = check_tensorrt(analyse(models["plain"]), "10")
    assert any("found no node where it disagrees" in n for n in plain.notes)


def test_not_installed_says_so(models):
    missing = dataclasses.replace(RTX, module="tensorrt_rtx_is_not_installed_here")
    report = check_tensorrt_rtx(analyse(models["plain"]), missing)
    assert report.verdict == "unknown" and report.version is None
    assert all(n.verdict == "unknown" for n in report.nodes)
    assert "tensorrt_rtx_is_not_installed_here not installed" in report.notes[0]
    assert "pip install 'convertctl[tensorrt-rtx]'" in report.notes[0]


@needs_rtx
def test_a_parser_that_does_not_finish_is_contained(models, tmp_path):
    """The parser runs in a child process: one that hangs (here: is given 10 ms) is stopped and said, not waited
    for; a native crash of it ends the same way (ParserCrash with the signal), never the check."""
    fresh = tmp_path / "fresh.onnx"  # not the file parsed above: results are kept per file in this process
    fresh.write_bytes(models["refused"].read_bytes())
    with pytest.raises(ParserCrash, match="did not finish"):
        parse_isolated(fresh, RTX, timeout=0.01)


@needs_rtx
def test_cli(models):
    res = run_cli("check", models["refused"], "-t", "tensorrt_rtx")
    assert res.code == 3, res.stdout + res.stderr
    shown = res.stdout + res.stderr  # the table and the "error:" lines go to stderr (stdout is for --json)
    assert "det0 (Det)" in shown and "custom0 (my.domain.MyOp)" in shown
    res = run_cli("check", models["plain"], "-t", "tensorrt_rtx", "-t", "tensorrt", "--json")
    assert res.code == 0, res.stderr
    targets = {t["target"]: t for t in res.json()["targets"]}
    assert targets["tensorrt_rtx"]["verdict"] == "supported"
    assert targets["tensorrt_rtx"]["judged_by"].startswith("TensorRT-RTX ")
