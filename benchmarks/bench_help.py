"""Benchmark 1: wall time of `convertctl --help` as a subprocess, against `python -c pass`.

Also runs `python -X importtime` over the same console script and lists the top-level modules that
`--help` loads, so a heavy import (torch, onnx, openvino, ...) sneaking into the CLI shows up.
"""

from __future__ import annotations

import subprocess
import time

from common import CLI, GATE, PYTHON, median, percentile

GOAL_S = 0.5
HEAVY = "torch onnx onnxruntime onnxslim onnxsim openvino numpy pydantic rich yaml PIL scipy".split()


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def import_profile(top: int = 8) -> dict:
    """Top-level modules imported by `convertctl --help`, by cumulative import time."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", CLI, "--help"], capture_output=True, text=True, check=True
    )
    roots: dict[str, int] = {}
    loaded: set[str] = set()
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        loaded.add(name.strip().split(".")[0])
        if not name.startswith("  "):  # one leading space: imported at top level, not by another module
            roots[name.strip()] = int(cumulative)
    ranked = sorted(roots.items(), key=lambda kv: -kv[1])[:top]
    return {
        "top_level_ms": {name: round(us / 1000, 1) for name, us in ranked},
        "total_ms": round(sum(roots.values()) / 1000, 1),
        "heavy_loaded": sorted(h for h in HEAVY if h in loaded),
    }


def bench(runs: int = 20) -> dict:
    help_cmd, pass_cmd, run_help_cmd = [CLI, "--help"], [PYTHON, "-c", "pass"], [CLI, "run", "--help"]
    for _ in range(2):  # warm the page cache and .pyc files
        _wall(help_cmd), _wall(pass_cmd), _wall(run_help_cmd)
    help_t, pass_t, run_help_t = [], [], []

    def measure():
        help_t[:], pass_t[:], run_help_t[:] = [], [], []
        for _ in range(runs):  # interleaved, so drift hits all alike
            help_t.append(_wall(help_cmd))
            pass_t.append(_wall(pass_cmd))
            run_help_t.append(_wall(run_help_cmd))

    _, share = GATE.run(measure)
    result = {
        "runs": runs,
        "help_median_s": round(median(help_t), 4),
        "help_p90_s": round(percentile(help_t, 90), 4),
        "python_pass_median_s": round(median(pass_t), 4),
        "python_pass_p90_s": round(percentile(pass_t, 90), 4),
        "run_help_median_s": round(median(run_help_t), 4),  # information: a subcommand's help
        "goal_s": GOAL_S,
        "foreign_cpu_share": share,
        "imports": import_profile(),
    }
    result["help_minus_python_s"] = round(result["help_median_s"] - result["python_pass_median_s"], 4)
    result["goal_met"] = result["help_median_s"] < GOAL_S
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(bench(), indent=2))
