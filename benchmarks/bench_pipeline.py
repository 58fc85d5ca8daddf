"""Benchmark 2: `convertctl run` on the demo recipe against the same work written by hand.

Both run as subprocesses, interleaved, `repeats` times; medians are reported. Per-stage seconds come
from convertctl's manifest.json and from hand_pipeline.py's own timer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from functools import partial

from common import BENCH, CLI, GATE, PYTHON, RECIPE, WORK, median

GOAL_OVERHEAD = 0.20
TARGETS = ("openvino_fp32", "openvino_fp16", "onnxruntime_fp32")
TARGET_KEYS = {("openvino", "fp32"), ("openvino", "fp16"), ("onnxruntime", "fp32")}
STAGES = ["samples+report", "export", "check", "optimize", *(f"build {t}" for t in TARGETS)]


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return wall, proc.stdout


def fp32_recipe():
    """The demo recipe cut to the work hand_pipeline.py does: its FP32/FP16 targets, no calibration/INT8.

    Since the demo recipe has a `calibration:` section (and INT8 targets), convertctl verifies on its held-out
    calibration images and calibrates and quantizes; the hand script does none of that. Written to
    benchmarks/_work with absolute paths (a recipe's relative paths resolve against its own folder).
    """
    import yaml

    data = yaml.safe_load(RECIPE.read_text())
    for key in ("calibration", "quantize", "output"):
        data.pop(key, None)
    data["targets"] = [t for t in data["targets"] if (t["runtime"], t["precision"]) in TARGET_KEYS]
    # The hand script times nothing: leave the run's per-artifact latency measurement out as well.
    data.setdefault("verify", {})["latency"] = {"enabled": False}
    file, func = data["source"]["factory"].rsplit(":", 1)
    data["source"]["factory"] = f"{(RECIPE.parent / file).resolve()}:{func}"
    data["samples"]["images"] = str((RECIPE.parent / data["samples"]["images"]).resolve())
    path = WORK / "pipeline_recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Written by benchmarks/bench_pipeline.py from {RECIPE.name}: FP32/FP16 targets only.\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


def run_convertctl(out, recipe=RECIPE) -> dict:
    wall, _ = _timed([CLI, "run", str(recipe), "-o", str(out)])
    m = json.loads((out / "manifest.json").read_text())
    stages = {s["name"]: s["seconds"] for s in m["stages"]}
    stages.update({f"build {a['id']}": a["seconds"] for a in m["artifacts"]})
    stages["samples+report"] = round(m["seconds"] - sum(stages.values()), 3)  # everything between stages
    parity = {
        a["id"]: {k: v["logits"][k] for k in ("cosine", "max_abs", "top1_agreement")}
        for a in m["artifacts"]
        for v in [a["verification"][0]["outputs"]]
    }
    return {
        "wall_s": round(wall, 3),
        "manifest_s": m["seconds"],
        "stages": stages,
        "status": m["status"],
        "input_sha256": m["samples"]["sha256"],
        "export_details": m["stages"][0]["details"],
        "parity": parity,
    }


def run_hand(out) -> dict:
    wall, stdout = _timed([PYTHON, str(BENCH / "hand_pipeline.py"), str(out)])
    r = json.loads(stdout.strip().splitlines()[-1])
    stages = dict(r["seconds"])
    stages["samples+report"] = stages.pop("samples")
    return {
        "wall_s": round(wall, 3),
        "in_script_s": r["in_script_total"],
        "stages": stages,
        "parity": r["parity"],
        "input_sha256": r["input_sha256"],
    }


def bench(repeats: int = 3) -> dict:
    folder = WORK / "pipeline"
    shutil.rmtree(folder, ignore_errors=True)  # every run starts from empty folders, as a first run does
    recipe = fp32_recipe()
    cc, hand = [], []
    for i in range(repeats):  # interleaved, so drift hits both alike
        for runs, fn, name in ((cc, partial(run_convertctl, recipe=recipe), "convertctl"), (hand, run_hand, "hand")):
            result, share = GATE.run(partial(fn, folder / f"{name}_{i}"))
            runs.append({**result, "foreign_cpu_share": share})
    stages = {
        s: {
            "convertctl_s": round(median([r["stages"][s] for r in cc]), 3),
            "hand_s": round(median([r["stages"][s] for r in hand]), 3),
        }
        for s in STAGES
    }
    cc_wall, hand_wall = median([r["wall_s"] for r in cc]), median([r["wall_s"] for r in hand])
    overhead = cc_wall / hand_wall - 1
    return {
        "repeats": repeats,
        "convertctl_wall_s": round(cc_wall, 3),
        "hand_wall_s": round(hand_wall, 3),
        "ratio": round(cc_wall / hand_wall, 3),
        "overhead": round(overhead, 3),
        "goal_overhead": GOAL_OVERHEAD,
        "goal_met": overhead < GOAL_OVERHEAD,
        "convertctl_manifest_s": round(median([r["manifest_s"] for r in cc]), 3),
        "hand_in_script_s": round(median([r["in_script_s"] for r in hand]), 3),
        "stages": stages,
        "same_inputs": all(r["input_sha256"] == cc[0]["input_sha256"] for r in cc + hand),
        "runs": {"convertctl": cc, "hand": hand},
        "artifacts": str(folder / f"convertctl_{repeats - 1}"),
        "recipe": str(recipe),
        "targets": sorted(cc[0]["parity"]),
    }


if __name__ == "__main__":
    print(json.dumps(bench(), indent=2))
