"""Shared helpers for the benchmarks: paths, statistics, subprocess JSON, machine description."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "_work"  # git-ignored
RESULTS = BENCH / "results"
RECIPE = ROOT / "recipes" / "efficientnet_lite0.yaml"
FACTORY = ROOT / "recipes" / "models" / "efficientnet_lite0.py"
# The models of the latency benchmark (run_all.py --models). Each has its recipe (its own `convertctl run`
# builds the artifacts), the factory of its PyTorch eager FP32 baseline, the folder of that run, and the
# keys of its sections in the results JSON. EfficientNet-Lite0 keeps the keys it had before ResNet-18 came.
MODELS = {
    "efficientnet_lite0": {
        "label": "EfficientNet-Lite0 (ImageNet-trained weights; the demo recipe)",
        "recipe": RECIPE,
        "factory": FACTORY,
        "artifacts": WORK / "artifacts",
        "artifacts_key": "artifacts",
        "latency_key": "latency",
    },
    "resnet18": {
        "label": "ResNet-18 (random weights, BatchNorm statistics from real images: latency and "
        "numerical fidelity only)",
        "recipe": BENCH / "recipes" / "resnet18.yaml",
        "factory": BENCH / "models" / "resnet18.py",
        "artifacts": WORK / "artifacts_resnet18",
        "artifacts_key": "artifacts_resnet18",
        "latency_key": "latency_resnet18",
    },
}
PYTHON = sys.executable
_SCRIPT = Path(sys.executable).parent / "convertctl"  # the console script of this interpreter's venv
CLI = str(_SCRIPT) if _SCRIPT.exists() else (shutil.which("convertctl") or "convertctl")
THREADS = 2


def median(xs) -> float:
    return float(statistics.median(xs))


def percentile(xs, q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default."""
    s = sorted(xs)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def run_json(cmd: list[str], timeout: float = 600, cwd: Path = ROOT) -> dict:
    """Run a worker that prints one JSON object as its last stdout line; fail loudly otherwise."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512_vnni", "avx512f")))
    return []


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in (
        "convertctl",
        "torch",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "onnxslim",
        "onnxsim",
        "openvino",
        "nncf",
        "numpy",
        "click",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


# What the measured artifacts depend on: convertctl, the recipes and the benchmark's own models and recipes.
SOURCE_PATHS = ("convertctl", "recipes", "benchmarks/models", "benchmarks/recipes")


def source_state() -> dict:
    """The commit measured, plus any uncommitted changes to SOURCE_PATHS (files and diff hash)."""
    import hashlib

    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout

    diff = git("diff", "HEAD", "--", *SOURCE_PATHS)
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "modified": git("diff", "HEAD", "--name-only", "--", *SOURCE_PATHS).split(),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None,
    }


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "versions": versions(),
    }


def load_samples(folder: Path):
    """The preprocessed real images convertctl verified with (samples.npz of a run), [N, 3, 224, 224]: the 16
    `samples` images, or the held-out calibration images when the recipe has a `calibration:` section."""
    import numpy as np

    with np.load(folder / "samples.npz") as data:
        return data["input"]


def compare(ref, out) -> dict:
    """Cosine (whole batch), max abs difference and top-1 agreement of logits."""
    import numpy as np

    a, b = np.asarray(ref, np.float64).ravel(), np.asarray(out, np.float64).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    top1 = float((np.argmax(ref, -1) == np.argmax(out, -1)).mean())
    return {"cosine": round(cos, 7), "max_abs": float(np.abs(a - b).max()), "top1_agreement": top1}


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (iowait counts as idle)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal, sum(fields)


def _own_cpu_s() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class ForeignLoad:
    """Share of the machine's CPU used by processes other than this benchmark (and its children).

    The machine may be shared: anything else running skews timings, so every benchmark records it.
    """

    def __enter__(self):
        self.busy0, self.total0 = _cpu_jiffies()
        self.own0 = _own_cpu_s()
        return self

    def __exit__(self, *exc):
        busy1, total1 = _cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        busy_s = (busy1 - self.busy0) / hz
        capacity_s = (total1 - self.total0) / hz
        own_s = _own_cpu_s() - self.own0
        self.share = round(max(0.0, busy_s - own_s) / capacity_s, 3) if capacity_s else 0.0
        return False


def foreign_load_now(seconds: float = 2.0) -> float:
    with ForeignLoad() as fl:
        time.sleep(seconds)
    return fl.share


class QuietGate:
    """On a shared machine: wait for a quiet moment before a measurement, redo it if others loaded the CPU.

    Waiting and redoing draw on one time budget (seconds) for the whole run; with the budget spent, or 0,
    measurements run at once and are recorded with the foreign load they saw.
    """

    threshold = 0.15  # foreign CPU share under which the machine counts as quiet

    def __init__(self, budget_s: float = 0.0):
        self.budget_s = budget_s
        self.waited_s = 0.0
        self.redos = 0

    def wait(self) -> None:
        t0 = time.perf_counter()
        while self.budget_s > 0 and foreign_load_now(0.5) >= self.threshold:
            self.budget_s -= 0.5
        self.waited_s += time.perf_counter() - t0

    def run(self, fn):
        """fn() measured on as quiet a machine as the budget allows; returns (result, foreign CPU share)."""
        while True:
            self.wait()
            t0 = time.perf_counter()
            with ForeignLoad() as load:
                result = fn()
            if load.share < self.threshold or self.budget_s <= 0:
                return result, load.share
            self.redos += 1
            self.budget_s -= time.perf_counter() - t0

    def record(self) -> dict:
        return {"threshold": self.threshold, "waited_s": round(self.waited_s, 1), "redos": self.redos}


GATE = QuietGate()  # run_all.py sets GATE.budget_s


# ------------------------------------------------------------------------------------------------------------------
# One `convertctl run` per corpus model, its recipe rewritten (tensorrt_rtx_builds.py, edge_targets.py)

CORPUS_RECIPES = ROOT / "recipes" / "corpus"
PROTECTED = (ROOT / "recipes", ROOT / "calib_data")  # never written into


def _absolute(base: Path, value: str) -> str:
    return str((base / value).resolve())


def corpus_recipe(model: str, folder: Path, targets: list[dict], latency: dict, suffix: str,
                  data: dict | None = None, base: Path | None = None) -> Path:
    """The corpus recipe of MODEL (recipes/corpus/<model>.yaml, or DATA read against BASE) with TARGETS and
    `verify.latency` updated by LATENCY, written to FOLDER/recipes/<model>.<suffix>.yaml: its relative paths made
    absolute (a recipe's paths are read against its own folder), no `output` (the caller gives -o)."""
    import yaml

    if data is None:
        src = CORPUS_RECIPES / f"{model}.yaml"
        data, base = yaml.safe_load(src.read_text()), src.parent
    source = data["source"]
    if source.get("path"):
        source["path"] = _absolute(base, source["path"])
    if source.get("factory"):
        file, _, call = source["factory"].rpartition(":")
        if file.endswith(".py"):
            source["factory"] = f"{_absolute(base, file)}:{call}"
    for section in ("calibration", "samples"):
        for key in ("data", "images", "labels"):
            if isinstance(data.get(section), dict) and isinstance(data[section].get(key), str):
                data[section][key] = _absolute(base, data[section][key])
    data.pop("output", None)
    data["targets"] = targets
    verify = data.setdefault("verify", {})
    verify["latency"] = {**verify.get("latency", {}), **latency}
    out = folder / "recipes" / f"{model}.{suffix}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def wait_or_stop(proc: subprocess.Popen, timeout: float) -> tuple[int, bool]:
    """(exit code, timed out) of a child started with start_new_session=True. On a timeout its group gets SIGTERM
    (convertctl then stops its children and cleans its staging folder), SIGKILL after 60 s; the code is then 124,
    as `timeout` reports it."""
    import signal

    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return 124, True


def run_cli_logged(argv: list[str], logs: Path, tag: str, timeout: float) -> dict:
    """Run `convertctl ARGV` in its own process group under a timeout; stdout and stderr kept in LOGS. On a timeout
    SIGTERM first (convertctl stops its children and cleans its staging folder), SIGKILL after 60 s."""
    stdout_path, stderr_path = logs / f"{tag}.stdout.json", logs / f"{tag}.stderr.txt"
    t0 = time.perf_counter()
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        proc = subprocess.Popen([CLI, *argv], cwd=ROOT, stdout=so, stderr=se, start_new_session=True)
        rc, timed_out = wait_or_stop(proc, timeout)
    return {"argv": ["convertctl", *argv], "exit_code": rc, "wall_seconds": round(time.perf_counter() - t0, 1),
            "timed_out": timed_out, "stdout": stdout_path, "stderr": stderr_path}


def read_json_doc(path: Path) -> dict | None:
    """The one JSON document `--json` prints (None: nothing, or not JSON: a crash)."""
    text = path.read_text(errors="replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        for line in reversed(text.splitlines()):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def tail(path: Path, n: int = 12) -> list[str]:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-n:]


def target_folder(out: Path, aid: str) -> Path | None:
    """targets/<id>/ of a finished run (OUT) or of one that stopped (OUT.partial)."""
    for base in (out, out.with_name(out.name + ".partial")):
        if (base / "targets" / aid).is_dir():
            return base / "targets" / aid
    return None


def run_machine(dists: tuple[str, ...], gpu: bool = False) -> dict:
    """The machine, the versions of DISTS and the convertctl commit (with uncommitted files) of a corpus run."""
    import importlib.metadata as md

    info = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next((ln.split(":", 1)[1].split() for ln in info if ln.startswith("flags")), [])
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout  # noqa: E731
    versions = {}
    for dist in dists:
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    out = {"cpu": cpu_model(), "cores": os.cpu_count(), "avx512": any(f.startswith("avx512") for f in flags),
           "amx": any(f.startswith("amx") for f in flags), "platform": platform.platform(),
           "python": platform.python_version(), "versions": versions}
    if gpu:
        out["nvidia_smi"] = subprocess.run(["sh", "-c", "nvidia-smi -L 2>&1 || true"], capture_output=True,
                                           text=True).stdout.strip()[:200]
    out["commit"] = git("rev-parse", "--short", "HEAD").strip()
    out["uncommitted"] = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no", "--", "convertctl",
                                               "recipes").splitlines() if ln.strip()]
    return out


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.0f} KB"


def short(reason: str | None, n: int = 160) -> str:
    """One line of REASON for a Markdown table cell, at most N characters."""
    text = " ".join(str(reason or "").split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def corpus_bench_main(description: str, *, models: dict, json_out: Path, timeout: float, section: str, bench,
                      markdown, list_line, needs_recipe=lambda m: True) -> int:
    """The command line every per-corpus-model benchmark shares: --models, --output, --timeout, --keep, --render,
    --list. `bench(models, timeout, keep, output)` measures and returns the JSON document; `markdown(doc)` renders it;
    `section` is its key in run_all.py's JSON; `list_line(model, spec)` is one line of --list."""
    import argparse

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model ids (default: all): " + ",".join(models))
    ap.add_argument("--output", type=Path, default=json_out, help="results JSON (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=timeout, help="seconds per model's run (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (recipes, outputs, logs)")
    ap.add_argument("--render", action="store_true", help="only print the table of --output (this script's JSON or "
                    "run_all.py's)")
    ap.add_argument("--list", action="store_true", help="list the models")
    args = ap.parse_args()
    if args.list:
        for m, spec in models.items():
            print(list_line(m, spec))
        return 0
    if args.render:
        doc = json.loads(args.output.read_text())
        print(markdown(doc.get(section, doc)))
        return 0
    chosen = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    unknown = [m for m in chosen or [] if m not in models]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(models)}")
    missing = [m for m in chosen or models if needs_recipe(m) and not (CORPUS_RECIPES / f"{m}.yaml").is_file()]
    if missing:
        ap.error(f"no recipe for {', '.join(missing)} in {CORPUS_RECIPES}")
    if not (ROOT / "recipes" / "models" / "corpus" / ".complete").exists():
        print("warning: recipes/models/corpus/.complete is missing: run `make models` first", file=sys.stderr)
    doc = bench(chosen, args.timeout, args.keep, args.output)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(markdown(doc))
    print(f"\n{doc['seconds']:.0f} s; results in {args.output}", file=sys.stderr)
    return 0
