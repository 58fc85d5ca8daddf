"""Benchmark 10: how far the TensorRT support table agrees with TensorRT-RTX's own ONNX parser and builder (issue 15).

    .venv/bin/python benchmarks/tensorrt_table_agreement.py                 # build the corpus, judge, report
    .venv/bin/python benchmarks/tensorrt_table_agreement.py --render        # the README section from the JSON
    options: --limit N (first N node tests, a smoke test), --output JSON
             (default benchmarks/results/tensorrt_table_agreement.json), --no-build (parser only)

Models. (1) ONNX's backend node tests: the onnx wheel (1.23) ships their generators, not the generated
`data/node/*/model.onnx` folders, so they are generated here with `onnx.backend.test.case.node.collect_testcases()`
into benchmarks/_work/tensorrt_table_agreement/node/<case>/model.onnx (with the first data set's inputs, which fix
the shapes and shape-tensor values of the build's optimization profile). (2) The real-model corpus's ONNX files,
recipes/models/corpus/*/*.onnx (`make models`), profiled at the `opt` of their recipe's dims.

Per model:
- table: `check_tensorrt(analyse(model), "10", evidence=False)`, the support table for TensorRT 10.x alone. The
  model is accepted when its worst verdict is supported/conditional, rejected when unsupported, "unknown" else;
  the "dynamic dims need a profile" finding is left out (the build below gives every input a profile).
- parser: TensorRT-RTX's `parse_from_file` + `supports_model_v2` (convertctl's shared parser code,
  targets/tensorrt/parser.py `run_parser` with the RTX flavour); accepted when the parse succeeds.
- builder: where the parse succeeds, `build_serialized_network` of the strongly typed network with one
  optimization profile (min = opt = max = the shapes above); no GPU needed.
Every model runs in a worker child process (a native crash or a hang costs one model and is recorded).
Per-op disagreements name the op types of the nodes involved: for "table accepts, parser rejects" the nodes the
parser's errors name; for "table rejects, parser accepts" the nodes the table marks unsupported (or "model-level:"
and the reason when the table rejects the model as a whole, e.g. its opset).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from common import WORK

REPO = Path(__file__).resolve().parents[1]
WORKDIR = WORK / "tensorrt_table_agreement"
NODE_DIR = WORKDIR / "node"
CORPUS_DIR = REPO / "recipes" / "models" / "corpus"
RECIPES = REPO / "recipes" / "corpus"
OUTPUT = REPO / "benchmarks" / "results" / "tensorrt_table_agreement.json"
MODEL_TIMEOUT_S = 180.0


# ------------------------------------------------------------------------------------------------ the models

def build_node_tests(limit: int | None = None) -> list[dict]:
    import warnings

    import numpy as np
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases(None)
    models = []
    for case in cases[:limit]:
        folder = NODE_DIR / case.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.onnx"
        if not path.exists():
            path.write_bytes(case.model.SerializeToString())
            feeds = {}
            if case.data_sets:
                for info, value in zip(case.model.graph.input, case.data_sets[0][0], strict=False):
                    if isinstance(value, np.ndarray):
                        feeds[info.name] = value
            np.savez(folder / "inputs.npz", **feeds)
        models.append({"id": f"node/{case.name}", "suite": "node", "path": str(path),
                       "inputs": str(folder / "inputs.npz")})
    return models


def corpus_models() -> list[dict]:
    import yaml

    models = []
    for path in sorted(CORPUS_DIR.glob("*/*.onnx")):
        name = path.parent.name
        shapes = {}
        recipe = RECIPES / f"{name}.yaml"
        if recipe.exists():
            data = yaml.safe_load(recipe.read_text())
            dims = {k: v["opt"] if isinstance(v, dict) else v for k, v in (data.get("dims") or {}).items()}
            for spec in data.get("inputs") or []:
                if spec.get("shape") is not None:
                    shapes[spec["name"]] = [d if isinstance(d, int) else dims.get(d) for d in spec["shape"]]
        models.append({"id": f"corpus/{name}", "suite": "corpus", "path": str(path), "shapes": shapes})
    return models


# ------------------------------------------------------------------------------------------------ the table

def table_verdicts(path: str) -> dict:
    from convertctl.checks.model_facts import analyse
    from convertctl.targets.tensorrt.check import check_tensorrt

    facts = analyse(Path(path))
    report = check_tensorrt(facts, "10", evidence=False)
    nodes = [n for n in report.nodes if n.kind != "dynamic_dim"]
    worst = max((n.verdict for n in nodes), key={"supported": 0, "unknown": 1, "conditional": 2,
                                                   "unsupported": 3}.__getitem__, default="supported")
    verdict = {"supported": "accept", "conditional": "accept", "unsupported": "reject", "unknown": "unknown"}[worst]
    return {"verdict": verdict,
            "unsupported_ops": sorted({n.op_type for n in nodes if n.node and n.verdict == "unsupported"}),
            "unknown_ops": sorted({n.op_type for n in nodes if n.node and n.verdict == "unknown"}),
            "model_level": sorted({n.reason[:160] for n in nodes if not n.node and n.verdict == "unsupported"}),
            "reasons": sorted({n.reason[:200] for n in nodes if n.verdict == "unsupported"})[:3]}


# ------------------------------------------------------------------------------------------------ the worker

def _shapes_for(model: dict) -> dict:
    import numpy as np

    if model.get("inputs") and Path(model["inputs"]).exists():
        with np.load(model["inputs"], allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    return {k: v for k, v in (model.get("shapes") or {}).items()}


def parse_and_build(model: dict, build: bool) -> dict:
    import numpy as np
    import onnx

    from convertctl.targets.tensorrt.builder import collecting_logger
    from convertctl.targets.tensorrt.parser import run_parser
    from convertctl.targets.tensorrt_rtx.builder import RTX

    trt = __import__(RTX.module)
    path = Path(model["path"])
    result = run_parser(path, RTX)
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    out = {"parsed": result.parsed, "version": result.version,
           "rejected_ops": sorted({ops[e.node] if 0 <= e.node < len(ops) else "model-level" for e in result.error_list}),
           "errors": [e.message[:300] for e in result.error_list][:3]}
    if not (build and result.parsed):
        return out
    logger = collecting_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    parser.parse_from_file(str(path))
    config = builder.create_builder_config()
    feeds = _shapes_for(model)
    profile = builder.create_optimization_profile()
    needs_profile = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        value = feeds.get(tensor.name)
        shape = tuple(tensor.shape)
        if value is not None and not isinstance(value, list):
            shape = tuple(np.asarray(value).shape) if any(d < 0 for d in shape) else shape
        elif isinstance(value, list) and any(d < 0 for d in shape):
            shape = tuple(int(d) if d is not None else 1 for d in value)
        if any(d < 0 for d in shape):
            shape = tuple(1 if d < 0 else d for d in shape)
        if tensor.is_shape_tensor:
            values = [int(v) for v in np.asarray(value).reshape(-1)] if value is not None and not isinstance(value, list) \
                else [1] * int(np.prod(shape) if shape else 1)
            if any(d < 0 for d in tensor.shape):
                profile.set_shape(tensor.name, shape, shape, shape)
            profile.set_shape_input(tensor.name, values, values, values)
            needs_profile = True
        elif any(d < 0 for d in tensor.shape):
            profile.set_shape(tensor.name, shape, shape, shape)
            needs_profile = True
    if needs_profile:
        config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    out["build_seconds"] = round(time.perf_counter() - t0, 3)
    out["built"] = plan is not None
    if plan is None:
        errors = logger.errors()
        out["build_error"] = (errors[-1] if errors else "no reason given")[:300]
    return out


def worker() -> int:
    """Read model JSON lines on stdin; for each, print 'start' then the result line (flushed)."""
    build = os.environ.get("AGREEMENT_BUILD", "1") == "1"
    proto = os.fdopen(os.dup(1), "w")  # the protocol; what native code prints to stdout goes nowhere
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for line in sys.stdin:
        model = json.loads(line)
        print(json.dumps({"start": model["id"]}), file=proto, flush=True)
        try:
            res = parse_and_build(model, build)
        except Exception as exc:  # noqa: BLE001 - recorded per model
            res = {"parsed": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps({"done": model["id"], **res}), file=proto, flush=True)
    return 0


def run_workers(models: list[dict], build: bool) -> dict[str, dict]:
    """One worker at a time, restarted after a crash or a hang (the model in flight is recorded as such)."""
    results: dict[str, dict] = {}
    pending = list(models)
    env = dict(os.environ, AGREEMENT_BUILD="1" if build else "0", PYTHONUNBUFFERED="1")
    while pending:
        WORKDIR.mkdir(parents=True, exist_ok=True)
        todo = WORKDIR / "pending.jsonl"  # a file, not a pipe: a full stdin pipe would deadlock against stdout
        todo.write_text("".join(json.dumps(m) + "\n" for m in pending))
        with open(todo) as feed:
            proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=feed, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(Path(__file__).parent))
        in_flight = None
        try:
            while True:
                ready, _, _ = select.select([proc.stdout], [], [], MODEL_TIMEOUT_S)
                if not ready:
                    proc.kill()
                    raise TimeoutError
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "start" in msg:
                    in_flight = msg["start"]
                else:
                    results[msg.pop("done")] = msg
                    in_flight = None
                    if len(results) % 100 == 0:
                        print(f"  {len(results)}/{len(models)}", file=sys.stderr, flush=True)
        except TimeoutError:
            if in_flight:
                results[in_flight] = {"parsed": None, "error": f"timeout after {MODEL_TIMEOUT_S:.0f} s"}
        finally:
            code = proc.wait()
        if in_flight and in_flight not in results:
            results[in_flight] = {"parsed": None, "error": f"worker died (exit code {code}: a native crash)"}
        pending = [m for m in pending if m["id"] not in results]
    return results


# ------------------------------------------------------------------------------------------------ the figures

def compare(models: list[dict], table: dict[str, dict], rtx: dict[str, dict]) -> dict:
    out: dict = {}
    for suite in sorted({m["suite"] for m in models}):
        rows = []
        counts: Counter = Counter()
        build_counts: Counter = Counter()
        op_disagree: dict[str, Counter] = {"table_accepts_parser_rejects": Counter(),
                                           "table_rejects_parser_accepts": Counter(),
                                           "table_accepts_builder_fails": Counter(),
                                           "table_unknown_parser_accepts": Counter(),
                                           "table_unknown_parser_rejects": Counter()}
        for m in (m for m in models if m["suite"] == suite):
            t, r = table[m["id"]], rtx.get(m["id"], {"parsed": None, "error": "not run"})
            if r.get("parsed") is None:
                counts["parser crashed or could not run"] += 1
                rows.append({"id": m["id"], "table": t["verdict"], "parser": "error", "detail": r.get("error")})
                continue
            p = "accept" if r["parsed"] else "reject"
            key = {("accept", "accept"): "both accept", ("reject", "reject"): "both reject",
                   ("accept", "reject"): "table accepts, parser rejects",
                   ("reject", "accept"): "table rejects, parser accepts",
                   ("unknown", "accept"): "table unknown, parser accepts",
                   ("unknown", "reject"): "table unknown, parser rejects"}[(t["verdict"], p)]
            counts[key] += 1
            if key == "table accepts, parser rejects":
                op_disagree["table_accepts_parser_rejects"].update(r["rejected_ops"])
            elif key == "table rejects, parser accepts":
                op_disagree["table_rejects_parser_accepts"].update(
                    t["unsupported_ops"] or [f"model-level: {x[:90]}" for x in t["model_level"]])
            elif key == "table unknown, parser accepts":
                op_disagree["table_unknown_parser_accepts"].update(t["unknown_ops"])
            elif key == "table unknown, parser rejects":
                op_disagree["table_unknown_parser_rejects"].update(r["rejected_ops"])
            if r.get("parsed") and "built" in r:
                build_counts[("built" if r["built"] else "build failed") + f" (table {t['verdict']}s)"] += 1
                if t["verdict"] == "accept" and not r["built"]:
                    ops = sorted({n for n in _ops(m["path"])})
                    op_disagree["table_accepts_builder_fails"].update(ops if len(ops) <= 3 else ["(multi-node) " + m["id"]])
            if key not in ("both accept", "both reject") or (r.get("built") is False):
                rows.append({"id": m["id"], "table": t["verdict"], "parser": p, "built": r.get("built"),
                             "table_reasons": t["reasons"], "parser_errors": r.get("errors"),
                             "build_error": r.get("build_error")})
        out[suite] = {"models": sum(counts.values()), "agreement": dict(counts), "builder": dict(build_counts),
                      "per_op": {k: dict(v.most_common()) for k, v in op_disagree.items()}, "disagreements": rows}
    return out


def _ops(path: str) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(path, load_external_data=False).graph.node]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--output", type=Path, default=OUTPUT)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args(argv)
    if args.worker:
        return worker()
    if args.render:
        print(render(json.loads(args.output.read_text())))
        return 0
    sys.path.insert(0, str(REPO))
    t0 = time.perf_counter()
    models = build_node_tests(args.limit) + corpus_models()
    print(f"{len(models)} models", file=sys.stderr)
    table = {}
    for m in models:
        try:
            table[m["id"]] = table_verdicts(m["path"])
        except Exception as exc:  # noqa: BLE001
            table[m["id"]] = {"verdict": "unknown", "unsupported_ops": [], "unknown_ops": [], "model_level": [],
                              "reasons": [f"check failed: {type(exc).__name__}: {exc}"[:200]]}
    t_table = time.perf_counter() - t0
    rtx = run_workers(models, build=not args.no_build)
    import onnx

    from convertctl.targets.tensorrt.table import load_table

    version = next((r["version"] for r in rtx.values() if r.get("version")), None)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    result = {"date": dt.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
              "tensorrt_rtx": version, "onnx": onnx.__version__, "table_taken_on": load_table().taken_on,
              "table_seconds": round(t_table, 1), "seconds": round(time.perf_counter() - t0, 1),
              "suites": compare(models, table, rtx)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))
    return 0


def render(result: dict) -> str:
    lines = [f"Recorded {result['date']} on {result['cpu']} ({result['cores']} cores): TensorRT-RTX "
             f"{result['tensorrt_rtx']}, onnx {result['onnx']}, support table taken {result['table_taken_on']}; "
             f"{result['seconds']} s in all.", ""]
    for suite, s in result["suites"].items():
        lines += [f"**{suite}** ({s['models']} models)", "", "| table vs parser | models |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(s["agreement"].items(), key=lambda kv: -kv[1])]
        if s["builder"]:
            lines += ["", "| builder (models the parser accepts) | models |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(s["builder"].items(), key=lambda kv: -kv[1])]
        for kind, ops in s["per_op"].items():
            if ops:
                lines += ["", f"{kind.replace('_', ' ')}: " + ", ".join(f"{op} ({n})" for op, n in ops.items())]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
