"""Run every benchmark, write benchmarks/results/latest.json, print the results as Markdown tables.

make bench            (or: .venv/bin/python benchmarks/run_all.py [--quick] [--only help,pipeline,...]
                           [--models efficientnet_lite0,resnet18])
.venv/bin/python benchmarks/run_all.py --only check --output benchmarks/results/check.json   (benchmark 5)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_calibration
import bench_check
import bench_help
import bench_latency
import bench_pipeline
import bench_simplify
import edge_targets
import tensorrt_rtx_builds
from common import (
    GATE,
    MODELS,
    RECIPE,
    RESULTS,
    ROOT,
    WORK,
    ForeignLoad,
    foreign_load_now,
    machine,
    source_state,
)

BENCHES = ("help", "pipeline", "latency", "simplify", "calibration", "check", "tensorrt_rtx", "edge")
LATENCY_COLUMNS = (
    "median ms | p90 ms | round medians ms | speed vs torch | threads | precision "
    "| cosine vs torch | max abs vs torch"
)


def _artifacts(results: dict, given: dict[str, str], model: str = "efficientnet_lite0") -> Path:
    """The `convertctl run` output of a model's recipe (with its INT8 targets): `--artifacts [MODEL=]DIR`, or one
    fresh run per invocation. EfficientNet-Lite0's (the demo recipe's) also serves the simplifier and
    calibration benchmarks; results["artifacts"] describes it, results["artifacts_<model>"] the others."""
    spec = MODELS[model]
    key = spec["artifacts_key"]
    if model in given:
        results.setdefault(key, {"dir": given[model], "built_by_this_run": False})
        return Path(given[model])
    folder = spec["artifacts"]
    if key not in results:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        recipe = str(spec["recipe"].relative_to(ROOT))
        print(f"[bench] convertctl run {recipe} (artifacts) ...", file=sys.stderr, flush=True)
        run = bench_pipeline.run_convertctl(folder, recipe=spec["recipe"])
        results[key] = {"dir": str(folder), "built_by_this_run": True, "recipe": recipe, "wall_s": run["wall_s"],
                        "status": run["status"], "stages": run["stages"], "parity": run["parity"]}
    return folder


def _given_artifacts(entries: list[str], error) -> dict[str, str]:
    """--artifacts values: `DIR` (the demo recipe's run, as before) or `MODEL=DIR`."""
    given = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if sep and not Path(entry).exists():
            if name not in MODELS:
                error(f"--artifacts {entry}: unknown model {name!r} (models: {', '.join(MODELS)})")
            given[name] = folder
        else:
            given["efficientnet_lite0"] = entry
    return given


def _latency_sections(r: dict) -> list[dict]:
    """The latency sections of a results file, one per model, in MODELS order. Files written before ResNet-18
    came have only "latency" (EfficientNet-Lite0, without a "model" key)."""
    return [r[spec["latency_key"]] for spec in MODELS.values() if spec["latency_key"] in r]


def _latency_markdown(lat: dict) -> list[str]:
    model = lat.get("model", "efficientnet_lite0")
    lines = [
        f"**{lat.get('model_label', MODELS[model]['label'])}**: artifacts of "
        f"`{lat.get('recipe', 'recipes/efficientnet_lite0.yaml')}`, PyTorch eager FP32 of the same model as the "
        "baseline.",
        "",
        f"| variant (batch 1, {lat['threads_requested']} threads) | {LATENCY_COLUMNS} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in lat["variants"].values():
        lines.append(
            f"| {v['label']} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} "
            f"| {min(v['round_medians_ms']):.1f}-{max(v['round_medians_ms']):.1f} "
            f"| {v['speedup_vs_torch']:.2f}x "
            f"| {'/'.join(map(str, v['threads']))} | {v['precision']} | {v['vs_torch']['cosine']:.6f} "
            f"| {v['vs_torch']['max_abs']:.1e} |"
        )
    lines += [
        "",
        f"{lat['rounds']} rounds x {lat['runs_per_round']} timed runs per variant, one process each; "
        f"other processes used at most {lat['foreign_cpu_share_max']:.0%} of the CPU during any one.",
    ]
    for v, g in lat.get("goals", {}).items():
        lines.append(
            f"Goal: {lat['variants'][v]['label']} at least {g['goal_speedup']:g}x faster than PyTorch "
            f"eager FP32: {g['speedup']:.2f}x, {'met' if g['met'] else 'NOT met'}."
        )
    lines.append("")
    return lines


def _span(runs: list[dict]) -> str:
    walls = [r["wall_s"] for r in runs]
    return f"{min(walls):.2f}-{max(walls):.2f}"


def _source(r: dict) -> str:
    src = r["source"]
    text = src["commit"] + (
        f" + uncommitted changes to {', '.join(src['modified'])}" if src["modified"] else ""
    )
    return text + (" (CHANGED DURING THE RUN)" if r.get("source_changed_during_run") else "")


def markdown(r: dict) -> str:
    lines = [
        f"Measured {r['date']} on {r['machine']['cpu']}, {r['machine']['cores']} cores, "
        f"convertctl at {_source(r)}; "
        f"CPU used by other processes during the run: {r['foreign_cpu_share']:.0%} "
        f"(waited {r['quiet_gate']['waited_s']:.0f} s for quiet moments, "
        f"redid {r['quiet_gate']['redos']} disturbed measurements).",
        "",
    ]
    if r.get("quick"):
        lines += ["**QUICK RUN (`--quick`): a smoke test with fewer repeats, NOT a measurement; its ratios and "
                  "goal verdicts mean nothing.**", ""]
    if "help" in r:
        h = r["help"]
        lines += [
            f"| command (median of {h['runs']}, subprocess) | seconds |",
            "|---|---|",
            f"| `python -c pass` | {h['python_pass_median_s']:.3f} |",
            f"| `convertctl --help` | {h['help_median_s']:.3f} (goal < {h['goal_s']}: "
            f"{'met' if h['goal_met'] else 'NOT met'}) |",
            f"| `convertctl run --help` | {h['run_help_median_s']:.3f} |",
            "",
            f"Heavy modules loaded by `--help`: {', '.join(h['imports']['heavy_loaded']) or 'none'}; "
            f"top-level imports (ms, -X importtime): "
            + ", ".join(f"{k} {v}" for k, v in h["imports"]["top_level_ms"].items()),
            "",
        ]
    if "pipeline" in r:
        p = r["pipeline"]
        lines += [f"| stage (median of {p['repeats']}) | convertctl s | by hand s |", "|---|---|---|"]
        lines += [f"| {s} | {v['convertctl_s']:.2f} | {v['hand_s']:.2f} |" for s, v in p["stages"].items()]
        lines += [
            f"| **wall time, subprocess** | **{p['convertctl_wall_s']:.2f}** | **{p['hand_wall_s']:.2f}** |",
            f"| wall time, min-max of the runs | {_span(p['runs']['convertctl'])} "
            f"| {_span(p['runs']['hand'])} |",
            "",
            f"convertctl / hand = {p['ratio']:.3f}: overhead {p['overhead']:+.1%} "
            f"(goal < {p['goal_overhead']:.0%}: {'met' if p['goal_met'] else 'NOT met'}); "
            f"identical inputs: {p['same_inputs']}.",
            "",
        ]
    for lat in _latency_sections(r):
        lines += _latency_markdown(lat)
    if "simplify" in r:
        lines += [
            "| input model | tool | nodes before -> after | import s | simplify s (first / median of 3) "
            "| max abs vs input |",
            "|---|---|---|---|---|---|",
        ]
        for label, tools in r["simplify"]["inputs"].items():
            for t in tools.values():
                lines.append(
                    f"| {label} | {t['tool']} | {t['nodes_before']} -> {t['nodes_after']} "
                    f"| {t['import_s']:.2f} | {t['first_call_s']:.2f} / {t['median_call_s']:.2f} "
                    f"| {t['parity']['max_abs']:.1e} |"
                )
    if "calibration" in r:
        c = r["calibration"]
        lines += [
            "",
            f"| calibration data ({c['method']}, chunks of {c['chunk']}) | samples | scan s | calibrate s "
            "| RSS after imports MB | peak RSS scan MB | peak RSS calibrate MB | RSS every 16 samples MB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, k in c["cases"].items():
            trace = [mb for _, mb in k["rss_trace_mb"]]
            lines.append(
                f"| {name} ({k['kind']}) | {k['samples_calibrated']} | {k['scan_s']:.1f} | {k['calibrate_s']:.1f} "
                f"| {k['rss_after_imports_mb']:.0f} | {k['scan_peak_rss_mb']:.0f} | {k['calibrate_peak_rss_mb']:.0f} "
                f"| {trace[0]:.0f}, then {min(trace[1:], default=trace[0]):.0f}-{max(trace[1:], default=trace[0]):.0f} |"
            )
    if "check" in r:
        lines += bench_check.markdown(r["check"])
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}"
    )
    ap.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test, not a measurement)")
    ap.add_argument(
        "--output",
        help=f"results file (default: {RESULTS.relative_to(ROOT)}/latest.json; with --quick "
        f"{WORK.relative_to(ROOT)}/quick.json, so a smoke test never replaces a recorded run)",
    )
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated models of the latency benchmark, each from its own `convertctl run` "
        f"(default: all: {', '.join(MODELS)})",
    )
    ap.add_argument(
        "--quiet-budget",
        type=float,
        default=300,
        metavar="S",
        help="seconds the run may spend waiting for other processes to go quiet, and redoing "
        "measurements they disturbed (0: measure at once, whatever the load)",
    )
    ap.add_argument(
        "--artifacts",
        metavar="[MODEL=]DIR",
        action="append",
        default=[],
        help="an existing `convertctl run` folder: DIR of the demo recipe (EfficientNet-Lite0) for "
        "latency/simplify/calibration, MODEL=DIR of another model's recipe for its latency (e.g. "
        "resnet18=benchmarks/_work/resnet18); repeatable (default: a fresh run of each recipe into "
        "benchmarks/_work/artifacts, benchmarks/_work/artifacts_<model>)",
    )
    ap.add_argument("--render", metavar="JSON", help="only print the tables of an earlier results file")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return 0
    only = [b.strip() for b in args.only.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        ap.error(f"--models {args.models}: unknown {', '.join(unknown) or '(none given)'}; models: {', '.join(MODELS)}")
    artifacts = _given_artifacts(args.artifacts, ap.error)
    output = args.output or str((WORK / "quick.json") if args.quick else (RESULTS / "latest.json"))
    GATE.budget_s = args.quiet_budget
    results: dict = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "source": source_state(),
        "recipe": str(RECIPE.relative_to(RECIPE.parents[1])),
        "quick": args.quick,
        "latency_models": models if "latency" in only else [],
        "foreign_cpu_share_before": foreign_load_now(),
    }
    t0 = time.perf_counter()
    with ForeignLoad() as load:
        for name in BENCHES:
            if name not in only:
                continue
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            if name == "latency":  # one section per model, each with its own artifacts run, time and load
                for model in models:
                    print(f"[bench] latency {model} ...", file=sys.stderr, flush=True)
                    t = time.perf_counter()
                    with ForeignLoad() as bench_load:
                        section = bench_latency.bench(
                            _artifacts(results, artifacts, model), rounds=1 if args.quick else 10, runs=50,
                            model=model,
                        )
                    section["seconds"] = round(time.perf_counter() - t, 1)
                    section["foreign_cpu_share_whole"] = bench_load.share
                    results[MODELS[model]["latency_key"]] = section
                continue
            with ForeignLoad() as bench_load:
                if name == "help":
                    results[name] = bench_help.bench(runs=5 if args.quick else 20)
                elif name == "pipeline":
                    results[name] = bench_pipeline.bench(repeats=1 if args.quick else 5)
                elif name == "calibration":
                    results[name] = bench_calibration.bench(_artifacts(results, artifacts))
                elif name == "check":  # its own process: the ground truth forks one child per model from it
                    results[name] = bench_check.run_in_subprocess(args.quick, max(GATE.budget_s, 0))
                elif name == "tensorrt_rtx":  # benchmark 9: a `convertctl run` per corpus model, ~7 min
                    results[name] = tensorrt_rtx_builds.bench()
                elif name == "edge":  # benchmark 10: MNN, ncnn, LiteRT per corpus model vs ORT fp32, ~15-25 min
                    results[name] = edge_targets.bench()
                else:
                    results[name] = bench_simplify.bench(_artifacts(results, artifacts))
            results[name]["seconds"] = round(time.perf_counter() - t, 1)
            results[name]["foreign_cpu_share_whole"] = bench_load.share
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["foreign_cpu_share"] = load.share
    results["quiet_gate"] = GATE.record()
    results["source_at_end"] = source_state()  # others may edit convertctl/ while this runs
    results["source_changed_during_run"] = results["source_at_end"] != results["source"]
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\n[bench] {results['seconds']:.0f} s; results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
