"""Compare two manifests of the same recipe: accuracy and latency deltas per artifact, judged by thresholds.

Pure logic on manifest dicts (stdlib + pydantic), so a CI job can diff manifests without any runtime installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from convertctl.errors import EXIT_ACCURACY_GATE, EXIT_OK, EXIT_PERF_REGRESSION, UsageError
from convertctl.report.manifest import read_manifest
from convertctl.report.markdown import fmt_ms

# "drops more than" must not flip on float rounding (1.0 - 0.99 is 0.010000000000000009)
EPS = 1e-9
METRICS = ("cosine", "max_abs", "top1_agreement", "sqnr_db")
THRESHOLD_KEYS = ("max_cosine_drop", "max_top1_agreement_drop", "max_accuracy_drop", "max_latency_increase")


class RunRef(BaseModel):
    path: str  # the manifest.json read
    schema_version: str
    status: str
    exit_code: int
    started_at: str
    recipe_sha256: str


class RecipeRef(BaseModel):
    name: str
    base_sha256: str
    new_sha256: str
    same: bool  # the same recipe bytes; a changed recipe is allowed (that is often the point) but noted


class Thresholds(BaseModel):
    max_cosine_drop: float
    max_top1_agreement_drop: float
    max_accuracy_drop: float
    max_latency_increase: float
    source: str  # where they came from, e.g. "NEW's recipe (verify.regression); --max-cosine-drop"


class MetricDelta(BaseModel):
    base: float | None = None
    new: float | None = None
    change: float | None = None  # new - base


class OutputDelta(BaseModel):
    cosine: MetricDelta
    max_abs: MetricDelta
    top1_agreement: MetricDelta
    sqnr_db: MetricDelta
    regression: bool = False


class AccuracyDelta(BaseModel):
    base_top1: float | None = None
    new_top1: float | None = None
    change: float | None = None  # new - base, a fraction
    regression: bool = False


class LatencyDelta(BaseModel):
    base_p50_ms: float | None = None
    new_p50_ms: float | None = None
    change: float | None = None  # relative: new / base - 1
    noise: float | None = None  # max over both runs of (p90 - p50) / p50
    allowed: float | None = None  # max_latency_increase + noise
    regression: bool = False
    note: str | None = None  # why it was not compared


class SizeDelta(BaseModel):
    base_bytes: int
    new_bytes: int
    change: int  # bytes


class ArtifactDiff(BaseModel):
    id: str
    status_base: str
    status_new: str
    gate: str | None = None  # what the accuracy gate compared against (verification[0].against)
    outputs: dict[str, OutputDelta] = Field(default_factory=dict)
    accuracy: AccuracyDelta | None = None
    latency: LatencyDelta | None = None
    size: SizeDelta
    regressions: list[str] = Field(default_factory=list)


class OpsDiff(BaseModel):
    added: dict[str, int] = Field(default_factory=dict)
    removed: dict[str, int] = Field(default_factory=dict)
    changed: dict[str, list[int]] = Field(default_factory=dict)  # op -> [base, new]


class DiffReport(BaseModel):
    base: RunRef
    new: RunRef
    recipe: RecipeRef
    thresholds: Thresholds
    artifacts: list[ArtifactDiff] = Field(default_factory=list)  # those in both runs, in NEW's order
    added: list[str] = Field(default_factory=list)  # artifact ids only in NEW
    removed: list[str] = Field(default_factory=list)  # artifact ids only in BASE (a warning, not a regression)
    latency_baseline: LatencyDelta | None = None  # the FP32 ONNX in ONNX Runtime: reported, never gated
    ops: OpsDiff = Field(default_factory=OpsDiff)
    packages: dict[str, list[str | None]] = Field(default_factory=dict)  # name -> [base, new], differing only
    environment_differences: dict[str, list[Any]] = Field(default_factory=dict)  # key -> [base, new]
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    regressions: list[str] = Field(default_factory=list)  # each printed as "REGRESSION: <line>"
    exit_code: int = EXIT_OK


# ---------------------------------------------------------------------------------------------------- loading


def manifest_path(given: str | Path, label: str) -> Path:
    """A manifest.json, or a run folder holding one."""
    path = Path(given)
    if path.is_dir():
        path = path / "manifest.json"
        if not path.is_file():
            raise UsageError(f"{label} {given}: no manifest.json in this folder",
                             hint="give a run's output folder or its manifest.json")
    elif not path.is_file():
        what = "not a regular file" if path.exists() else "no such file"
        raise UsageError(f"{label} {given}: {what}", hint="give a run's output folder or its manifest.json")
    return path


def load(given: str | Path, label: str) -> tuple[Path, dict]:
    """Read and check one side (manifest.read_manifest: JSON, schema major, types, values); returns the manifest
    as a dict with the defaults of older schemas filled in."""
    path = manifest_path(given, label)
    manifest, _ = read_manifest(path, f"{label} {path}")
    return path, manifest.model_dump(mode="json")


# ------------------------------------------------------------------------------------------------- thresholds


def _recipe_regression(manifest: dict) -> dict | None:
    verify = (manifest["recipe"].get("content") or {}).get("verify") or {}
    return verify.get("regression")


def resolve_thresholds(base: dict, new: dict, overrides: dict[str, float | None] | None = None) -> Thresholds:
    """NEW's recipe verify.regression, else BASE's (a manifest older than it has none), else the defaults;
    each command-line flag overrides its one value."""
    from convertctl.recipe import Regression  # imported here: the recipe module pulls in numpy

    source, data = "defaults", {}
    for label, manifest in (("NEW", new), ("BASE", base)):
        found = _recipe_regression(manifest)
        if found is not None:
            source, data = f"{label}'s recipe verify.regression", found
            break
    try:
        values = Regression(**data).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"{source}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    values.update(flags)
    if flags:
        source += "; " + ", ".join("--" + k.replace("_agreement", "").replace("_", "-") for k in flags)
    return Thresholds(**values, source=source)


# ----------------------------------------------------------------------------------------------------- deltas


def _delta(base: float | None, new: float | None) -> MetricDelta:
    return MetricDelta(base=base, new=new, change=None if base is None or new is None else new - base)


def _noise(lat: dict) -> float:
    """The run's own spread: how far p90 sits above p50, relative (never negative)."""
    if not lat.get("p90_ms") or not lat.get("p50_ms"):
        return 0.0
    return max(0.0, (lat["p90_ms"] - lat["p50_ms"]) / lat["p50_ms"])


def latency_delta(base: dict | None, new: dict | None, limit: float | None) -> LatencyDelta | None:
    """p50 change against limit + noise; limit None: reported only (the baseline measurement)."""
    if base is None and new is None:
        return None
    out = LatencyDelta(base_p50_ms=base and base.get("p50_ms"), new_p50_ms=new and new.get("p50_ms"))
    states = [(side, lat["status"] if lat else "not timed") for side, lat in (("BASE", base), ("NEW", new))]
    if any(s != "measured" for _, s in states) or not out.base_p50_ms or not out.new_p50_ms:
        out.note = "not compared: " + ", ".join(f"{side} {s}" for side, s in states)
        return out
    out.change = out.new_p50_ms / out.base_p50_ms - 1
    out.noise = max(_noise(base), _noise(new))
    if limit is not None:
        out.allowed = limit + out.noise
        out.regression = out.change > out.allowed + EPS
    return out


def _pct(x: float, sign: str = "+") -> str:
    return f"{x * 100:{sign}.1f}%"


def _gate(artifact: dict) -> dict | None:
    ver = artifact.get("verification") or []
    return ver[0] if ver else None


def compare_artifact(base: dict, new: dict, th: Thresholds, warnings: list[str]) -> tuple[ArtifactDiff, list, list]:
    """One artifact in both runs -> its diff, its accuracy regressions, its latency regressions."""
    aid = new["id"]
    acc_regs: list[str] = []
    lat_regs: list[str] = []
    bb, nb = (sum(f["bytes"] for f in a["files"]) for a in (base, new))
    size = SizeDelta(base_bytes=bb, new_bytes=nb, change=nb - bb)
    diff = ArtifactDiff(id=aid, status_base=base["status"], status_new=new["status"], size=size)

    sb, sn = base["status"], new["status"]
    if sb == "ok" and sn in ("failed", "error"):
        acc_regs.append(f"{aid}: status ok -> {sn}" + (f" ({new['reason']})" if new.get("reason") else ""))
    elif sb != sn:
        why = f" ({new['reason']})" if new.get("reason") else ""
        warnings.append(f"{aid}: status {sb} -> {sn}{why}" + (": not compared" if sn == "skipped" else ""))

    gb, gn = _gate(base), _gate(new)
    if gb and gn:
        diff.gate = gn["against"]
        if gb["against"] != gn["against"]:
            warnings.append(f"{aid}: the accuracy gate compared against {gb['against']!r} in BASE, "
                            f"{gn['against']!r} in NEW")
        for name in [*gn["outputs"], *(n for n in gb["outputs"] if n not in gn["outputs"])]:
            ob, on = gb["outputs"].get(name) or {}, gn["outputs"].get(name) or {}
            od = OutputDelta(**{m: _delta(ob.get(m), on.get(m)) for m in METRICS})
            cos, top1 = od.cosine, od.top1_agreement
            if on.get("decided_by") == "absolute":  # no signal in the reference: cosine and top-1 mean nothing
                diff.outputs[name] = od
                continue
            if cos.change is not None and -cos.change > th.max_cosine_drop + EPS:
                od.regression = True
                acc_regs.append(f"{aid}: output {name!r}: cosine {cos.base:.6f} -> {cos.new:.6f} "
                                f"(drop {-cos.change:.3g} > {th.max_cosine_drop:.3g})")
            if top1.change is not None and -top1.change > th.max_top1_agreement_drop + EPS:
                od.regression = True
                acc_regs.append(f"{aid}: output {name!r}: top-1 agreement {top1.base:.3f} -> {top1.new:.3f} "
                                f"(drop {-top1.change:.3g} > {th.max_top1_agreement_drop:.3g})")
            diff.outputs[name] = od

    ab, an = base.get("accuracy"), new.get("accuracy")
    if ab or an:
        acc = AccuracyDelta(base_top1=ab and ab.get("top1"), new_top1=an and an.get("top1"))
        if acc.base_top1 is not None and acc.new_top1 is not None:
            acc.change = acc.new_top1 - acc.base_top1
            if -acc.change > th.max_accuracy_drop + EPS:
                acc.regression = True
                acc_regs.append(f"{aid}: labelled top-1 accuracy {acc.base_top1:.4f} -> {acc.new_top1:.4f} "
                                f"(drop {-acc.change * 100:.2f} points > {th.max_accuracy_drop * 100:.2f})")
        diff.accuracy = acc

    lat = latency_delta(base.get("latency"), new.get("latency"), th.max_latency_increase)
    if lat is not None and lat.note and sn == sb == "ok":
        warnings.append(f"{aid}: latency {lat.note}")
    if lat is not None and lat.regression:
        lat_regs.append(f"{aid}: p50 latency {fmt_ms(lat.base_p50_ms)} ms -> {fmt_ms(lat.new_p50_ms)} ms "
                        f"({_pct(lat.change)}), more than the allowed {_pct(th.max_latency_increase, '')} plus the "
                        f"runs' own noise {_pct(lat.noise, '')} (= {_pct(lat.allowed, '')})")
    diff.latency = lat
    diff.regressions = acc_regs + lat_regs
    return diff, acc_regs, lat_regs


def _op_counts(manifest: dict) -> dict[str, int]:
    for stage in manifest["stages"]:
        if stage["name"] == "check":
            return dict(stage["details"].get("op_counts") or {})
    return {}


def compare_ops(base: dict, new: dict) -> OpsDiff:
    ob, on = _op_counts(base), _op_counts(new)
    return OpsDiff(added={k: v for k, v in on.items() if k not in ob},
                   removed={k: v for k, v in ob.items() if k not in on},
                   changed={k: [ob[k], on[k]] for k in on if k in ob and ob[k] != on[k]})


def compare_environments(base: dict, new: dict) -> tuple[dict, dict]:
    """(package versions that differ, other environment keys that differ: cpu, python, cpu_flags, gpus, …)."""
    eb, en = base["environment"], new["environment"]
    pb, pn = eb.get("packages") or {}, en.get("packages") or {}
    packages = {k: [pb.get(k), pn.get(k)] for k in [*pb, *(k for k in pn if k not in pb)] if pb.get(k) != pn.get(k)}
    keys = [*eb, *(k for k in en if k not in eb)]
    env = {k: [eb.get(k), en.get(k)] for k in keys if k != "packages" and eb.get(k) != en.get(k)}
    return packages, env


def machine_differences(env: dict[str, list], packages_differ: bool) -> dict[str, list]:
    """The differences worth the "different machines" warning. The fingerprint hashes the other keys AND the
    package versions: it only counts when nothing else explains it (a package upgrade is not another machine)."""
    machine = {k: v for k, v in env.items() if k != "fingerprint"}
    if "fingerprint" in env and not machine and not packages_differ:
        machine["fingerprint"] = env["fingerprint"]
    return machine


def _env_change(key: str, base: Any, new: Any) -> str:
    """`cpu: A -> B`; for lists (cpu_flags, gpus) only what was added and removed: `cpu_flags: +amx_tile -avx512f`."""
    if isinstance(base, list) and isinstance(new, list):
        name = lambda v: v.get("name", str(v)) if isinstance(v, dict) else str(v)  # noqa: E731
        b, n = [name(v) for v in base], [name(v) for v in new]
        changes = [f"+{v}" for v in n if v not in b] + [f"-{v}" for v in b if v not in n]
        return f"{key}: {' '.join(changes) or 'reordered'}"
    return f"{key}: {base} -> {new}"


def diff_manifests(base: dict, new: dict, base_path: str = "BASE", new_path: str = "NEW",
                   overrides: dict[str, float | None] | None = None) -> DiffReport:
    """Both manifests as loaded by `load`; `overrides`: threshold name -> value from the command line."""
    nb, nn = base["recipe"]["name"], new["recipe"]["name"]
    if nb != nn:
        raise UsageError(f"BASE is recipe {nb!r}, NEW is recipe {nn!r}: diff compares two runs of the same recipe",
                         hint="diff each run against a baseline of its own recipe")
    th = resolve_thresholds(base, new, overrides)

    def ref(m: dict, path: str) -> RunRef:
        return RunRef(path=path, schema_version=m["schema_version"], status=m["status"], exit_code=m["exit_code"],
                      started_at=m["started_at"], recipe_sha256=m["recipe"]["sha256"])

    sha_b, sha_n = base["recipe"]["sha256"], new["recipe"]["sha256"]
    report = DiffReport(base=ref(base, base_path), new=ref(new, new_path), thresholds=th,
                        recipe=RecipeRef(name=nn, base_sha256=sha_b, new_sha256=sha_n, same=sha_b == sha_n))
    if sha_b != sha_n:
        report.notes.append(f"the recipe changed between the runs (sha256 {sha_b[:12]} -> {sha_n[:12]})")

    by_id = {a["id"]: a for a in base["artifacts"]}
    new_ids = {a["id"] for a in new["artifacts"]}
    acc_regs: list[str] = []
    lat_regs: list[str] = []
    for a in new["artifacts"]:
        if a["id"] not in by_id:
            report.added.append(a["id"])
            continue
        d, acc, lat = compare_artifact(by_id[a["id"]], a, th, report.warnings)
        report.artifacts.append(d)
        acc_regs += acc
        lat_regs += lat
    report.removed = [i for i in by_id if i not in new_ids]
    for aid in report.removed:
        report.warnings.append(f"artifact {aid} is in BASE but not in NEW")
    if report.added:
        report.notes.append(f"new artifacts, nothing to compare with: {', '.join(report.added)}")

    report.latency_baseline = latency_delta(base.get("latency_baseline"), new.get("latency_baseline"), None)
    report.ops = compare_ops(base, new)
    report.packages, report.environment_differences = compare_environments(base, new)
    machine = machine_differences(report.environment_differences, bool(report.packages))
    if machine:
        what = ", ".join(_env_change(k, b, n) for k, (b, n) in machine.items())
        report.warnings.append(f"the runs come from different environments ({what}): "
                               "latency deltas compare different machines")
    report.regressions = acc_regs + lat_regs
    report.exit_code = EXIT_ACCURACY_GATE if acc_regs else EXIT_PERF_REGRESSION if lat_regs else EXIT_OK
    return report


def diff_paths(base: str | Path, new: str | Path, overrides: dict[str, float | None] | None = None) -> DiffReport:
    bp, bm = load(base, "BASE")
    np_, nm = load(new, "NEW")
    return diff_manifests(bm, nm, str(bp), str(np_), overrides)


# -------------------------------------------------------------------------------------------------- rendering


def verdict(report: DiffReport) -> str:
    n = len(report.regressions)
    return f"{n} regression{'s' if n > 1 else ''}: exit {report.exit_code}" if n else "no regression"


def fmt_num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def cells(a: ArtifactDiff) -> dict[str, str]:
    """One artifact as table cells, shared by the terminal table and the Markdown."""
    worst = None
    if a.outputs:  # the output whose cosine moved most
        worst = min(a.outputs.values(), key=lambda o: o.cosine.change if o.cosine.change is not None else 0)
    status = a.status_new if a.status_base == a.status_new else f"{a.status_base} -> {a.status_new}"
    lat = a.latency
    sign = lambda v: "–" if v is None else f"{v:+d}"  # noqa: E731
    return {
        "artifact": a.id,
        "status": status,
        "cosine": "–" if worst is None else
        f"{fmt_num(worst.cosine.base, '.6f')} -> {fmt_num(worst.cosine.new, '.6f')}",
        "top-1 agr.": "–" if worst is None else
        f"{fmt_num(worst.top1_agreement.base, '.3f')} -> {fmt_num(worst.top1_agreement.new, '.3f')}",
        "accuracy": "–" if a.accuracy is None else
        f"{fmt_num(a.accuracy.base_top1, '.4f')} -> {fmt_num(a.accuracy.new_top1, '.4f')}",
        "p50 ms": "–" if lat is None else f"{fmt_ms(lat.base_p50_ms)} -> {fmt_ms(lat.new_p50_ms)}",
        "change": "–" if lat is None or lat.change is None else _pct(lat.change),
        "noise": "–" if lat is None or lat.noise is None else _pct(lat.noise, ""),
        "size Δ bytes": sign(a.size.change),
        "verdict": "REGRESSION" if a.regressions else "ok",
    }


def to_markdown(report: DiffReport) -> str:
    """The diff as Markdown, for a CI job page."""
    th = report.thresholds
    lines = [f"# convertctl diff: {report.recipe.name}", "",
             f"**{verdict(report)}**", "",
             f"- BASE: `{report.base.path}` ({report.base.status}, {report.base.started_at})",
             f"- NEW: `{report.new.path}` ({report.new.status}, {report.new.started_at})",
             f"- thresholds ({th.source}): cosine drop ≤ {th.max_cosine_drop:g}, top-1 agreement drop ≤ "
             f"{th.max_top1_agreement_drop:g}, accuracy drop ≤ {th.max_accuracy_drop:g}, p50 increase ≤ "
             f"{_pct(th.max_latency_increase, '')} + noise", ""]
    if report.artifacts:
        rows = [cells(a) for a in report.artifacts]
        head = list(rows[0])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r[h].replace("|", "\\|") for h in head) + " |" for r in rows]
        lines.append("")
    if report.latency_baseline and report.latency_baseline.change is not None:
        b = report.latency_baseline
        lines += [f"Latency baseline (onnx fp32, onnxruntime; not gated): p50 {fmt_ms(b.base_p50_ms)} -> "
                  f"{fmt_ms(b.new_p50_ms)} ms ({_pct(b.change)})", ""]
    for title, items in (("Regressions", report.regressions), ("Warnings", report.warnings),
                         ("Notes", report.notes)):
        if items:
            lines += [f"## {title}", "", *[f"- {i}" for i in items], ""]
    ops = report.ops
    if ops.added or ops.removed or ops.changed:
        lines += ["## Operators", "", *[f"- added {k} x{v}" for k, v in ops.added.items()],
                  *[f"- removed {k} x{v}" for k, v in ops.removed.items()],
                  *[f"- {k}: {b} -> {n}" for k, (b, n) in ops.changed.items()], ""]
    if report.packages:
        lines += ["## Packages", "", *[f"- {k}: {b} -> {n}" for k, (b, n) in report.packages.items()], ""]
    return "\n".join(lines)
