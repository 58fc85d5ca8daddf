"""The TensorRT judge: verdicts from the versioned support table, on small models built here.

TensorRT cannot be installed on this project's machines: every test but the last judges from the table
(targets/tensorrt/data/tensorrt_support.yaml). The last one runs TensorRT's own ONNX parser and is skipped unless
`tensorrt` is importable; it is written to run unchanged on a GPU machine.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from convertctl.checks.model_facts import analyse  # noqa: E402
from convertctl.targets.tensorrt.check import check_tensorrt  # noqa: E402
from convertctl.targets.tensorrt.table import TABLE_PATH, SupportTable, load_table  # noqa: E402

NO_TRT = importlib.util.find_spec("tensorrt") is None


def facts_of(tmp_path: Path, nodes, inputs, outputs, opset=17, initializers=(), dim_ranges=None, name="m"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return analyse(path, dim_ranges=dim_ranges)


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def node_verdict(report, op_type):
    found = [n for n in report.nodes if n.op_type == op_type]
    assert found, f"no verdict for {op_type}: {report.nodes}"
    return found[0]


def op_row(report, op_type):
    return next(o for o in report.ops if o.op_type == op_type)


# ---------------------------------------------------------------------------------------------- the table

def test_table_file_validates_whole():
    raw = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    table = SupportTable.model_validate(raw)  # every entry's fields, every source reference
    assert table.taken_on == "2026-11-21"
    assert set(table.covers) == {"10", "11"}
    for source in table.sources.values():
        assert source.url.startswith("https://") and source.date[:2] == "20"
    # the whole onnx-tensorrt matrix: 200 rows (158 supported), plus Swish from the 11.0 changelog
    assert len(table.operators) == 201
    assert sum(e.supported for e in table.operators.values()) == 158
    for op in ("Conv", "Resize", "DFT", "Unique", "SequenceAt", "Attention", "TensorScatter", "Swish"):
        assert op in table.operators
    # no invented rows: every row is a standard ONNX operator, or one of the matrix's legacy rows
    standard = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert set(table.operators) - standard == {"ImageScaler", "ParametricSoftplus", "ScaledTanh"}
    # the packaged copy is the same file
    assert load_table().model_dump() == table.model_dump()  # (private entry caches may differ)


def test_table_schema_rejects_bad_rows():
    raw = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    raw["operators"]["Relu"]["types"] = ["FP33"]
    with pytest.raises(ValueError, match="FP33"):
        SupportTable.model_validate(raw)
    raw = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    raw["operators"]["Relu"]["source"] = ["a-source-nobody-recorded"]
    with pytest.raises(ValueError, match="unknown source"):
        SupportTable.model_validate(raw)
    raw = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    raw["operators"]["CumSum"]["conditions"][0].pop("input")
    with pytest.raises(ValueError, match="needs input"):
        SupportTable.model_validate(raw)


def test_11_inherits_10_with_overrides():
    table = load_table()
    assert table.entry("Conv", "11") == table.entry("Conv", "10")
    assert table.entry("Swish", "10").supported is False
    eleven = table.entry("Swish", "11")
    assert eleven.supported is True and eleven.since == "11.0" and eleven.types is None


# ---------------------------------------------------------------------------------------------- verdicts

def test_supported_op(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")],
                 [vi("x", T.FLOAT, [1, 3, 8, 8])], [vi("y", T.FLOAT, [1, 3, 8, 8])])
    report = check_tensorrt(f)
    assert report.target == "tensorrt"
    assert report.verdict == "supported"
    assert report.nodes == []
    assert op_row(report, "Relu").verdict == "supported"
    assert report.version == "10.x"
    assert report.judged_by.startswith("support table tensorrt_support.yaml (taken from onnx-tensorrt")
    assert "on 2026-11-21" in report.judged_by


def test_unsupported_op_with_suggestion(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Unique", ["x"], ["y"], name="uniq"),
                            helper.make_node("DFT", ["s"], ["z"], name="dft")],
                 [vi("x", T.FLOAT, [6]), vi("s", T.FLOAT, [1, 16, 1])],
                 [vi("y", T.FLOAT, None), vi("z", T.FLOAT, None)])
    for version in ("10", "11"):
        report = check_tensorrt(f, version)
        assert report.verdict == "unsupported"
        dft = node_verdict(report, "DFT")
        assert dft.verdict == "unsupported" and dft.node == "dft"
        assert "no importer" in dft.reason and "STFT" in dft.suggestion
        assert "plugin" in node_verdict(report, "Unique").suggestion
        assert op_row(report, "DFT").nodes == ["dft"]


def test_double_is_cast_to_float_conditional(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Add", ["a", "b"], ["c"], name="add")],
                 [vi("a", T.DOUBLE, [2, 3]), vi("b", T.DOUBLE, [2, 3])], [vi("c", T.DOUBLE, [2, 3])])
    report = check_tensorrt(f, "10")
    add = node_verdict(report, "Add")
    assert add.verdict == "conditional"
    assert "DOUBLE is cast to FP32" in add.reason and "FLT_MAX" in add.reason
    assert report.verdict == "conditional"


def test_int64_native_where_listed_rejected_where_not(tmp_path):
    # The 10.x matrix lists INT64 for Add (native since TensorRT 9.0), not for NonZero (FP32, FP16).
    f = facts_of(tmp_path, [helper.make_node("Add", ["a", "a"], ["b"], name="add"),
                            helper.make_node("NonZero", ["b"], ["idx"], name="nz")],
                 [vi("a", T.INT64, [4])], [vi("idx", T.INT64, None)])
    report = check_tensorrt(f, "10")
    assert not [n for n in report.nodes if n.op_type == "Add"]
    nz = node_verdict(report, "NonZero")
    assert nz.verdict == "unsupported"
    assert "is INT64" in nz.reason and "FP32, FP16" in nz.reason
    assert nz.suggestion.startswith("Cast input 'b'")
    # INT64 model inputs: the binding note, with NVIDIA's INT32-cast statement
    assert any("INT64 model inputs/outputs" in n and "INT64 bindings" in n for n in report.notes)


def test_quantized_and_uint8_types(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Add", ["q", "q"], ["s"], name="add_int8"),
                            helper.make_node("Cast", ["x"], ["u"], to=T.UINT8, name="to_u8"),
                            helper.make_node("Cast", ["u"], ["y"], to=T.FLOAT, name="from_u8")],
                 [vi("q", T.INT8, [4]), vi("x", T.FLOAT, [4])], [vi("s", T.INT8, [4]), vi("y", T.FLOAT, [4])])
    report = check_tensorrt(f)
    add = node_verdict(report, "Add")
    assert add.verdict == "unsupported" and "quantized type" in add.reason and "DequantizeLinear" in add.suggestion
    names = {n.node: n for n in report.nodes}
    assert names["to_u8"].verdict == "unsupported" and "only supported as network input or output" in names["to_u8"].reason


def test_versions_differ_swish(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Swish", ["x"], ["y"], name="swish", alpha=1.0)],
                 [vi("x", T.FLOAT, [1, 8])], [vi("y", T.FLOAT, [1, 8])], opset=24)
    ten = check_tensorrt(f, "10")
    swish = node_verdict(ten, "Swish")
    assert swish.verdict == "unsupported" and "before TensorRT 11.0" in swish.reason
    assert "Sigmoid" in swish.suggestion
    eleven = check_tensorrt(f, "11")
    assert eleven.verdict == "supported" and eleven.version == "11.x"
    assert any("not documented" in n for n in eleven.notes)  # Swish's types are not in the sources
    assert any("builds as an FP32 engine" in n for n in eleven.notes)  # strongly typed only
    assert any("unconfirmed for 11.x" in n for n in eleven.notes)


def test_release_gating_since(tmp_path):
    q = vi("q", T.FLOAT, [1, 2, 4, 8])
    f = facts_of(tmp_path, [helper.make_node("Attention", ["q", "q", "q"], ["y"], name="attn")],
                 [q], [vi("y", T.FLOAT, None)], opset=23)
    report = check_tensorrt(f, "10")
    attn = node_verdict(report, "Attention")
    assert attn.verdict == "conditional" and "needs TensorRT >= 10.14" in attn.reason
    assert node_verdict(check_tensorrt(f, "10.8"), "Attention").verdict == "unsupported"
    at_10_14 = check_tensorrt(f, "10.14")
    assert not [n for n in at_10_14.nodes if n.op_type == "Attention"]
    # opset 23 is documented for 10.15 (opset 9-24) and 10.0 (9-20), not for 10.14 itself
    assert [n.verdict for n in at_10_14.nodes] == ["conditional"] and "opset 23" in at_10_14.nodes[0].reason
    assert check_tensorrt(f, "10.15").verdict == "supported"
    assert check_tensorrt(f, "11").verdict == "supported"


def test_release_gating_until_slice_axes(tmp_path):
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("Slice", ["shp", "st", "en", "ax"], ["s"], name="slice_shape"),
             helper.make_node("Slice", ["x", "st", "en", "s"], ["y"], name="slice_x")]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "st"),
             numpy_helper.from_array(np.array([1], np.int64), "en"),
             numpy_helper.from_array(np.array([0], np.int64), "ax")]
    f = facts_of(tmp_path, nodes, [vi("x", T.FLOAT, ["n", 4])], [vi("y", T.FLOAT, None)], initializers=inits,
                 dim_ranges={"n": (1, 2, 4)})
    early = node_verdict(check_tensorrt(f, "10.2"), "Slice")
    assert early.node == "slice_x" and early.verdict == "unsupported"
    assert "`axes` must be an initializer" in early.reason and "computed at run time" in early.reason
    assert "10.3" in early.suggestion
    unknown_minor = node_verdict(check_tensorrt(f, "10"), "Slice")
    assert unknown_minor.verdict == "conditional" and "up to 10.2" in unknown_minor.reason
    assert check_tensorrt(f, "10.3").verdict == "supported"
    assert check_tensorrt(f, "11").verdict == "supported"


def test_constant_input_conditions(tmp_path):
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["a"], name="sum_init"),
             helper.make_node("ReduceSum", ["x", "dyn_axes"], ["b"], name="sum_runtime"),
             helper.make_node("Add", ["axes", "one"], ["folded"], name="fold"),
             helper.make_node("ReduceSum", ["x", "folded"], ["c"], name="sum_folded")]
    one = numpy_helper.from_array(np.array([0], np.int64), "one")
    f = facts_of(tmp_path, nodes, [vi("x", T.FLOAT, [2, 3]), vi("dyn_axes", T.INT64, [1])],
                 [vi("a", T.FLOAT, None), vi("b", T.FLOAT, None), vi("c", T.FLOAT, None)],
                 initializers=[axes, one])
    report = check_tensorrt(f)
    by = {n.node: n for n in report.nodes}
    assert "sum_init" not in by
    assert by["sum_runtime"].verdict == "unsupported"
    assert "`axes` must be an initializer: 'dyn_axes' is computed at run time" == by["sum_runtime"].reason
    assert "constant-fold" in by["sum_runtime"].suggestion
    assert by["sum_folded"].verdict == "conditional" and "computed from constants" in by["sum_folded"].reason
    row = op_row(report, "ReduceSum")
    assert row.count == 3 and row.verdict == "unsupported" and sorted(row.nodes) == ["sum_folded", "sum_runtime"]


def test_attribute_and_output_conditions(tmp_path):
    sizes = numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "sizes")
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["r"], mode="cubic", name="resize_cubic"),
             helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], name="pool_idx"),
             helper.make_node("LSTM", ["s", "w", "rr"], ["h"], hidden_size=2, layout=1, name="lstm")]
    w = numpy_helper.from_array(np.zeros((1, 8, 3), np.float32), "w")
    rr = numpy_helper.from_array(np.zeros((1, 8, 2), np.float32), "rr")
    f = facts_of(tmp_path, nodes, [vi("x", T.FLOAT, [1, 3, 8, 8]), vi("s", T.FLOAT, [1, 5, 3])],
                 [vi("r", T.FLOAT, None), vi("p", T.FLOAT, None), vi("idx", T.INT64, None), vi("h", T.FLOAT, None)],
                 initializers=[sizes, w, rr])
    report = check_tensorrt(f)
    resize = node_verdict(report, "Resize")
    assert resize.verdict == "unsupported" and "mode is 'cubic'" in resize.reason and "linear" in resize.suggestion
    pool = node_verdict(report, "MaxPool")
    assert pool.verdict == "unsupported" and "`Indices` output tensor unsupported" in pool.reason
    lstm = node_verdict(report, "LSTM")
    assert lstm.verdict == "unsupported" and "`layout` attribute must be 0: layout is 1" in lstm.reason


def test_not_in_table_is_unknown(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("CumProd", ["x", "axis"], ["y"], name="cumprod")],
                 [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])], opset=26,
                 initializers=[numpy_helper.from_array(np.array(0, np.int64), "axis")])
    report = check_tensorrt(f)
    cumprod = node_verdict(report, "CumProd")
    assert cumprod.verdict == "unknown" and "not in the support table" in cumprod.reason
    # opset 26 is past the table's range (9-24): said at model level
    opset = [n for n in report.nodes if n.node == "" and "opset 26" in n.reason]
    assert opset and opset[0].verdict == "conditional"


def test_custom_domain_is_unknown(tmp_path):
    graph = helper.make_graph([helper.make_node("MyOp", ["x"], ["y"], domain="com.example", name="mine")], "g",
                              [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 10
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    report = check_tensorrt(analyse(path))
    mine = node_verdict(report, "MyOp")
    assert mine.verdict == "unknown" and mine.domain == "com.example"
    assert "plugin named 'MyOp'" in mine.suggestion
    assert report.verdict == "unknown"


def test_dynamic_input_needs_a_range(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    io = ([vi("x", T.FLOAT, ["batch", 3])], [vi("y", T.FLOAT, ["batch", 3])])
    report = check_tensorrt(facts_of(tmp_path, nodes, *io))
    finding = [n for n in report.nodes if n.node == ""]
    assert len(finding) == 1 and finding[0].verdict == "conditional"
    assert "optimization profile" in finding[0].reason and "'batch'" in finding[0].reason
    assert "dims: {batch: {min: 1, opt: 1, max: 8}}" in finding[0].suggestion
    assert report.verdict == "conditional"
    ranged = check_tensorrt(facts_of(tmp_path, nodes, *io, dim_ranges={"batch": (1, 4, 8)}, name="ranged"))
    assert ranged.verdict == "supported" and ranged.nodes == []


def test_dynamic_dims_of_several_inputs_are_one_finding_in_convertctls_names(tmp_path):
    """silero-vad's inputs: input [?, ?], state [2, ?, 128], sr a scalar. Unnamed dims are named as --dim takes
    them (batch, input_1, state_1), a batch dim gets a range, any other dim a size (SIZE when the model states none),
    and there is one finding (one `dims:` mapping to paste), never an "unnamed" one. The state's open dim is a
    different dim from `batch` in this file, so, as in a run that reads the model (data/inputs.py), it is not a
    batch dim: a recipe says it is (state: [2, batch, 128], batch_axis: 1)."""
    nodes = [helper.make_node("Identity", ["input"], ["y"], name="id"),
             helper.make_node("Identity", ["state"], ["s"], name="id2")]
    inputs = [vi("input", T.FLOAT, ["", ""]), vi("state", T.FLOAT, [2, "", 128]), vi("sr", T.INT64, [])]
    report = check_tensorrt(facts_of(tmp_path, nodes, inputs, [vi("y", T.FLOAT, ["", ""]), vi("s", T.FLOAT, None)]))
    (finding,) = [n for n in report.nodes if n.node == ""]
    assert "unnamed" not in finding.reason
    assert ("'batch' (input 'input' axis 0, a batch dim), 'input_1' (input 'input' axis 1), 'state_1' (input "
            "'state' axis 1) without a range") in finding.reason
    assert finding.suggestion.startswith("give each a profile: --dim batch=1:1:8 --dim input_1=SIZE --dim "
                                         "state_1=SIZE, or in the recipe: dims: {batch: {min: 1, opt: 1, max: 8}, "
                                         "input_1: SIZE, state_1: SIZE}; replace SIZE")
    # the same model with its dims named (silero_vad_op18_ifless.onnx): the state's batch is the batch dim
    named = [vi("input", T.FLOAT, ["batch", "sequence"]), vi("state", T.FLOAT, [2, "batch", 128]), vi("sr", T.INT64, [])]
    report = check_tensorrt(facts_of(tmp_path, nodes, named, [vi("y", T.FLOAT, ["batch", "sequence"]),
                                                               vi("s", T.FLOAT, None)], name="named"))
    (finding,) = [n for n in report.nodes if n.node == ""]
    assert finding.suggestion.startswith("give each a profile: --dim batch=1:1:8 --dim sequence=SIZE, or in the "
                                         "recipe: dims: {batch: {min: 1, opt: 1, max: 8}, sequence: SIZE}")
    ranged = check_tensorrt(facts_of(tmp_path, nodes, inputs, [vi("y", T.FLOAT, ["", ""]), vi("s", T.FLOAT, None)],
                                     dim_ranges={"batch": (1, 1, 8), "input_1": (512, 512, 512),
                                                 "state_1": (1, 1, 8)}, name="ranged"))
    assert [n for n in ranged.nodes if n.node == ""] == []


def test_recipe_inputs_name_and_fix_the_models_dynamic_dims(tmp_path):
    """The check of a recipe names the model's dynamic dims as the recipe's inputs[].shape does (as a run renames
    them in the model in flight): the recipe's name for a dim, with its `dims` range, or the size it fixes the dim
    to (a range min = opt = max: never "without a range"); an input of another rank keeps the model's names."""
    from convertctl.recipe import InputSpec

    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    io = ([vi("x", T.FLOAT, [-1, 3, "?", "?"])], [vi("y", T.FLOAT, [-1, 3, "?", "?"])])
    graph = helper.make_graph(nodes, "g", *io)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)

    def profile(inputs, ranges=None):
        facts = analyse(path, dim_ranges=ranges, inputs=inputs)
        found = [n for n in check_tensorrt(facts).nodes if n.node == ""]
        assert [n.kind for n in found] in ([], ["dynamic_dim"])
        return facts, (found[0] if found else None)

    facts, finding = profile([InputSpec(name="x", shape=[1, 3, 64, 48])])
    assert finding is None and facts.findings == [] and facts.dynamic_inputs == {}
    facts, finding = profile([InputSpec(name="x", shape=["batch", 3, "height", 48])], {"height": (32, 64, 64)})
    assert "'batch' (input 'x' axis 0, a batch dim) without a range" in finding.reason
    assert facts.dynamic_inputs == {"x": ["batch", "height"]}
    assert [f.reason for f in facts.findings] == [
        "input 'x' axis 0 is dynamic and unnamed, named 'batch' by convertctl, with no range given"]
    _, finding = profile([InputSpec(name="x", shape=["n", 3, "height", "width"], batch_axis=None)])
    assert finding.suggestion.startswith("give each a profile: --dim n=SIZE --dim height=SIZE --dim width=SIZE, "
                                         "or in the recipe: dims: {n: SIZE, height: SIZE, width: SIZE}")
    _, finding = profile([InputSpec(name="x", shape=["batch", "height", "width"])])  # another rank
    assert "'x_2' (input 'x' axis 2)" in finding.reason


def test_subgraph_nodes_are_judged(tmp_path):
    then_g = helper.make_graph([helper.make_node("Unique", ["x"], ["t"], name="inner_unique")], "then", [],
                               [vi("t", T.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="inner_id")], "else", [],
                               [vi("e", T.FLOAT, None)])
    f = facts_of(tmp_path, [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="iff")],
                 [vi("c", T.BOOL, []), vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, None)])
    report = check_tensorrt(f)
    inner = node_verdict(report, "Unique")
    assert inner.node == "inner_unique" and inner.verdict == "unsupported"
    assert "[in If 'iff' then_branch]" in inner.reason
    assert op_row(report, "Unique").count == 1


def test_version_selection_and_no_tensorrt_import(tmp_path):
    f = facts_of(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, [2])], [vi("y", T.FLOAT, [2])])
    with pytest.raises(ValueError, match="10, 11"):
        check_tensorrt(f, "nine")
    with pytest.raises(ValueError, match="covers 10, 11"):
        check_tensorrt(f, "12")
    assert check_tensorrt(f, "10.8").version == "10.8 (table section 10.x)"
    if NO_TRT:
        assert check_tensorrt(f, "auto").version == "10.x"
        assert "tensorrt" not in sys.modules


def test_thousands_of_nodes_in_seconds(tmp_path):
    """The check is linear in the node count. Measured as this process's CPU time (the other jobs on a shared CI
    machine do not count), and as a ratio between two sizes on the same machine, not seconds of one CPU:
    10x the nodes costs about 10x (11.6 at most measured, with the machine loaded), a quadratic pass 100x."""
    import time

    def chain(n: int):
        nodes = []
        prev = "x"
        for i in range(n):
            nodes.append(helper.make_node("Relu" if i % 2 else "Sigmoid", [prev], [f"t{i}"], name=f"n{i}"))
            prev = f"t{i}"
        return facts_of(tmp_path, nodes, [vi("x", T.FLOAT, [1, 16])], [vi(prev, T.FLOAT, [1, 16])], name=f"c{n}")

    def cpu_seconds(facts) -> float:
        start = time.process_time()
        check_tensorrt(facts)
        return time.process_time() - start

    small, big = chain(300), chain(3000)
    report = check_tensorrt(big)  # the first call also loads the operator table
    assert report.verdict == "supported" and sum(o.count for o in report.ops) == 3000
    times = [(cpu_seconds(small), cpu_seconds(big)) for _ in range(5)]  # interleaved; the least noisy of each
    t_small, t_big = min(t for t, _ in times), min(t for _, t in times)
    assert t_big < 10  # a budget, far above any x86-64 CPU (0.07 s measured)
    assert t_big < 30 * t_small, times


# ------------------------------------------------------------------------- TensorRT's own parser (GPU machines)

def test_tensorrt_parser_cross_check(tmp_path):
    """Runs only where TensorRT is installed (never on this project's machines), unchanged."""
    trt = pytest.importorskip("tensorrt")
    f = facts_of(tmp_path, [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                            helper.make_node("Unique", ["r"], ["y"], name="uniq")],
                 [vi("x", T.FLOAT, [1, 4])], [vi("y", T.FLOAT, None)])
    report = check_tensorrt(f, "auto")
    assert report.version.startswith(str(trt.__version__))
    assert f"TensorRT {trt.__version__} ONNX parser" in report.judged_by
    assert node_verdict(report, "Unique").verdict == "unsupported"
    assert not [n for n in report.nodes if n.op_type == "Relu" and n.verdict == "unsupported"]
    for note in report.notes:  # every disagreement is written down with both sides
        if "table says" in note:
            assert "parser" in note
