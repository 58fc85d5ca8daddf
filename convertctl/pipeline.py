"""The one place that orders the stages: export -> check -> optimize -> build (+ verify) -> latency -> manifest.

Every stage is a plain step over the model in flight; its files land in the staging folder and
its record (inputs, outputs, hashes, time, findings, verification) in the manifest, which is
written last. Reports are rendered from the manifest alone.
"""

from __future__ import annotations

import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from convertctl import __version__
from convertctl.errors import (
    EXIT_ACCURACY_GATE,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNSUPPORTED_OPERATOR,
    ConvertctlError,
    install_hint,
)
from convertctl.paths import default_cache_dir
from convertctl.pipeline_cache import StageCaching
from convertctl.report.manifest import (
    ArtifactRecord,
    LatencyRecord,
    Manifest,
    RecipeRecord,
    SamplesRecord,
    StageRecord,
    file_record,
)
from convertctl.report.outdir import MARKER, OutputFolder


class Reporter:
    """Receives progress; the CLI renders it. The base class is silent (API use, tests)."""

    def start(self, stage: str, detail: str = "") -> None: ...

    def finish(self, record: StageRecord | ArtifactRecord) -> None: ...

    def measured(self, stage: str, record: LatencyRecord, seconds: float) -> None:
        """One latency measurement ended; `stage` is the name it was started with (`latency <what>`)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _effective_inputs(recipe, onnx_source_io):
    """A recipe may omit inputs for an ONNX source: they are read from the model, each dynamic dim named as
    data/dims.py says (`batch` at axis 0, `<input>_<axis>` for the others when the model gives no usable name)."""
    from convertctl.data.inputs import inputs_from_model

    if recipe.inputs or onnx_source_io is None:
        return recipe.inputs, []
    declared, notes = inputs_from_model(onnx_source_io.inputs)
    return [model_input_spec(d) for d in declared], notes


def _onnx_inputs(path: Path):
    """(the ONNX model's inputs as model.describe() gives them, its metadata_props), from one read of the file."""
    from types import SimpleNamespace

    from convertctl.model import load_proto, tensor_info

    proto = load_proto(path)
    inits = {i.name for i in proto.graph.initializer}
    io = SimpleNamespace(inputs=[tensor_info(i) for i in proto.graph.input if i.name not in inits])
    return io, {p.key: p.value for p in proto.metadata_props}


def model_input_spec(declared: dict):
    """An InputSpec from what a model declares; a shape the recipe schema refuses (a 0 or negative dim) is the
    model's problem, said as such, with the way around it."""
    from pydantic import ValidationError

    from convertctl.errors import SourceModelError
    from convertctl.recipe import InputSpec, format_validation_error

    try:
        return InputSpec(**declared)
    except ValidationError as err:
        raise SourceModelError(
            f"the model declares input {declared.get('name')!r} as {declared.get('shape')}, which cannot be fed: "
            + format_validation_error(err).replace("\n", "; "),
            hint="declare the input's shape yourself: `inputs` in a recipe, or --input NAME:DIM,DIM,...") from None


class Run(StageCaching):
    def __init__(self, recipe, recipe_sha: str, recipe_path: Path | None, output: Path | None, reporter=None):
        self.recipe = recipe
        self.recipe_sha = recipe_sha
        self.recipe_path = recipe_path
        from convertctl.supervisor import Breadcrumbs

        self.reporter = Breadcrumbs(reporter or Reporter())  # each stage noted: a native crash names it
        final = output or recipe.output or Path("out") / recipe.name
        self.out = OutputFolder(final)
        self.stages: list[StageRecord] = []
        self.artifacts: list[ArtifactRecord] = []
        self.messages: list[str] = []
        self.samples_record: SamplesRecord | None = None
        self.latency_baseline: LatencyRecord | None = None
        self.unsupported: dict[str, str] = {}  # runtime -> why the check says it cannot work (its targets are not built)
        self.emission_errors: dict[str, str] = {}  # emission -> why the quantize stage could not make it
        self.cache = None  # the stage cache (stage_cache.py), opened in execute()

    # -- helpers ---------------------------------------------------------------------------------
    def _files(self, paths) -> list:
        return [file_record(p, self.dir) for p in paths if Path(p).exists()]

    def _stage(self, record: StageRecord) -> StageRecord:
        self.stages.append(record)
        self.reporter.finish(record)
        return record

    def _tolerance(self, precision: str, override=None):
        return override or self.recipe.verify.tolerances[precision]

    # -- stages ----------------------------------------------------------------------------------
    def _resolve_inputs(self) -> None:
        """The inputs to feed (the recipe's, or the model's own) and a size for every dynamic dim (data/inputs.py):
        a dim without one stops the run here (exit 2), before any work. Done once: in the preflight when the inputs
        are known without a child process (an ONNX source, or a recipe that lists them), else after reading the
        Paddle/TensorFlow model's signature."""
        from convertctl.data.inputs import resolve_dims

        if getattr(self, "inputs", None) is not None:
            return
        src = self.recipe.source
        source_io, metadata = None, {}
        if src.framework == "onnx":
            source_io, metadata = getattr(self, "_onnx_io", None) or _onnx_inputs(src.path)
        if src.framework in ("paddle", "tensorflow") and not self.recipe.inputs:
            self._inputs_from_signature()
        inputs, notes = _effective_inputs(self.recipe, source_io)
        notes += resolve_dims(self.recipe, inputs, metadata)
        self.messages.extend(notes)
        self.inputs = inputs

    def _samples(self):
        from convertctl.data.batching import chunk_size
        from convertctl.data.samples import build_samples

        self._resolve_inputs()
        self.chunk = chunk_size(self.inputs, self.recipe.dims)
        self.calib, self.labels = None, None
        self.samples_path = self.dir / "samples.npz"
        if self.recipe.calibration is not None:
            from convertctl.data.batching import stack
            from convertctl.quantize.calib_data import CalibrationData

            self.calib = CalibrationData(self.recipe.calibration, self.inputs, self.recipe.dims,
                                         self.recipe.samples.preprocess)
            self.messages.extend(self.calib.notes)
            if self.calib.num_evaluation:  # the held-out split verifies every artifact (with labels, if any)
                held = list(self.calib.evaluation())  # stacked along each input's batch axis
                self.feeds = stack([s.feeds for s in held], {spec.name: spec.batch_axis for spec in self.inputs})
                labels = [s.label for s in held]
                self.labels = np.asarray(labels) if all(label is not None for label in labels) else None
                np.savez(self.samples_path, **self.feeds)
                self.samples_record = SamplesRecord(
                    description=f"{self.calib.num_evaluation} held-out samples: {self.calib.description}",
                    sha256=self.calib.sha256, shapes={k: list(v.shape) for k, v in self.feeds.items()},
                    notes=self.calib.notes)
                return
            self.messages.append("calibration.holdout gives no held-out samples: verifying on `samples` instead")
        samples = build_samples(self.inputs, self.recipe.dims, self.recipe.samples)
        samples.save(self.samples_path)
        self.feeds = samples.feeds
        self.samples_record = SamplesRecord(
            description=samples.description, sha256=samples.sha256,
            shapes={k: list(v.shape) for k, v in samples.feeds.items()}, notes=samples.notes,
        )
        self.messages.extend(samples.notes)

    def _inputs_from_signature(self):
        """A Paddle/TF recipe without `inputs` takes them from the model (a short child process of its own)."""
        from convertctl.data.inputs import infer_batch_axes
        from convertctl.frontends.framework import describe_inputs

        self.reporter.start("export", f"reading the {self.recipe.source.framework} model's inputs")
        declared = describe_inputs(self.recipe, self.dir / "export")
        notes = infer_batch_axes(declared)
        specs = [model_input_spec(d) for d in declared]
        self.recipe.inputs = specs
        self.messages.append("inputs read from the model: " + "; ".join(
            f"{s.name} {s.shape} {s.dtype}" for s in specs) + " (set `inputs` in a recipe to choose shapes and ranges)")
        self.messages.extend(notes)

    def _export(self):
        from convertctl.evaluate.compare import compare
        from convertctl.frontends import onnx as onnx_frontend
        from convertctl.frontends import pytorch as torch_frontend
        from convertctl.model import companion_files, describe
        from convertctl.targets.onnxruntime import run_session, session

        self.reporter.start("export", f"{self.recipe.source.framework} -> ONNX")
        t0 = time.perf_counter()
        from convertctl.frontends import framework as framework_frontend

        frontend = {"onnx": onnx_frontend, "pytorch": torch_frontend}.get(self.recipe.source.framework,
                                                                          framework_frontend)
        work = self.dir / "export"
        work.mkdir(exist_ok=True)  # a Paddle/TF model's inputs may have been read into it already
        result = frontend.export(self.recipe, self.samples_path, work, self.chunk)
        self.onnx = result.onnx
        self.onnx_label = "exported"
        self.reference = result.reference
        self.reference_name = result.reference_name
        self.messages.extend(result.warnings)
        self.output_names = [o.name for o in describe(self.onnx).outputs]
        verification, status = [], "ok"
        # ONNX Runtime's outputs of the model in flight: the parity baseline of every later step
        self.onnx_outputs = result.reference
        if result.verify_export:
            actual = run_session(session(self.onnx), self.feeds, self.chunk)
            self.onnx_outputs = actual
            cmp = compare(result.reference_name, self.output_names, result.reference, actual,
                          self._tolerance("fp32"))
            verification.append(cmp)
            if cmp.passed is False:
                status = "failed"
        record = StageRecord(
            name="export", status=status, seconds=round(time.perf_counter() - t0, 3),
            inputs=self._files(self._source_files()), outputs=self._files(companion_files(self.onnx) + result.logs),
            findings=result.findings, details=result.details, verification=verification,
        )
        self._stage(record)
        if status == "failed":
            raise _GateFailed("the exported ONNX does not match the source model: " + "; ".join(verification[0].failures))

    def _source_files(self) -> list[Path]:
        """The files the source model is made of, hashed into the export stage's inputs."""
        from convertctl.frontends.interpreters import onnx_pin_problem

        pinned = onnx_pin_problem()
        if pinned:  # loud, never silent: the whole tool would run on the older onnx
            self.messages.append(pinned)
        src = self.recipe.source
        if src.framework in ("paddle", "tensorflow"):
            from convertctl.frontends.formats import detect

            found = detect(src.path, src.format)
            model = found.model
            if model.is_dir():  # a SavedModel: every file in it
                return sorted(f for f in model.rglob("*") if f.is_file())
            return [model] + ([found.params] if found.params else [])
        if src.framework == "onnx":  # the weights too: a changed .data file must not restore a stale export
            from convertctl.model import companion_files

            return companion_files(src.path)
        files = [src.path] if src.path else []
        if src.factory and src.factory.rpartition(":")[0].endswith(".py"):
            files.append(Path(src.factory.rpartition(":")[0]))
        return files

    def _check(self):
        """Structure (ONNX checker, shape inference), then operator support on every target runtime to be built.

        A runtime judged "unsupported" is not built (its artifacts become "error"), or, with
        `check.fail_fast`, the run stops here (exit 3). "conditional" and "unknown" only add messages."""
        from convertctl.checks.structure import check_structure

        self.reporter.start("check", "ONNX checker, shape inference, operators")
        t0 = time.perf_counter()
        findings, details = check_structure(self.onnx)
        outputs = []
        runtimes = list(dict.fromkeys(t.runtime for t in self.recipe.targets)) if "build" in self.recipe.stages else []
        if runtimes:
            outputs = self._check_targets(runtimes, findings, details)
        stop = bool(self.unsupported) and self.recipe.check.fail_fast
        self._stage(StageRecord(name="check", status="failed" if stop else "ok",
                                seconds=round(time.perf_counter() - t0, 3), inputs=self._files([self.onnx]),
                                outputs=self._files(outputs), findings=findings, details=details))
        if stop:
            raise _Unsupported("check.fail_fast: the run stopped after the check: "
                               + "; ".join(self.unsupported.values()))

    def _check_targets(self, runtimes: list[str], findings: list[str], details: dict) -> list[Path]:
        """`convertctl check` on the model in flight for these runtimes: check/check.json, findings, verdicts."""
        from convertctl.checks.run_check import check_model
        from convertctl.recipe import explicit_dim_ranges

        self.reporter.start("check", f"operator support: {', '.join(runtimes)}")
        try:
            # a dim the recipe gives a value (a range, or a fixed size in `dims` or in inputs[].shape) has its range
            report = check_model(self.onnx, runtimes, explicit_dim_ranges(self.recipe) or None, self.inputs)
        except (ConvertctlError, ImportError):
            raise
        except Exception as exc:  # the checker's own failure must not cost the run its builds: say so, build
            note = f"check: the operator support check failed ({type(exc).__name__}: {exc}); targets built unchecked"
            findings.append(note[:500])
            self.messages.append(note[:500])
            return []
        path = self.dir / "check" / "check.json"
        path.parent.mkdir(exist_ok=True)
        # relative to the output folder: the staging folder's name must not end up in a finished run's files
        report.model = str(Path(self.onnx).relative_to(self.dir)) if Path(self.onnx).is_relative_to(self.dir) \
            else report.model
        path.write_text(report.model_dump_json(indent=2) + "\n")
        details["targets"] = {
            t.target: {"verdict": t.verdict, "judged_by": t.judged_by, "version": t.version,
                       "nodes": [n.model_dump(exclude_none=True) for n in t.nodes if n.verdict != "supported"]}
            for t in report.targets}
        details["targets_seconds"] = report.seconds
        for t in report.targets:
            bad = [n for n in t.nodes if n.verdict == t.verdict] if t.verdict != "supported" else []
            # an unsupported operator names its node first; for the other verdicts a model-level reason says most
            bad.sort(key=lambda n: bool(n.node) != (t.verdict == "unsupported"))
            first = _node_text(bad[0]).removeprefix(f"{t.verdict}: ") if bad else ""
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            if t.verdict == "supported":
                findings.append(f"{t.target}: supported ({t.judged_by})")
            elif t.verdict == "unsupported":
                self.unsupported[t.target] = (f"unsupported by {t.target}: {first}{more}; see check/check.json"
                                              if bad else f"unsupported by {t.target}; see check/check.json")
                findings.append(f"{t.target}: unsupported: {first}{more}; its targets are not built")
            else:
                findings.append(f"{t.target}: {t.verdict}: {first}{more}")
                self.messages.append(f"check: {t.target}: {t.verdict}: {first}{more} (see check/check.json)")
        return [path]

    def _optimize(self):
        from functools import partial

        from convertctl.passes.guard import guarded_pass
        from convertctl.passes.simplify import simplify

        tool = self.recipe.optimize.simplifier
        if tool == "none":
            self._stage(StageRecord(name="optimize", status="skipped", seconds=0.0,
                                    findings=["optimize.simplifier is 'none'"]))
            return
        self.reporter.start("optimize", tool)
        t0 = time.perf_counter()
        src, dst = self.onnx, self.dir / "optimize" / "model.onnx"
        dst.parent.mkdir()
        result = guarded_pass(tool, partial(simplify, tool=tool), src, dst, self.feeds, self.output_names,
                              self._tolerance("fp32"), before=self.onnx_outputs, chunk=self.chunk)
        self.onnx_outputs = result.outputs
        findings = result.findings
        if result.status == "ok":
            findings = [f"{tool}: {result.details['nodes_before']} -> {result.details['nodes_after']} nodes"]
        self.onnx = result.model
        if result.status == "ok":
            self.onnx_label = "optimized"
        self._stage(StageRecord(
            name="optimize", status=result.status, seconds=round(time.perf_counter() - t0, 3),
            inputs=self._files([src]), outputs=self._files(sorted(dst.parent.iterdir())), findings=findings,
            details=result.details, verification=result.verification))

    def _quantize(self):
        """Calibrate once and emit every precision the targets need (quantize/stage.py)."""
        from convertctl.quantize.preflight import check_quantizable
        from convertctl.quantize.stage import run_quantize
        from convertctl.targets import registry

        buildable = [t for t in self.recipe.targets if t.runtime not in self.unsupported]
        check_quantizable(self.onnx, {t.precision for t in buildable})
        needed = {registry.get(t.runtime).emission(t) for t in buildable}
        self.emissions = {"fp32": self.onnx}
        if not needed - {"fp32"}:
            return
        self.reporter.start("quantize", ", ".join(sorted(needed - {"fp32"})))
        cache = (self.recipe.calibration.cache if self.recipe.calibration and self.recipe.calibration.cache
                 else default_cache_dir() / "calibration")
        result = run_quantize(self.onnx, needed, self.calib, self.recipe, self.dir / "quantize", cache, self.feeds,
                              self.output_names, self.onnx_outputs, self.chunk)
        self.emissions = result.emissions
        self.emission_errors = result.failed
        self._stage(StageRecord(name="quantize", status="error" if result.failed else "ok", seconds=result.seconds,
                                inputs=self._files([self.onnx]),
                                outputs=self._files(result.outputs), findings=result.findings,
                                details=result.details, verification=result.verification))

    def _build_target(self, spec):
        from convertctl.data.batching import run_in_chunks
        from convertctl.evaluate.accuracy import accuracy_record
        from convertctl.evaluate.compare import compare
        from convertctl.recipe import explicit_dim_ranges
        from convertctl.supervisor import crashed_targets
        from convertctl.targets import registry
        from convertctl.targets.base import BuildContext

        target = registry.get(spec.runtime)
        record = ArtifactRecord(id=spec.id, runtime=spec.runtime, precision=spec.precision, status="ok")
        if spec.runtime in self.unsupported:  # the check found an operator this runtime cannot convert or run
            record.status, record.reason = "error", self.unsupported[spec.runtime]
            self.artifacts.append(record)
            self.reporter.finish(record)
            return
        folder = self.dir / "targets" / spec.id
        record.built_from = target.emission(spec)
        if record.built_from in self.emission_errors:  # e.g. INT8 of a model whose layers all sit inside an If
            record.status = "error"
            record.reason = f"not built: its {record.built_from} model could not be made: " + \
                self.emission_errors[record.built_from]
            self.artifacts.append(record)
            self.reporter.finish(record)
            return
        crash = crashed_targets().get(spec.id)
        if crash:  # an earlier attempt of this command died natively in this target (supervisor.py)
            record.status, record.reason = "error", crash + (
                "; try graph_optimization_level: extended (or basic) for this target" if spec.runtime == "onnxruntime"
                else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "ERROR.txt").write_text(record.reason + "\n")
            record.files = self._files([folder / "ERROR.txt"])
            self.artifacts.append(record)
            self.reporter.finish(record)
            return
        calib = self.calib
        tolerance = self._tolerance(spec.precision, spec.tolerance)
        ctx = BuildContext(
            calibration=(lambda: (s.feeds for s in calib.calibration())) if calib else None,
            num_calibration=calib.num_calibration if calib else 0,
            exclude_ops=self.recipe.quantize.exclude_ops, exclude_nodes=self.recipe.quantize.exclude_nodes,
            inputs=self.inputs, dims={n: (r.min, r.opt if r.opt is not None else r.min, r.max)
                                      for n, r in self.recipe.dims.items()},
            explicit_dims=set(explicit_dim_ranges(self.recipe)), tolerance=tolerance.model_dump(exclude_none=True),
            cache_dir=default_cache_dir(), name=self.recipe.name)
        if not target.installed():
            self._not_installed(target, spec, record, folder, ctx)
            return
        self.reporter.start(f"build {spec.id}", target.summary)
        t0 = time.perf_counter()
        try:
            built = target.build(self.emissions[record.built_from], spec, folder, ctx)
            record.settings = built.settings
            record.files = self._files(folder / f for f in built.files)
            runner = target.open(folder, spec, built.settings)  # load back from disk: verify what ships
            record.effective = runner.effective
            actual = run_in_chunks(runner.run, self.feeds, self.chunk)
            gate = compare(self.reference_name, self.output_names, self.reference, actual, tolerance)
            record.accuracy, failures = accuracy_record(self.reference, actual, self.labels, tolerance)
            if failures:
                gate.failures += failures
                gate.passed = False
            record.verification = [gate, compare(f"onnx ({self.onnx_label})", self.output_names, self.onnx_outputs,
                                                 actual)]
            if gate.passed is False:
                record.status = "failed"
                record.reason = "accuracy gate failed: " + "; ".join(gate.failures)
        except ConvertctlError as exc:
            record.status, record.reason = "error", exc.message + (f" ({exc.hint})" if exc.hint else "")
        except Exception as exc:  # one target's failure must not hide the others' results
            record.status, record.reason = "error", f"{type(exc).__name__}: {exc}".strip()[:500]
            self.messages.append(f"{spec.id}: " + traceback.format_exc(limit=3).strip().splitlines()[-1])
        record.seconds = round(time.perf_counter() - t0, 3)
        self.artifacts.append(record)
        self.reporter.finish(record)

    def _not_installed(self, target, spec, record, folder: Path, ctx) -> None:
        """Status "skipped", never success; a target with a kit (TensorRT) leaves it, so the build can be done
        where the runtime is. A kit that cannot be made (bad Q/DQ, a dim without a range) is an error."""
        record.status = "skipped"
        record.reason = f"skipped: {target.name} not installed ({install_hint(target.extra)})"
        if target.kit is not None:
            self.reporter.start(f"kit {record.id}", f"{target.name} not installed: writing the build kit")
            t0 = time.perf_counter()
            try:
                built = target.kit(self.emissions[record.built_from], spec, folder, ctx)
                record.settings = built.settings
                record.files = self._files(folder / f for f in built.files)
                record.reason += (f"; no engine built: build kit in targets/{record.id}/ (trtexec commands for "
                                  f"{', '.join(built.settings.get('trtexec', {})) or 'no TensorRT version'}, "
                                  "recipe.yaml, kit.json)")
                if record.built_from != "fp32":
                    self._judge_kit_input(record, spec)
            except ConvertctlError as exc:
                record.status, record.reason = "error", exc.message + (f" ({exc.hint})" if exc.hint else "")
            record.seconds = round(time.perf_counter() - t0, 3)
        self.artifacts.append(record)
        self.reporter.finish(record)

    def _judge_kit_input(self, record, spec) -> None:
        """A kit ships a reduced-precision ONNX (the Q/DQ model) without an engine: that ONNX is judged against the
        source model by the precision's gate, in ONNX Runtime, so a kit built from a model that fails it fails
        the run (exit 4) instead of shipping quietly. The engine itself is not judged: it was not built."""
        from convertctl.data.batching import run_in_chunks
        from convertctl.evaluate.compare import compare
        from convertctl.targets.onnxruntime import run_session, session

        model = self.emissions[record.built_from]
        sess = session(model, level="extended")
        actual = run_in_chunks(lambda feeds: run_session(sess, feeds), self.feeds, self.chunk)
        gate = compare(f"{self.reference_name} (the kit's {record.built_from} ONNX in onnxruntime; no engine built)",
                       self.output_names, self.reference, actual, self._tolerance(spec.precision, spec.tolerance))
        record.verification = [gate]
        if gate.passed is False:
            record.status = "failed"
            record.reason = (f"the {record.built_from} ONNX this kit builds from fails the {spec.precision} gate: "
                             + "; ".join(gate.failures) + f" ({record.reason})")

    def _flag_unrewarding(self):
        """INT8/FP16 artifacts slower or larger than their FP32 counterpart, and an NNCF INT8 that failed where the
        Q/DQ model passed: a note in the manifest and terminal."""
        from convertctl.evaluate.int8_methods import int8_method_advice
        from convertctl.evaluate.worth import worth_findings

        onnx = self.dir / self.onnx.name
        size = sum(f.stat().st_size for f in [onnx, *onnx.parent.glob(onnx.name + ".data")] if f.is_file())
        self.messages += worth_findings(self.artifacts, self.latency_baseline, size or None)
        self.messages += int8_method_advice(self.artifacts)

    def _latency(self):
        """Time the baseline (the final FP32 ONNX in ONNX Runtime, default session options), then every artifact
        that ran (ok, or failed its gate), sequentially, each in a process of its own. Never changes the status."""
        from convertctl.evaluate.latency import BASELINE

        cfg = self.recipe.verify.latency
        todo = [a for a in self.artifacts if a.status in ("ok", "failed")]
        if not cfg.enabled or not todo:
            return
        try:
            batch, problem = self._latency_batch(cfg.batch)
            if problem:  # nothing can be timed with this batch: say so in every record
                self.latency_baseline = LatencyRecord(status="error", reason=problem, of=BASELINE, batch=batch)
                for a in todo:
                    a.latency = LatencyRecord(status="error", reason=problem, of=a.id, batch=batch)
                return
            specs = {spec.id: spec for spec in self.recipe.targets}
            common = {"samples": self.samples_path, "workdir": self.dir / "latency", "batch": batch,
                      "warmup": cfg.warmup, "runs": cfg.runs, "timeout_s": cfg.timeout_s,
                      "batch_axes": {spec.name: spec.batch_axis for spec in self.inputs}}
            # `_baseline` cannot be a target id (ids start with a letter or digit): no clash of file names
            self.latency_baseline = self._time("baseline", BASELINE, name="_baseline", model=self.dir / self.onnx.name,
                                               **common)
            for a in todo:
                spec = specs[a.id]
                a.latency = self._time(a.id, a.id, name=a.id, runtime=a.runtime, folder=self.dir / "targets" / a.id,
                                       spec=spec.model_dump(mode="json"), settings=a.settings, **common)
        except Exception as exc:  # a latency problem must never cost the run its result
            self.messages.append(f"latency: {type(exc).__name__}: {exc}".strip()[:500])

    def _time(self, label: str, of: str, **kwargs) -> LatencyRecord:
        from convertctl.evaluate.latency import measure_latency, with_speedup

        stage = f"latency {label}"
        self.reporter.start(stage, f"{of}, batch {kwargs['batch']}, {kwargs['warmup']} warm-up + {kwargs['runs']} "
                                   "timed runs, own process")
        t0 = time.perf_counter()
        record = with_speedup(measure_latency(of, **kwargs), self.latency_baseline)
        self.reporter.measured(stage, record, round(time.perf_counter() - t0, 3))
        return record

    def _latency_batch(self, batch: int) -> tuple[int, str | None]:
        """The batch to time (a fixed first dim wins over `verify.latency.batch`) and why it cannot fit, if so."""
        from convertctl.data.dims import fixed_batch_sizes
        from convertctl.recipe import latency_batch_problem

        if all(spec.batch_axis is None for spec in self.inputs):
            return 1, None  # nothing is batched: every call gets the inputs as given
        fixed = fixed_batch_sizes(self.inputs, self.recipe.dims)
        if len(set(fixed.values())) > 1:
            return batch, f"the inputs have different fixed batch dims ({fixed}): no batch fits them all"
        if fixed and batch not in fixed.values():
            name, first = next(iter(fixed.items()))
            spec = next(s for s in self.inputs if s.name == name)
            what = "first dim" if spec.batch_axis == 0 else f"batch dim (axis {spec.batch_axis})"
            self.messages.append(f"verify.latency.batch {batch} changed to {first}: input {name!r} has a fixed "
                                 f"{what} of {first}")
            batch = first
        return batch, latency_batch_problem(self.inputs, self.recipe.dims, batch)

    # -- the run ---------------------------------------------------------------------------------
    def _preflight(self):
        """Cheap checks of every path the run needs, before anything is written."""
        from convertctl.errors import SourceModelError, UsageError

        src = self.recipe.source
        if src.framework in ("paddle", "tensorflow"):
            from convertctl.frontends.formats import detect
            from convertctl.frontends.interpreters import resolve

            found = detect(src.path, src.format)  # a wrong folder or a missing .pdiparams: before anything is written
            resolve(found.framework, found.format, self.recipe.export.python)  # the framework must be there
        elif src.path is not None:
            from convertctl.model import require_regular_file

            require_regular_file(src.path)
        if src.framework == "onnx":  # external data outside the model's folder: refused before anything is written
            from convertctl.model import external_data_files

            external_data_files(src.path)
        if src.factory:
            target = src.factory.rpartition(":")[0]
            if target.endswith(".py") and not Path(target).is_file():
                raise SourceModelError(f"factory file not found: {target}")
        if src.framework == "onnx" and "build" in self.recipe.stages:  # before anything is written
            from convertctl.quantize.preflight import check_quantizable

            check_quantizable(src.path, {t.precision for t in self.recipe.targets})
        images = self.recipe.samples.images
        if images is not None and not images.is_dir():
            raise UsageError(f"image folder not found: {images}", hint="run `make data`, or fix samples.images")
        if src.framework == "onnx" or self.recipe.inputs:  # dims without a size stop the run before anything is written
            if src.framework == "onnx":
                try:
                    self._onnx_io = _onnx_inputs(src.path)
                except ConvertctlError:
                    return  # reading the inputs says what is wrong with the model, with the partial output kept
            self._resolve_inputs()

    def execute(self) -> Manifest:
        from convertctl import supervisor
        from convertctl.processes import Interrupted

        started, t0 = _now(), time.perf_counter()
        self._preflight()
        self.dir = self.out.open(protected=self._read_paths())
        supervisor.note(stage="start", staging=self.out.staging, output=self.out.final, protected=self.out.protected)
        try:
            return self._stages(started, t0)
        except Interrupted:
            self.out.discard()  # the user stopped it: nothing to debug, nothing left behind
            raise
        except BaseException as exc:
            summary = exc.message if isinstance(exc, ConvertctlError) else f"{type(exc).__name__}: {exc}"
            where = self.out.abandon(summary + "\n\n" + traceback.format_exc())
            if isinstance(exc, ConvertctlError) and where is not None:
                # the staging folder is gone: point every path at the kept partial folder
                exc.message = exc.message.replace(str(self.out.staging), str(where))
                hint = (exc.hint or "").replace(str(self.out.staging), str(where))
                exc.hint = (hint + "; " if hint else "") + f"partial output kept in {where}"
            raise

    def _stages(self, started: str, t0: float) -> Manifest:
        from convertctl.processes import raise_if_interrupted as checkpoint

        try:
            self._open_cache()
            self._samples()
            checkpoint()
            self._cached("export", self._export_key, self._export, ["export"],
                         paths=["onnx"], arrays=["reference", "onnx_outputs"], values=["onnx_label", "reference_name",
                                                                                         "output_names"])
            if "check" in self.recipe.stages:
                checkpoint()
                self._cached("check", self._check_key, self._check, ["check"], values=["unsupported"])
            if "optimize" in self.recipe.stages:
                checkpoint()
                self._cached("optimize", self._onnx_key, self._optimize, ["optimize"],
                             paths=["onnx"], arrays=["onnx_outputs"], values=["onnx_label"])
            if "build" in self.recipe.stages:
                checkpoint()
                self._cached("quantize", self._quantize_key, self._quantize, ["quantize"], path_maps=["emissions"],
                             values=["emission_errors"])
            self._write_onnx_result()
            if "build" in self.recipe.stages:
                for spec in self.recipe.targets:
                    checkpoint()
                    self._cached(f"build/{spec.id}", lambda spec=spec: self._build_key(spec),
                                 lambda spec=spec: self._build_target(spec), [f"targets/{spec.id}"])
                self._latency()
                self._flag_unrewarding()
            checkpoint()
        except _GateFailed as gate:
            self.messages.append(str(gate))
            return self._finish(started, t0, gate_failed=True)
        except _Unsupported as stop:  # check.fail_fast: no target is built, the record says why
            for spec in self.recipe.targets:
                record = ArtifactRecord(id=spec.id, runtime=spec.runtime, precision=spec.precision, status="skipped",
                                        reason="not built: check.fail_fast stopped the run after the check")
                if spec.runtime in self.unsupported:
                    record.status, record.reason = "error", self.unsupported[spec.runtime]
                self.artifacts.append(record)
                self.reporter.finish(record)
            self.messages.append(str(stop))
            return self._finish(started, t0, unsupported=True)
        return self._finish(started, t0)

    def _read_paths(self) -> list[Path]:
        """What this run reads, which its output folder may not be or contain: the model and its folder,
        the factory file, the data folders, the recipe's folder and the current directory."""
        src, paths = self.recipe.source, [Path.cwd()]
        if src.path is not None:
            paths += [src.path, src.path.parent]
        if src.factory and src.factory.rpartition(":")[0].endswith(".py"):
            factory = Path(src.factory.rpartition(":")[0])
            paths += [factory, factory.parent]
        paths.append(self.recipe.samples.images)
        if self.recipe.calibration is not None:
            paths += [self.recipe.calibration.data, self.recipe.calibration.labels]
        if self.recipe_path is not None:
            paths.append(Path(self.recipe_path).absolute().parent)
        return [p for p in paths if isinstance(p, Path)]

    def _write_onnx_result(self):
        """The final ONNX (after optimize) as `model.onnx` at the top of the output folder."""
        from convertctl.model import copy_model

        copy_model(self.onnx, self.dir, Path(self.onnx).name)  # keeps external data in its sub-folders

    def _finish(self, started: str, t0: float, gate_failed: bool = False, unsupported: bool = False) -> Manifest:
        from convertctl.recipe import format_recipe_content
        from convertctl.report.environment import environment
        from convertctl.report.report_json import write_reports

        statuses = [a.status for a in self.artifacts]
        if unsupported:  # check.fail_fast stopped the run: nothing was built
            status, code = "error", EXIT_UNSUPPORTED_OPERATOR
        elif "error" in statuses:  # an error outranks a gate: the run did not finish what it was asked
            status, code = "error", EXIT_INTERNAL
        elif gate_failed or "failed" in statuses:
            status, code = "failed", EXIT_ACCURACY_GATE
        elif "skipped" in statuses:
            status, code = "partial", EXIT_OK
        else:
            status, code = "ok", EXIT_OK
        manifest = Manifest(
            tool={"name": "convertctl", "version": __version__},
            status=status,
            exit_code=code,
            started_at=started,
            finished_at=_now(),
            seconds=round(time.perf_counter() - t0, 3),
            recipe=RecipeRecord(name=self.recipe.name, path=str(self.recipe_path) if self.recipe_path else None,
                                sha256=self.recipe_sha, content=format_recipe_content(self.recipe)),
            environment=environment(),
            samples=self.samples_record,
            stages=self.stages,
            artifacts=self.artifacts,
            latency_baseline=self.latency_baseline,
            messages=self.messages,
        )
        manifest.files = self._files(sorted(p for p in self.dir.iterdir() if p.is_file() and p.name != MARKER))
        write_reports(manifest, self.dir)  # report.json, report.md (+ summary.md), report.html
        # The manifest is written last: its presence marks a finished folder.
        (self.dir / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n")
        self.out.commit()
        from convertctl.report.ci_summary import append_step_summary

        append_step_summary(self.out.final / "summary.md")  # a CI job page, when GITHUB_STEP_SUMMARY is set
        return manifest


class _GateFailed(Exception):
    """A verification failed in a stage whose output everything after depends on: stop, but keep the record."""


class _Unsupported(Exception):
    """The check found a target runtime that cannot work and the recipe says `check: {fail_fast: true}`."""


def _node_text(n) -> str:
    """`ai.onnx.ml.Scaler (scale0): <reason>` for a node verdict; the reason alone for a model-level one."""
    op = f"{n.domain}.{n.op_type}" if n.domain else n.op_type
    what = f"{op} ({n.node})" if n.node else op
    return f"{what}: {n.reason}" if what and n.reason else (what or n.reason or "see check/check.json")


def run(recipe, recipe_sha: str, recipe_path: Path | None = None, output: Path | None = None, reporter=None) -> Manifest:
    return Run(recipe, recipe_sha, recipe_path, output, reporter).execute()


def load_manifest(path: Path) -> Manifest:
    return Manifest.model_validate(json.loads(Path(path).read_text()))
