"""The stages in-process (convertctl/stages/): the stage cache's wrapper stores and restores any stage through its
declared output, and a run never changes the recipe it was given."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from convertctl.model import ModelInFlight
from convertctl.report.manifest import StageRecord
from convertctl.stage_cache import StageCache
from convertctl.stages.cache import CacheHandle, Stage, run_stage
from convertctl.stages.context import Records, RunContext, Samples


class _Reporter:
    def __init__(self):
        self.finished = []

    def start(self, stage, detail=""):
        pass

    def finish(self, record):
        self.finished.append(record.name if isinstance(record, StageRecord) else record.id)


def _ctx(folder: Path, cache_root: Path | None) -> RunContext:
    cache = CacheHandle(StageCache(cache_root), {"numpy": np.__version__}) if cache_root else None
    samples = Samples(feeds={}, path=folder / "samples.npz", chunk=None, labels=None, calib=None, record=None)
    return RunContext(recipe=None, recipe_sha="0" * 64, recipe_path=None, dir=folder, inputs=(), samples=samples,
                      reporter=_Reporter(), records=Records(), versions={}, cache=cache)


def _stage(ctx: RunContext, calls: list) -> Stage:
    """A stage that writes a file and returns a model in flight with arrays, names and a path."""

    def compute():
        calls.append(1)
        (ctx.dir / "step").mkdir(exist_ok=True)
        (ctx.dir / "step" / "model.onnx").write_bytes(b"onnx bytes")
        ctx.note("a note of the stage")
        model = ModelInFlight(onnx=ctx.dir / "step" / "model.onnx", label="exported",
                              outputs=(np.arange(6, dtype=np.float32).reshape(2, 3),), output_names=("y",),
                              reference=(np.ones((2, 3), np.float32), np.array([1, 2], np.int64)),
                              reference_name="torch")
        return model, [StageRecord(name="step", status="ok", seconds=0.5, findings=["done"])]

    return Stage("step", lambda: {"input": 1}, compute, ("step",), ModelInFlight)


def test_a_stage_is_stored_through_its_declared_output_and_restored_whole(tmp_path):
    calls: list = []
    first = _ctx(tmp_path / "out1", tmp_path / "cache")
    first.dir.mkdir()
    computed = run_stage(first, _stage(first, calls))
    second = _ctx(tmp_path / "out2", tmp_path / "cache")
    second.dir.mkdir()
    restored = run_stage(second, _stage(second, calls))
    assert len(calls) == 1  # computed once, restored once
    assert restored.onnx == second.dir / "step" / "model.onnx" and restored.onnx.read_bytes() == b"onnx bytes"
    assert (restored.label, restored.output_names, restored.reference_name) == ("exported", ("y",), "torch")
    for a, b in zip(computed.outputs + computed.reference, restored.outputs + restored.reference, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    record = second.records.stages[0]
    assert record.cache.hit and record.findings[0].startswith("reused from the stage cache")
    assert second.records.messages == ["a note of the stage"] and second.reporter.finished == ["step"]


def test_a_stage_that_errs_is_not_stored(tmp_path):
    calls: list = []

    def failing(ctx):
        def compute():
            calls.append(1)
            return None, [StageRecord(name="step", status="error", seconds=0.1)]
        return Stage("step", lambda: {"input": 1}, compute, ("step",))

    for i in (1, 2):
        ctx = _ctx(tmp_path / f"out{i}", tmp_path / "cache")
        ctx.dir.mkdir()
        assert run_stage(ctx, failing(ctx)) is None
    assert len(calls) == 2  # an error depends on this machine's state: computed again


def test_an_entry_whose_state_does_not_fit_the_declared_output_is_recomputed(tmp_path):
    calls: list = []
    ctx = _ctx(tmp_path / "out1", tmp_path / "cache")
    ctx.dir.mkdir()
    run_stage(ctx, _stage(ctx, calls))

    @dataclasses.dataclass(frozen=True)
    class Other:
        something_else: int

    other = _ctx(tmp_path / "out2", tmp_path / "cache")
    other.dir.mkdir()
    stage = dataclasses.replace(_stage(other, calls), output=Other)
    assert isinstance(run_stage(other, stage), ModelInFlight)  # the entry was refused and removed: computed again
    assert len(calls) == 2 and any("state is unusable" in m for m in other.records.messages)
    assert not any((tmp_path / "out2" / "step").glob("*.npz"))


def test_a_run_never_changes_the_recipe_it_was_given(tmp_path, monkeypatch):
    """An ONNX source without `inputs` and with a dim whose size comes from the data: the run resolves both into
    a recipe of its own (the manifest's), and the caller's recipe object is untouched."""
    import onnx
    from onnx import TensorProto, helper

    from convertctl.pipeline import run
    from convertctl.recipe import Recipe

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "relu.onnx")
    monkeypatch.chdir(tmp_path)
    recipe = Recipe.model_validate({"name": "relu", "source": {"framework": "onnx", "path": str(tmp_path / "relu.onnx")},
                                    "targets": [{"runtime": "onnxruntime", "precision": "fp32"}],
                                    "verify": {"latency": {"enabled": False}}})
    before = copy.deepcopy(recipe.model_dump())
    manifest = run(recipe, "0" * 64, None, tmp_path / "out")
    assert manifest.status == "ok", manifest.messages
    assert recipe.model_dump() == before and recipe.inputs == [] and recipe.dims == {}
    assert [a.status for a in manifest.artifacts] == ["ok"]
    assert manifest.samples.shapes == {"x": [8, 4]}  # the model's own input, with the default samples count
    assert "batch" in manifest.recipe.content["dims"]  # the run's own recipe: its dims resolved from the model
