"""The corpus that proves `convertctl check` right: ONNX's own backend node tests, the real runtimes' verdicts
on each, and `check_model`'s predictions for them.

Corpus. The onnx wheel (1.23) ships the *generators* of its backend node tests
(`onnx/backend/test/case/node/*.py`, collected by `onnx.backend.test.case.node.collect_testcases()`), not
the generated `data/node/*/model.onnx` folders of the source repository; `build()` runs the generators and
writes each case in the repository's layout (`<name>/model.onnx`, `<name>/test_data_set_0/input_<j>.pb`,
`output_<j>.pb`) under `benchmarks/_work/check_corpus/node/`. Of the 1884 cases, 1462 are single-node
models; the rest are mostly `*_expanded` variants (a function op expanded into its body, 2-30 nodes).
The small model tests the wheel does ship as files (`data/simple`, `data/pytorch-converted`,
`data/pytorch-operator`) are added as a second suite, read in place. Every case whose model.onnx loads
with `onnx.load` is used; the others are counted with their reason.

Ground truth, per model and runtime, each in its own process (a fork of a parent that has imported
onnx, onnxruntime and openvino, so a native crash or hang costs one child; 60 s timeout):
- ONNX Runtime: `InferenceSession(model.onnx, providers=["CPUExecutionProvider"])` with default
  optimization (session level), then `run` on the test's own input_<j>.pb tensors (run level).
- OpenVINO: `ov.convert_model(model.onnx)` and `Core().compile_model(model, "CPU")` (session level: the
  path convertctl's OpenVINO target takes, targets/openvino/target.py), then an inference on the same inputs (run
  level). The plain `Core().read_model` + `compile_model` path is recorded alongside ("read_session"):
  convert_model also runs OpenVINO's MOC transformations, which can fail where read_model does not.
Threads are limited to one per child (two children at a time); thread counts do not change what loads.
Outputs are compared with the test's expected outputs for information only (rtol 1e-3, atol 1e-5;
OpenVINO compiled a second time with INFERENCE_PRECISION_HINT f32 for that, since this CPU's default is
bf16). Inputs of types numpy lacks (bfloat16, float8, int4/uint4/float4, int2/uint2) are fed as OrtValues /
ov.Tensors of the raw bytes; a run the harness cannot feed (e.g. an optional input to OpenVINO) is "not
judged" and left out of the run-level agreement.

Prediction: `convertctl.checks.run_check.check_model(model.onnx, ["onnxruntime", "openvino"])` in its own
child per model; a target's verdict "supported"/"conditional" predicts that it works, "unsupported" that it
fails, "unknown" (or a crash of the checker) counts as a miss.

    .venv/bin/python benchmarks/check_corpus.py build           # write the corpus (about 10 s)
    .venv/bin/python benchmarks/check_corpus.py truth           # ground truth -> _work/check_corpus/truth.json
    .venv/bin/python benchmarks/check_corpus.py predict         # check_model -> _work/check_corpus/predict.json
    .venv/bin/python benchmarks/check_corpus.py report          # agreement and disagreements (Markdown)
    options: --jobs N (default 2), --limit N (first N models, for a smoke test), --fresh (ignore caches)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from common import WORK

CORPUS = WORK / "check_corpus"
NODE_DIR = CORPUS / "node"
GENERATED_DIR = CORPUS / "generated"
INDEX = CORPUS / "index.json"
TRUTH = CORPUS / "truth.json"
PREDICT = CORPUS / "predict.json"
TARGETS = ("onnxruntime", "openvino")
TIMEOUT_S = 60.0
PREDICT_TIMEOUT_S = 120.0
SHIPPED_SUITES = ("simple", "pytorch-converted", "pytorch-operator")


_BOILERPLATE = re.compile(
    r"Exception from src/[\w/.]+:\d+:|Check 'false' failed at src/[\w/.]+:\d+:|"
    r"FrontEnd API failed with OpConversionFailure:|\[ONNXRuntimeError\] : \d+ : \w+ : |"
    r"/onnxruntime_src/\S+:\d+ [^(\n]*\(.*?\)(?: const)? "  # a C++ file:line and function signature
)


def one_line(text: str, limit: int = 600) -> str:
    """An error message on one line: its lines joined, runtime boilerplate dropped, spaces squeezed."""
    lines = [ln.strip() for ln in _BOILERPLATE.sub("", str(text)).splitlines() if ln.strip()]
    out = " | ".join(lines)
    out = " ".join(out.split())
    return out if len(out) <= limit else out[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------- corpus


def _write_case(case, folder: Path) -> None:
    """One node test case in the layout of onnx's `data/node/<name>/` (cmd_tools.generate_data)."""
    from onnx import TensorProto, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = folder / f"test_data_set_{i}"
        ds.mkdir(exist_ok=True)
        for kind, values, infos in (("input", inputs, case.model.graph.input),
                                    ("output", outputs, case.model.graph.output)):
            for j, value in enumerate(values):
                t = infos[j].type
                name = infos[j].name
                if t.HasField("map_type"):
                    proto = numpy_helper.from_dict(value, name)
                elif t.HasField("sequence_type"):
                    proto = numpy_helper.from_list(value, name)
                elif t.HasField("optional_type"):
                    proto = numpy_helper.from_optional(value, name)
                elif isinstance(value, TensorProto):
                    proto = value
                else:
                    proto = numpy_helper.from_array(value, name)
                (ds / f"{kind}_{j}.pb").write_bytes(proto.SerializeToString())


def _describe(model_path: Path) -> dict:
    """Load one model (the corpus criterion) and describe it: ops, opsets, IR, node count, checker."""
    import onnx

    model = onnx.load(str(model_path))
    ops = Counter((n.domain if n.domain not in ("", "ai.onnx") else "", n.op_type) for n in model.graph.node)
    opsets = {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in model.opset_import}
    inner: set[str] = set()

    def walk(graph):
        for n in graph.node:
            for a in n.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    inner.update(m.op_type for m in g.node)
                    walk(g)

    walk(model.graph)
    try:
        onnx.checker.check_model(model)
        checker = None
    except Exception as e:  # noqa: BLE001
        checker = one_line(e, 200)
    return {
        "ops": ["/".join(filter(None, k)) for k in sorted(ops)],
        "op_counts": {"/".join(filter(None, k)): v for k, v in sorted(ops.items())},
        "subgraph_ops": sorted(inner),  # operators inside If/Loop/Scan bodies
        "nodes": len(model.graph.node),
        "opset": opsets.get("", None),
        "opsets": opsets,
        "ir_version": model.ir_version,
        "checker_error": checker,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest()[:16],
    }


def build(limit: int | None = None) -> dict:
    """Generate the node test cases, add the shipped model tests, describe every model; write index.json."""
    import warnings

    import onnx
    import onnx.backend.test.case.node as node_cases

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases(None)
    entries, skipped = [], []
    for case in cases[:limit]:
        folder = NODE_DIR / case.name
        try:
            _write_case(case, folder)
        except Exception as e:  # noqa: BLE001
            skipped.append({"id": f"node/{case.name}", "reason": "could not write: " + one_line(e, 200)})
            continue
        entries.append({"id": f"node/{case.name}", "suite": "node", "dir": str(folder)})
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    for suite in SHIPPED_SUITES:
        for folder in sorted((data / suite).iterdir()):
            if (folder / "model.onnx").exists():
                entries.append({"id": f"{suite}/{folder.name}", "suite": suite, "dir": str(folder)})
    for f in sorted((data / "light").glob("*.onnx")):  # real architectures (weights left out), no input data
        entries.append({"id": f"light/{f.stem}", "suite": "light", "dir": str(f.parent), "path": str(f)})
    import check_generated

    generated, gen_skipped = check_generated.build(GENERATED_DIR)
    entries += generated
    skipped += gen_skipped
    if limit:
        entries = entries[:limit]
    used = []
    for e in entries:
        e.setdefault("path", str(Path(e["dir"]) / "model.onnx"))
        try:
            e.update(_describe(Path(e["path"])))
            used.append(e)
        except Exception as ex:  # noqa: BLE001
            skipped.append({"id": e["id"], "reason": "onnx.load: " + one_line(ex, 200)})
    index = {
        "onnx_version": onnx.__version__,
        "generated_cases": len(cases),
        "models": used,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    CORPUS.mkdir(parents=True, exist_ok=True)
    INDEX.write_text(json.dumps(index, indent=1) + "\n")
    return index


def load_index() -> dict:
    return json.loads(INDEX.read_text())


# ------------------------------------------------------------------------------------ test data


def _read_inputs(folder: Path, graph_inputs) -> dict:
    """The test's data set 0 as feeds {input name: value}: arrays, lists (sequences), None (empty optional)."""
    import onnx
    from onnx import numpy_helper

    feeds = {}
    ds = folder / "test_data_set_0"
    if not ds.is_dir():
        raise FileNotFoundError("the test has no input data")
    for j, info in enumerate(graph_inputs):
        f = ds / f"input_{j}.pb"
        if not f.exists():
            continue
        t = info.type
        raw = f.read_bytes()
        if t.HasField("sequence_type"):
            p = onnx.SequenceProto()
            p.ParseFromString(raw)
            feeds[info.name] = numpy_helper.to_list(p)
        elif t.HasField("optional_type"):
            p = onnx.OptionalProto()
            p.ParseFromString(raw)
            feeds[info.name] = numpy_helper.to_optional(p)
        elif t.HasField("map_type"):
            p = onnx.MapProto()
            p.ParseFromString(raw)
            feeds[info.name] = numpy_helper.to_dict(p)
        else:
            p = onnx.TensorProto()
            p.ParseFromString(raw)
            feeds[info.name] = numpy_helper.to_array(p)
    return feeds


def _expected_outputs(folder: Path, graph_outputs) -> list:
    import onnx
    from onnx import numpy_helper

    out = []
    for j, info in enumerate(graph_outputs):
        f = folder / "test_data_set_0" / f"output_{j}.pb"
        if not f.exists() or not info.type.HasField("tensor_type"):
            out.append(None)
            continue
        p = onnx.TensorProto()
        p.ParseFromString(f.read_bytes())
        out.append(numpy_helper.to_array(p))
    return out


def _matches(expected: list, got: list) -> bool | None:
    """Outputs equal to the test's expected ones (rtol 1e-3, atol 1e-5), None where not comparable."""
    import numpy as np

    verdicts = []
    for e, g in zip(expected, got, strict=False):
        if e is None or g is None:
            continue
        try:
            e, g = np.asarray(e), np.asarray(g)
            if e.dtype != g.dtype and "V" in (e.dtype.kind, g.dtype.kind):
                continue  # bfloat16/float8/int4 (ml_dtypes) against the runtime's own representation
            if e.shape != g.shape:
                verdicts.append(False)
            elif e.dtype.kind in "fc" or g.dtype.kind in "fc":
                verdicts.append(bool(np.allclose(e.astype(np.float64), g.astype(np.float64), rtol=1e-3, atol=1e-5,
                                                 equal_nan=True)))
            else:
                verdicts.append(bool(np.array_equal(e, g)))
        except Exception:  # noqa: BLE001
            continue
    return all(verdicts) if verdicts else None


# ---------------------------------------------------------------------------------- ground truth


# ONNX element types that numpy has no native dtype for (onnx gives ml_dtypes arrays for them).
_PACKED = {21: 4, 22: 4, 23: 4, 25: 2, 26: 2}  # UINT4, INT4, FLOAT4E2M1, UINT2, INT2: bits per element
_SPECIAL = {16, 17, 18, 19, 20, 24, 27, 28, *_PACKED}
_OV_TYPES = {16: "bf16", 17: "f8e4m3", 19: "f8e5m2", 21: "u4", 22: "i4", 23: "f4e2m1", 24: "f8e8m0", 25: "u2",
             26: "i2"}


def _raw(a, elem_type: int, packed: bool = True):
    """The bytes of an ml_dtypes array as a plain uint8/uint16 array (sub-byte types packed, first element in
    the lowest bits, unless packed=False)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    bits = _PACKED.get(elem_type)
    if bits and packed:
        per = 8 // bits
        b = a.view(np.uint8).ravel() & ((1 << bits) - 1)
        b = np.concatenate([b, np.zeros(-b.size % per, np.uint8)]).reshape(-1, per)
        return np.bitwise_or.reduce(b << (np.arange(per, dtype=np.uint8) * bits), axis=1).astype(np.uint8)
    return a.view(np.uint16 if a.dtype.itemsize == 2 else np.uint8)


def _elem_types(infos) -> dict:
    return {i.name: i.type.tensor_type.elem_type for i in infos if i.type.HasField("tensor_type")}


def truth_onnxruntime(model_path: str) -> dict:
    import numpy as np
    import onnx
    import onnxruntime as ort

    path = Path(model_path)
    folder = path.parent
    res = {"session": False, "run": None}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        res["session"] = True
    except Exception as e:  # noqa: BLE001
        res["session_error"] = one_line(e)
        return res
    model = onnx.load(str(path))
    try:
        feeds = _read_inputs(folder, model.graph.input)
        names = {i.name for i in sess.get_inputs()}
        feeds = {k: v for k, v in feeds.items() if k in names}
        types = _elem_types(model.graph.input)
        special = any(t in _SPECIAL for t in [*types.values(), *_elem_types(model.graph.output).values()])
        all_tensors = special and all(isinstance(v, np.ndarray) for v in feeds.values()) and all(
            o.type.HasField("tensor_type") for o in model.graph.output)
        if all_tensors:  # OrtValues: the only way to feed and fetch bfloat16, float8, int4, float4
            feeds = {k: (ort.OrtValue.ortvalue_from_numpy_with_onnx_type(_raw(v, types[k], packed=False), types[k])
                         if types.get(k) in _SPECIAL else ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)))
                     for k, v in feeds.items()}
    except Exception as e:  # noqa: BLE001
        res["run_error"] = "harness: " + one_line(e)
        return res
    try:
        if all_tensors:
            got = sess.run_with_ort_values(None, feeds)
        else:
            got = sess.run(None, feeds)
        res["run"] = True
    except Exception as e:  # noqa: BLE001
        res["run"] = False
        res["run_error"] = one_line(e)
        return res
    arrays = []
    for g in got:
        try:
            arrays.append(g.numpy() if isinstance(g, ort.OrtValue) else g)
        except Exception:  # noqa: BLE001  (no numpy type: not compared)
            arrays.append(None)
    by_name = dict(zip([o.name for o in sess.get_outputs()], arrays, strict=False))
    res["outputs_match"] = None if any(t in _PACKED for t in types.values()) else _matches(
        _expected_outputs(folder, model.graph.output), [by_name.get(o.name) for o in model.graph.output])
    return res  # (4-bit inputs: how ORT's Python API lays them out is not settled here, so not compared)


def _ov_request(compiled, model, feeds) -> dict:
    """{port: tensor} from the test's inputs: by tensor name, else by position (OpenVINO may rename a
    Parameter after the output of an Identity it folded)."""
    import numpy as np
    import openvino as ov

    types = _elem_types(model.graph.input)
    given = [i.name for i in model.graph.input if i.name in feeds]
    request = {}
    for k, port in enumerate(compiled.inputs):
        names = port.get_names()
        name = next((n for n in names if n in feeds), None)
        if name is None and len(compiled.inputs) == len(given):
            name = given[k]
        if name is None:
            raise KeyError(f"no test input for OpenVINO input {sorted(names)}")
        value = feeds[name]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"input {name} is a {type(value).__name__}, not a tensor")
        et = types.get(name)
        if et in _OV_TYPES:
            request[port] = ov.Tensor(np.ascontiguousarray(_raw(value, et)), ov.Shape(list(value.shape)),
                                      getattr(ov.Type, _OV_TYPES[et]))
        elif value.dtype == object:  # strings: OpenVINO takes numpy str arrays, not object arrays
            request[port] = value.astype(str)
        else:
            request[port] = np.array(value, copy=True)  # a writeable copy
    return request


def truth_openvino(model_path: str) -> dict:
    """convertctl's own OpenVINO path (targets/openvino/target.py): `ov.convert_model` then `compile_model` on CPU
    ("session"); the plain `Core.read_model` path alongside ("read_session"); an inference on the test's
    inputs with the convert_model one ("run")."""
    import onnx
    import openvino as ov

    path = Path(model_path)
    folder = path.parent
    res = {"convert": False, "session": False, "read": False, "read_session": False, "run": None}
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": 1}
    try:
        read = core.read_model(str(path))
        res["read"] = True
        core.compile_model(read, "CPU", config)
        res["read_session"] = True
    except Exception as e:  # noqa: BLE001
        res["read_session_error"] = ("compile_model: " if res["read"] else "read_model: ") + one_line(e)
    try:
        converted = ov.convert_model(str(path))
        res["convert"] = True
    except Exception as e:  # noqa: BLE001
        res["session_error"] = "convert_model: " + one_line(e)
        return res
    try:
        compiled = core.compile_model(converted, "CPU", config)
        res["session"] = True
    except Exception as e:  # noqa: BLE001
        res["session_error"] = "compile_model: " + one_line(e)
        return res
    model = onnx.load(str(path))
    try:
        feeds = _read_inputs(folder, model.graph.input)
        request = _ov_request(compiled, model, feeds)
    except Exception as e:  # noqa: BLE001
        res["run_error"] = "harness: " + one_line(e)
        return res
    try:
        compiled(request)
        res["run"] = True
    except Exception as e:  # noqa: BLE001
        res["run"] = False
        res["run_error"] = one_line(e)
        return res
    # Outputs (information only) from an f32-precision compile: the default CPU precision on this machine
    # (AVX-512 BF16) is bf16, which alone would miss the tests' tolerances.
    try:
        exact = core.compile_model(ov.convert_model(str(path)), "CPU",
                                   {**config, "INFERENCE_PRECISION_HINT": "f32"})
        result = exact(_ov_request(exact, model, feeds))
        got = []
        for o in model.graph.output:
            port = next((p for p in exact.outputs if o.name in p.get_names()), None)
            got.append(None if port is None else result[port])
        if all(g is None for g in got) and len(exact.outputs) == len(model.graph.output):
            got = [result[p] for p in exact.outputs]
        res["outputs_match"] = _matches(_expected_outputs(folder, model.graph.output), got)
    except Exception:  # noqa: BLE001
        res["outputs_match"] = None
    return res


def predict_one(path: str) -> dict:
    from convertctl.checks.run_check import check_model

    t0 = time.perf_counter()
    report = check_model(Path(path), list(TARGETS))
    out = {"seconds": round(time.perf_counter() - t0, 3), "targets": {}}
    for t in report.targets:
        out["targets"][t.target] = {
            "verdict": t.verdict,
            "judged_by": t.judged_by,
            "reasons": [one_line(f"{n.op_type}{'@' + n.node if n.node else ''} {n.verdict}: {n.reason}", 300)
                        for n in sorted(t.nodes, key=lambda n: n.verdict != "unsupported")][:6],
            "unsupported_nodes": sum(bool(n.node) and n.verdict == "unsupported" for n in t.nodes),
            "unsupported_model_level": sum(not n.node and n.verdict == "unsupported" for n in t.nodes),
        }
    out["findings"] = [one_line(f"{n.op_type or 'model'} {n.verdict}: {n.reason}", 300) for n in report.findings][:6]
    return out


JOBS = {"onnxruntime": truth_onnxruntime, "openvino": truth_openvino, "predict": predict_one}


# ------------------------------------------------------------------------- forked, isolated children


def _child(kind: str, arg: str, out_file: str, log_file: str) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 0
    try:
        result = JOBS[kind](arg)
    except BaseException as e:  # noqa: BLE001
        result = {"harness_error": one_line(f"{type(e).__name__}: {e}"),
                  "traceback": traceback.format_exc()[-1500:]}
        code = 3
    try:
        Path(out_file).write_text(json.dumps(result, default=str))
    finally:
        os._exit(code)


def run_isolated(jobs: list[tuple[str, str, str]], n_jobs: int = 2, timeout: float = TIMEOUT_S,
                 progress: str = "") -> dict[str, dict]:
    """Run (key, kind, arg) jobs, each in a forked child, n_jobs at a time; a child that crashes or times
    out yields {"crash": ...}. The parent has imported the runtimes already, so a fork costs milliseconds."""
    tmp = Path(tempfile.mkdtemp(prefix="check_corpus_", dir=WORK))
    results: dict[str, dict] = {}
    pending = list(jobs)
    running: dict[int, tuple[str, float, Path, Path]] = {}
    done = 0
    t_start = time.perf_counter()
    while pending or running:
        while pending and len(running) < n_jobs:
            key, kind, arg = pending.pop(0)
            tag = hashlib.sha1(key.encode()).hexdigest()[:12]
            out_file, log_file = tmp / f"{tag}.json", tmp / f"{tag}.log"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(kind, arg, str(out_file), str(log_file))
            running[pid] = (key, time.perf_counter(), out_file, log_file)
        pid, status = 0, 0
        for p in list(running):  # only our own children (a library may have children of its own)
            pid, status = os.waitpid(p, os.WNOHANG)
            if pid:
                break
        if pid == 0:
            now = time.perf_counter()
            for p, (_key, t0, _, _) in list(running.items()):
                if now - t0 > timeout:
                    os.kill(p, signal.SIGKILL)
            time.sleep(0.005)
            continue
        key, t0, out_file, log_file = running.pop(pid)
        wall = time.perf_counter() - t0
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        if out_file.exists():
            res = json.loads(out_file.read_text())
        else:
            sig = -os.waitstatus_to_exitcode(status) if os.WIFSIGNALED(status) else None
            what = ("timeout" if wall > timeout else f"killed by signal {sig}") if sig else \
                f"exit {os.waitstatus_to_exitcode(status)}"
            res = {"crash": f"{what} after {wall:.1f} s" + (f": {one_line(log[-600:], 300)}" if log.strip() else "")}
        res["wall_s"] = round(wall, 3)
        results[key] = res
        for f in (out_file, log_file):
            f.unlink(missing_ok=True)
        done += 1
        if progress and (done % 200 == 0 or done == len(jobs)):
            print(f"[check] {progress}: {done}/{len(jobs)} ({time.perf_counter() - t_start:.0f} s)",
                  file=sys.stderr, flush=True)
    tmp.rmdir()
    return results


def versions() -> dict:
    import importlib.metadata as md

    return {d: md.version(d) for d in ("onnx", "onnxruntime", "openvino")}


def truth(index: dict, n_jobs: int = 2, fresh: bool = False) -> dict:
    """Ground truth for every model of the index; reuses truth.json where runtime versions and model hashes
    match (unless fresh)."""
    import onnx  # noqa: F401  (imported before the forks)
    import onnxruntime  # noqa: F401
    import openvino  # noqa: F401
    import openvino.tools.ovc  # noqa: F401  (ov.convert_model's module)

    cached = {}
    if TRUTH.exists() and not fresh:
        old = json.loads(TRUTH.read_text())
        if old.get("versions") == versions():
            cached = old["models"]
    models = {}
    jobs = []
    for m in index["models"]:
        c = cached.get(m["id"])
        if c and c.get("sha256") == m["sha256"]:
            models[m["id"]] = c
            continue
        jobs += [(f"{m['id']}|{rt}", rt, m["path"]) for rt in TARGETS]
    t0 = time.perf_counter()
    res = run_isolated(jobs, n_jobs, TIMEOUT_S, progress="ground truth") if jobs else {}
    for m in index["models"]:
        if m["id"] in models:
            continue
        models[m["id"]] = {"sha256": m["sha256"], **{rt: res[f"{m['id']}|{rt}"] for rt in TARGETS}}
    out = {"versions": versions(), "seconds_this_run": round(time.perf_counter() - t0, 1),
           "computed": len(jobs) // len(TARGETS), "reused": len(index["models"]) - len(jobs) // len(TARGETS),
           "models": models}
    TRUTH.write_text(json.dumps(out, indent=1) + "\n")
    return out


def check_model_status() -> str | None:
    """None when `check_model` can be imported, else why not."""
    try:
        from convertctl.checks.run_check import check_model  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return one_line(f"{type(e).__name__}: {e}")
    return None


def predict(index: dict, n_jobs: int = 2) -> dict:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import openvino  # noqa: F401

    from convertctl.checks.run_check import check_model  # noqa: F401  (imported before the forks)

    jobs = [(m["id"], "predict", m["path"]) for m in index["models"]]
    t0 = time.perf_counter()
    res = run_isolated(jobs, n_jobs, PREDICT_TIMEOUT_S, progress="check_model")
    out = {"seconds": round(time.perf_counter() - t0, 1), "models": res}
    PREDICT.write_text(json.dumps(out, indent=1) + "\n")
    return out


# ------------------------------------------------------------------------------------- agreement


def _actual(t: dict, level: str) -> str | None:
    """'works' / 'fails' of one runtime at 'session' or 'run' level; None if not judged (harness problem)."""
    if "crash" in t:
        return "fails"
    if "harness_error" in t:
        return None
    if level in ("session", "read_session"):
        return "works" if t.get(level) else "fails"
    if not t.get("session"):
        return "fails"
    if t.get("run") is None:
        return None
    return "works" if t["run"] else "fails"


def _error(t: dict, level: str) -> str:
    if "crash" in t:
        return "CRASH " + t["crash"]
    if "harness_error" in t:
        return "harness: " + t["harness_error"]
    if level == "read_session":
        return t.get("read_session_error", "")
    if not t.get("session"):
        return t.get("session_error", "")
    if level == "run":
        return t.get("run_error", "")
    return ""


def _predicted(p: dict | None, target: str) -> tuple[str, str]:
    """('works'|'fails'|'unknown'|'error', verdict text)."""
    if p is None:
        return "error", "no prediction"
    if "crash" in p or "harness_error" in p:
        return "error", "check_model: " + (p.get("crash") or p.get("harness_error"))
    t = p["targets"].get(target)
    if t is None:
        return "error", f"no {target} report"
    v = t["verdict"]
    kind = {"supported": "works", "conditional": "works", "unsupported": "fails"}.get(v, "unknown")
    return kind, v + (": " + " / ".join(t["reasons"]) if t["reasons"] else "")


def agreement(index: dict, truth_data: dict, predict_data: dict | None) -> dict:
    models = index["models"]
    out: dict = {"models": len(models), "targets": {}}
    for rt in TARGETS:
        stats: dict = {}
        for level in ("session", "run", *(("read_session",) if rt == "openvino" else ())):
            actual = {m["id"]: _actual(truth_data["models"][m["id"]][rt], level) for m in models}
            judged = [i for i, a in actual.items() if a is not None]
            s = {
                "judged": len(judged),
                "not_judged": len(models) - len(judged),
                "works": sum(actual[i] == "works" for i in judged),
                "fails": sum(actual[i] == "fails" for i in judged),
            }
            if predict_data is not None:
                agree, dis = 0, []
                by_id = {m["id"]: m for m in models}
                for i in judged:
                    kind, text = _predicted(predict_data["models"].get(i), rt)
                    if kind == actual[i]:
                        agree += 1
                        continue
                    m = by_id[i]
                    dis.append({"model": i, "ops": m["ops"], "subgraph_ops": m.get("subgraph_ops", []), "opset": m["opset"], "predicted": kind,
                                "checker": one_line(text, 500), "actual": actual[i],
                                "runtime": _error(truth_data["models"][i][rt], level)})
                s.update({"agree": agree, "agreement": round(agree / len(judged), 4) if judged else None,
                          "disagreements": dis,
                          "by_kind": dict(Counter(f"predicted {d['predicted']}, actually {d['actual']}"
                                                  for d in dis))})
            stats[level] = s
        if predict_data is not None:  # where the checker rightly says "fails": does it name a node?
            right = [predict_data["models"][m["id"]]["targets"][rt] for m in models
                     if _actual(truth_data["models"][m["id"]][rt], "session") == "fails"
                     and _predicted(predict_data["models"].get(m["id"]), rt)[0] == "fails"]
            stats["attribution"] = {
                "rightly_unsupported": len(right),
                "names_a_node": sum(t.get("unsupported_nodes", 0) > 0 for t in right),
                "model_level_only": sum(t.get("unsupported_nodes", 0) == 0 for t in right),
            }
        out["targets"][rt] = stats
    return out


def truth_summary(index: dict, truth_data: dict) -> dict:
    """Counts per runtime: session/run works, fails, crashes, harness gaps, wrong outputs; failure classes."""
    out = {}
    for rt in TARGETS:
        rows = [truth_data["models"][m["id"]][rt] for m in index["models"]]
        out[rt] = {
            "session_ok": sum(bool(r.get("session")) for r in rows),
            "session_failed": sum(not r.get("session") and "crash" not in r for r in rows),
            "crashed_or_timeout": sum("crash" in r for r in rows),
            "run_ok": sum(r.get("run") is True for r in rows),
            "run_failed": sum(r.get("run") is False for r in rows),
            "run_not_judged": sum(bool(r.get("session")) and r.get("run") is None for r in rows),
            "outputs_mismatch": sum(r.get("outputs_match") is False for r in rows),
        }
        if rt == "openvino":
            out[rt]["convert_model_ok"] = sum(bool(r.get("convert")) for r in rows)
            out[rt]["read_model_ok"] = sum(bool(r.get("read")) for r in rows)
            out[rt]["read_model_compile_ok"] = sum(bool(r.get("read_session")) for r in rows)
            out[rt]["paths_differ"] = sorted(m["id"] for m, r in zip(index["models"], rows, strict=True)
                                             if bool(r.get("session")) != bool(r.get("read_session")))
    return out


LEVELS = {"session": "session / compile", "run": "run on the test inputs",
          "read_session": "read_model + compile (not convertctl's path)"}


def tables(summary: dict, agree: dict | None, disagreements: bool = True) -> list[str]:
    """Markdown: ground truth per runtime, agreement per target and level, the session-level disagreements."""
    lines = ["| runtime | session ok | session fails | crash/timeout | run ok | run fails | run not judged "
             "| outputs differ (information) |", "|---|---|---|---|---|---|---|---|"]
    for rt, s in summary.items():
        lines.append(f"| {rt} | {s['session_ok']} | {s['session_failed']} | {s['crashed_or_timeout']} | {s['run_ok']} "
                     f"| {s['run_failed']} | {s['run_not_judged']} | {s['outputs_mismatch']} |")
    ov = summary.get("openvino")
    if ov and "paths_differ" in ov:
        lines += ["", f"OpenVINO: convert_model succeeds on {ov['convert_model_ok']}, read_model on "
                      f"{ov['read_model_ok']}, read_model + compile on {ov['read_model_compile_ok']}; the two paths "
                      f"differ on {len(ov['paths_differ'])} models"
                      + (f" ({', '.join(ov['paths_differ'][:8])}{', ...' if len(ov['paths_differ']) > 8 else ''})"
                         if ov["paths_differ"] else "") + "."]
    if not agree:
        return lines
    lines += ["", "| target | level | judged | agree | agreement | disagreements |", "|---|---|---|---|---|---|"]
    for rt, levels in agree["targets"].items():
        for level in LEVELS:
            if level in levels:
                s = levels[level]
                lines.append(f"| {rt} | {LEVELS[level]} | {s['judged']} | {s['agree']} | {s['agreement']:.2%} "
                             f"| {', '.join(f'{k}: {v}' for k, v in s['by_kind'].items()) or '-'} |")
    for rt, levels in agree["targets"].items():
        a = levels.get("attribution")
        if a:
            lines += ["", f"{rt}: of the {a['rightly_unsupported']} models the checker rightly calls unsupported, "
                          f"{a['names_a_node']} name the node(s), {a['model_level_only']} only a model-level reason "
                          "(IR version, opset, a whole-model failure)."]
    if disagreements:
        for rt, levels in agree["targets"].items():
            for level in ("session", "run"):
                dis = levels[level]["disagreements"]
                if dis:
                    lines += ["", f"Disagreements, {rt}, {LEVELS[level]}:", ""]
                    for d in dis:
                        sub = "; in subgraphs: " + ", ".join(d["subgraph_ops"]) if d["subgraph_ops"] else ""
                        lines.append(f"- `{d['model']}` ({', '.join(d['ops'])}{sub}, opset {d['opset']}): predicted "
                                     f"{d['predicted']} ({d['checker'][:200]}); actually {d['actual']} "
                                     f"({d['runtime'][:200]})")
    return lines


def markdown(index: dict, truth_data: dict, agree: dict | None) -> str:
    suites = Counter(m["suite"] for m in index["models"])
    lines = [f"Corpus: {len(index['models'])} models ({', '.join(f'{k} {v}' for k, v in suites.items())}); "
             f"skipped {len(index['skipped'])}.", ""]
    return "\n".join(lines + tables(truth_summary(index, truth_data), agree))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("build", "truth", "predict", "report", "all"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--fresh", action="store_true", help="recompute the ground truth even if cached")
    args = ap.parse_args()
    if args.step in ("build", "all") or not INDEX.exists():
        idx = build(args.limit)
        print(f"[check] corpus: {len(idx['models'])} models, {len(idx['skipped'])} skipped ({idx['seconds']} s)",
              file=sys.stderr)
    idx = load_index()
    if args.limit:
        idx["models"] = idx["models"][: args.limit]
    if args.step in ("truth", "all"):
        t = truth(idx, args.jobs, args.fresh)
        print(f"[check] ground truth: {t['computed']} computed, {t['reused']} reused, {t['seconds_this_run']} s",
              file=sys.stderr)
    if args.step in ("predict", "all"):
        why = check_model_status()
        if why:
            print(f"[check] check_model not available: {why}", file=sys.stderr)
        else:
            p = predict(idx, args.jobs)
            print(f"[check] predictions: {p['seconds']} s", file=sys.stderr)
    if args.step in ("report", "all", "truth", "predict"):
        t = json.loads(TRUTH.read_text())
        p = json.loads(PREDICT.read_text()) if PREDICT.exists() and args.step != "truth" else None
        if p is not None:
            idx["models"] = [m for m in idx["models"] if m["id"] in p["models"]]
        idx["models"] = [m for m in idx["models"] if m["id"] in t["models"]]
        print(markdown(idx, t, agreement(idx, t, p) if p else None))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
