"""Benchmark 5: `convertctl check`, how often its verdicts are right and how long it takes.

Agreement: check_corpus.py's corpus (ONNX's backend node tests plus the model tests the onnx wheel ships),
the real ONNX Runtime and OpenVINO on each model (ground truth, recomputed every run), and
`check_model`'s prediction for each; see check_corpus.py for the method.

Time: `convertctl check MODEL --target onnxruntime --target openvino --target tensorrt --json` as a
subprocess (interpreter start included), median of 3, on two models of a few thousand nodes, written once
into benchmarks/_work/check_timing/:
- `chain3000.onnx`: 500 blocks of 6 nodes (1x1 Conv, Relu, 3x3 Conv, Add, Sigmoid, Mul) over
  [1, C, 16, 16], C cycling through 24 widths (8..100), so the nodes have many different signatures;
  generated with onnx.helper, seeded weights.
- `transformer80.onnx`: torch.nn.TransformerEncoder, 80 layers (d_model 128, 4 heads, FFN 256, sequence 32)
  exported by torch's dynamo exporter (optimizer on), about 3100 nodes of 12 operator types.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import check_corpus as cc
from common import CLI, GATE, PYTHON, ROOT, WORK, median

TIMING = WORK / "check_timing"
TIMING_TARGETS = ("onnxruntime", "openvino", "tensorrt")


def chain_model(path: Path, blocks: int = 500) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    widths = [8 + 4 * (i % 24) for i in range(blocks)]
    nodes, inits = [], []
    prev, c_prev = "input", widths[0]
    for i, c in enumerate(widths):
        w1 = numpy_helper.from_array((rng.standard_normal((c, c_prev, 1, 1)) * (1 / c_prev) ** 0.5).astype(np.float32),
                                     f"w1_{i}")
        w2 = numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) * (1 / (9 * c)) ** 0.5).astype(np.float32),
                                     f"w2_{i}")
        b2 = numpy_helper.from_array(np.zeros(c, np.float32), f"b2_{i}")
        inits += [w1, w2, b2]
        p = f"b{i}_"
        nodes += [
            helper.make_node("Conv", [prev, w1.name], [p + "c1"], name=p + "conv1", kernel_shape=[1, 1]),
            helper.make_node("Relu", [p + "c1"], [p + "r1"], name=p + "relu"),
            helper.make_node("Conv", [p + "r1", w2.name, b2.name], [p + "c2"], name=p + "conv2", kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]),
            helper.make_node("Add", [p + "c2", p + "r1"], [p + "add"], name=p + "add"),
            helper.make_node("Sigmoid", [p + "add"], [p + "sig"], name=p + "sigmoid"),
            helper.make_node("Mul", [p + "add", p + "sig"], [p + "out"], name=p + "mul"),
        ]
        prev, c_prev = p + "out", c
    graph = helper.make_graph(
        nodes, "chain3000",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, widths[0], 16, 16])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, c_prev, 16, 16])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


_TRANSFORMER = r"""
import sys, torch
torch.manual_seed(0)
layer = torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=256, batch_first=True, dropout=0.0)
model = torch.nn.TransformerEncoder(layer, num_layers=80, enable_nested_tensor=False).eval()
torch.onnx.export(model, (torch.randn(1, 32, 128),), sys.argv[1], dynamo=True, optimize=True)
"""


def transformer_model(path: Path) -> None:
    """Exported in a subprocess (torch stays out of this process); takes 1-2 minutes, done once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([PYTHON, "-c", _TRANSFORMER, str(path)], capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"transformer export failed:\n{proc.stderr[-3000:]}")


def timing_models() -> dict[str, Path]:
    models = {"chain3000": TIMING / "chain3000.onnx", "transformer80": TIMING / "transformer80.onnx"}
    if not models["chain3000"].exists():
        chain_model(models["chain3000"])
    if not models["transformer80"].exists():
        print("[bench] check: exporting the 80-layer transformer (once) ...", file=sys.stderr, flush=True)
        transformer_model(models["transformer80"])
    return models


def _describe(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    ops: dict[str, int] = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {"path": str(path.relative_to(ROOT)), "nodes": len(m.graph.node), "ops": dict(sorted(ops.items())),
            "bytes": path.stat().st_size}


def _cli_has_check() -> bool:
    proc = subprocess.run([CLI, "check", "--help"], capture_output=True, text=True, cwd=ROOT)
    return proc.returncode == 0


def time_check(path: Path, repeats: int = 3) -> dict:
    """`convertctl check` as a subprocess (or check_model in this process if the CLI lacks `check`)."""
    if _cli_has_check():
        cmd = [CLI, "check", str(path), *[a for t in TIMING_TARGETS for a in ("--target", t)], "--json"]

        def once():
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
            return time.perf_counter() - t0, proc

        runs, last = [], None
        for _ in range(repeats):
            (wall, proc), load = GATE.run(once)
            runs.append({"wall_s": round(wall, 3), "exit_code": proc.returncode, "foreign_cpu_share": load})
            last = proc
        try:
            report = json.loads(last.stdout)
        except json.JSONDecodeError:
            report = {"unparsed_stdout": last.stdout[-2000:], "stderr": last.stderr[-2000:]}
        how = "subprocess: " + " ".join(["convertctl", *cmd[1:]]).replace(str(path), path.name)
    else:
        from convertctl.checks.run_check import check_model

        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rep, load = GATE.run(lambda: check_model(path, list(TIMING_TARGETS)))
            runs.append({"wall_s": round(time.perf_counter() - t0, 3), "foreign_cpu_share": load})
        report = json.loads(rep.model_dump_json())
        how = "in-process check_model (the CLI had no `check` command)"
    return {"how": how, "runs": runs, "median_s": round(median([r["wall_s"] for r in runs]), 3),
            "verdicts": _verdicts(report), "report_seconds": _find(report, "seconds")}


def _find(report, key):
    if isinstance(report, dict):
        if key in report and not isinstance(report[key], (dict, list)):
            return report[key]
        for v in report.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _verdicts(report) -> dict:
    """target -> verdict, wherever the JSON keeps its target reports."""
    def walk(x):
        if isinstance(x, dict):
            if "target" in x and "verdict" in x and isinstance(x["target"], str):
                yield x["target"], x["verdict"]
            for v in x.values():
                yield from walk(v)
        elif isinstance(x, list):
            for v in x:
                yield from walk(v)

    return dict(walk(report))


def bench(quick: bool = False, jobs: int = 2) -> dict:
    t0 = time.perf_counter()
    index = cc.build()
    out: dict = {
        "corpus": {"source": f"onnx {index['onnx_version']} wheel: backend node test generators "
                             f"(onnx.backend.test.case.node) + shipped data/{{{','.join(cc.SHIPPED_SUITES)}}}",
                   "generated_cases": index["generated_cases"], "models": len(index["models"]),
                   "by_suite": {}, "single_node": sum(m["nodes"] == 1 for m in index["models"]),
                   "op_types": len({op for m in index["models"] for op in m["ops"]}),
                   "skipped": index["skipped"], "build_s": index["seconds"]},
    }
    for m in index["models"]:
        out["corpus"]["by_suite"][m["suite"]] = out["corpus"]["by_suite"].get(m["suite"], 0) + 1
    if quick:  # a smoke test: every 20th model
        index["models"] = index["models"][::20]
        out["corpus"]["quick_subset"] = len(index["models"])
    print(f"[bench] check: ground truth on {len(index['models'])} models ...", file=sys.stderr, flush=True)
    truth = cc.truth(index, jobs, fresh=True)
    out["truth"] = {"versions": truth["versions"], "seconds": truth["seconds_this_run"],
                    "summary": cc.truth_summary(index, truth),
                    "failures": {rt: {m["id"]: cc._error(truth["models"][m["id"]][rt], "session")
                                      for m in index["models"] if cc._actual(truth["models"][m["id"]][rt],
                                                                             "session") == "fails"}
                                 for rt in cc.TARGETS}}
    why = cc.check_model_status()
    if why:
        out["agreement"] = {"status": f"pending: check_model not importable ({why})"}
    else:
        print(f"[bench] check: check_model on {len(index['models'])} models ...", file=sys.stderr, flush=True)
        pred = cc.predict(index, jobs)
        agree = cc.agreement(index, truth, pred)
        agree["status"] = "measured"
        agree["predict_seconds"] = pred["seconds"]
        agree["check_model_median_s"] = round(median([p["seconds"] for p in pred["models"].values()
                                                      if "seconds" in p] or [0]), 3)
        agree["goal"] = 0.99
        out["agreement"] = agree
    print("[bench] check: timing ...", file=sys.stderr, flush=True)
    out["timing"] = {}
    for name, path in timing_models().items():
        out["timing"][name] = {**_describe(path), **time_check(path, repeats=1 if quick else 3)}
    out["timing_goal"] = "seconds, not minutes"
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def markdown(c: dict) -> list[str]:
    co = c["corpus"]
    lines = [
        "",
        f"`convertctl check` corpus: {co['models']} models "
        f"({', '.join(f'{k} {v}' for k, v in co['by_suite'].items())}; {co['single_node']} single-node, "
        f"{co['op_types']} operator types), {len(co['skipped'])} skipped"
        + (f"; QUICK: every 20th model, {co['quick_subset']}" if "quick_subset" in co else "") + ".",
        "",
    ]
    a = c["agreement"]
    measured = a.get("status") == "measured"
    lines += cc.tables(c["truth"]["summary"], a if measured else None, disagreements=False)
    if not measured:
        lines += ["", f"Agreement: {a.get('status')}."]
    lines += ["", "| model (check timing) | nodes | how | median s | runs s | verdicts |", "|---|---|---|---|---|---|"]
    for name, t in c["timing"].items():
        lines.append(f"| {name} | {t['nodes']} | {t['how'].split(':')[0]} | {t['median_s']:.2f} "
                     f"| {', '.join(format(r['wall_s'], '.2f') for r in t['runs'])} "
                     f"| {', '.join(f'{k} {v}' for k, v in t['verdicts'].items())} |")
    lines += ["", f"Benchmark 5 took {c['wall_s']:.0f} s."]
    return lines


def run_in_subprocess(quick: bool, quiet_budget: float) -> dict:
    """run_all.py's entry: this file in its own process (the ground truth forks one child per model and
    runtime from it), progress on stderr, the section as JSON on the last stdout line."""
    cmd = [PYTHON, str(Path(__file__).resolve()), "--quiet-budget", str(quiet_budget)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=3 * 3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    """Run by run_all.py in its own process (the ground truth forks children from it): JSON on the last line."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 20th corpus model, one timing run")
    ap.add_argument("--jobs", type=int, default=2, help="children at a time (default 2)")
    ap.add_argument("--quiet-budget", type=float, default=60, metavar="S")
    ap.add_argument("--timing-only", action="store_true")
    args = ap.parse_args()
    GATE.budget_s = args.quiet_budget
    if args.timing_only:
        out = {name: {**_describe(path), **time_check(path, 1 if args.quick else 3)}
               for name, path in timing_models().items()}
    else:
        out = bench(args.quick, args.jobs)
        out["quiet_gate"] = GATE.record()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
