"""Fan-out for CI: many recipes (or one recipe's targets) run as separate jobs, then one summary.

Three entry points share this module, so the CLI files stay thin:

* `convertctl run FOLDER`: every recipe directly in FOLDER, each in a child `convertctl run` process,
  `--jobs N` at a time, then one summary (`run_folder`, `summary_json`);
* `convertctl plan RECIPES...`: one CI job per recipe x target, for a GitHub matrix or a GitLab child
  pipeline (`plan_jobs`, `github_matrix`, `gitlab_pipeline`);
* `convertctl merge MANIFESTS...`: the jobs' manifests collected into one release index (`merge`).

Every place that turns many exit codes into one uses `overall_exit_code`: the first of 1, 3, 4, 5, 2
that occurs, else 0 (an internal error hides nothing; a recipe error is reported only when nothing
ran into a worse problem).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from convertctl.errors import ConvertctlError, UsageError

RECIPE_SUFFIXES = (".yaml", ".yml")
# Which exit code a set of runs reports: the first of these that occurs, else 0.
PRECEDENCE = (1, 3, 4, 5, 2)
INDEX_SCHEMA_VERSION = "1.0.0"
RELEASE_KIND = "convertctl-release-index"  # index.json's `kind`: marks a folder `merge` wrote (and may replace)
RELEASE_ENTRIES = ("index.json", "index.md", "manifests")  # everything merge writes in it


def overall_exit_code(codes: Iterable[int]) -> int:
    """The first of PRECEDENCE among `codes`, else 0. A code outside 0-5 (a signal, 130) counts as 1."""
    seen = {c if c in (0, 1, 2, 3, 4, 5) else 1 for c in codes}
    return next((c for c in PRECEDENCE if c in seen), 0)


def is_recipe_file(path: Path) -> bool:
    return path.suffix.lower() in RECIPE_SUFFIXES


def find_recipes(folder: Path) -> list[Path]:
    """The recipes directly in `folder` (*.yaml, *.yml; not recursive), sorted by file name."""
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and is_recipe_file(p))
    if not found:
        raise UsageError(f"no recipes (*.yaml) in {folder}")
    return found


def expand_recipes(arguments: Iterable[str]) -> list[Path]:
    """Recipe files and folders of recipes -> recipe files, in the order given, each once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for arg in arguments:
        path = Path(arg)
        if path.is_dir():
            files = find_recipes(path)
        elif path.is_file() and is_recipe_file(path):
            files = [path]
        elif path.exists():
            raise UsageError(f"{arg} is not a recipe (.yaml) or a folder of recipes")
        else:
            raise UsageError(f"{arg}: no such file or folder")
        for f in files:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it (what a CI job is given), else absolute."""
    absolute = Path(path).absolute()
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


# --- convertctl run FOLDER ---------------------------------------------------------------------------


@dataclass
class RunEntry:
    """One recipe of a folder run: what its child process did."""

    recipe: Path
    name: str
    output: Path
    exit_code: int = 0
    status: str = "pending"
    ok: int = 0
    total: int = 0
    seconds: float = 0.0
    error: str | None = None
    log: Path | None = None
    manifest: dict | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"recipe": display_path(self.recipe), "name": self.name, "output": display_path(self.output),
                "exit_code": self.exit_code, "status": self.status,
                "artifacts": {"ok": self.ok, "total": self.total}, "seconds": round(self.seconds, 2),
                "error": self.error, "log": display_path(self.log) if self.log else None}


def plan_folder_run(folder: Path, out: Path) -> list[RunEntry]:
    """Validate every recipe of `folder` (in this process: cheap) and give each its output folder.

    A recipe that does not validate is an entry with exit code 2 and the validation error; it is not run.
    Two recipes with the same `name` would write the same output folder: the later ones get exit 2 too."""
    from convertctl.recipe import load_recipe

    entries: list[RunEntry] = []
    owner: dict[str, Path] = {}
    for path in find_recipes(folder):
        try:
            recipe, _ = load_recipe(path)
        except ConvertctlError as exc:
            entries.append(RunEntry(path, path.stem, out / path.stem, exit_code=exc.exit_code, status="invalid",
                                    error=exc.message))
            continue
        entry = RunEntry(path, recipe.name, out / recipe.name)
        if recipe.name in owner:
            entry.exit_code, entry.status = 2, "invalid"
            entry.error = (f"{path.name}: recipe name {recipe.name!r} is also the name of {owner[recipe.name].name}; "
                           f"both would write {display_path(entry.output)}")
        else:
            owner[recipe.name] = path
        entries.append(entry)
    return entries


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def child_command(recipe: Path, output: Path, no_latency: bool) -> list[str]:
    cmd = [sys.executable, "-m", "convertctl", "run", str(recipe), "-o", str(output), "--json"]
    return cmd + (["--no-latency"] if no_latency else [])


class _Children:
    """The running child processes, so an interrupt can stop them (and no new ones start)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, cmd: list[str], log) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
            self.procs.add(proc)
            return proc

    def done(self, proc: subprocess.Popen) -> None:
        with self.lock:
            self.procs.discard(proc)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                proc.terminate()


def run_one(entry: RunEntry, no_latency: bool, children: _Children) -> RunEntry:
    """Run one recipe in a child `convertctl run ... --json`; its stderr goes to `<output>.log`."""
    entry.output.parent.mkdir(parents=True, exist_ok=True)
    entry.log = entry.output.parent / f"{entry.output.name}.log"
    start = time.perf_counter()
    with open(entry.log, "w") as log:
        proc = children.start(child_command(entry.recipe, entry.output, no_latency), log)
        if proc is None:
            entry.exit_code, entry.status, entry.error = 130, "error", "not run: interrupted"
            return entry
        try:
            stdout, _ = proc.communicate()
        finally:
            children.done(proc)
    entry.seconds = time.perf_counter() - start
    entry.exit_code = proc.returncode
    try:
        printed = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        printed = None
    if isinstance(printed, dict) and "schema_version" in printed:
        entry.manifest = printed
        entry.status = printed.get("status", "?")
        arts = printed.get("artifacts") or []
        entry.ok, entry.total = sum(a.get("status") == "ok" for a in arts), len(arts)
    else:
        entry.status = "error"
        # the child's own message ({"status": "error", "error": ...} on stdout), else its last words on stderr
        message = printed.get("error") if isinstance(printed, dict) else None
        entry.error = message or _last_line(entry.log.read_text(errors="replace")) or f"exit code {proc.returncode}"
    return entry


def run_folder(entries: list[RunEntry], jobs: int, no_latency: bool,
               on_done: Callable[[RunEntry], None] | None = None) -> list[RunEntry]:
    """Run every valid entry, `jobs` at a time, each in its own process. Returns the entries, in folder order."""
    children = _Children()
    todo = [e for e in entries if e.status == "pending"]
    for e in entries:
        if e.status != "pending" and on_done:
            on_done(e)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="convertctl-run")
    try:
        futures = [pool.submit(run_one, e, no_latency, children) for e in todo]
        for fut in as_completed(futures):
            entry = fut.result()
            if on_done:
                on_done(entry)
    except BaseException:
        children.stop()  # Ctrl-C or a bug here: no child outlives us, none starts
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return entries


def summary_json(entries: list[RunEntry]) -> dict:
    return {"runs": [e.to_json() for e in entries], "exit_code": overall_exit_code(e.exit_code for e in entries)}


# --- convertctl plan -----------------------------------------------------------------------------------


def plan_jobs(recipe_files: list[Path], per: str = "target", root: str = "out") -> list[dict]:
    """One job per recipe x target (`per="recipe"`: one per recipe). Every recipe is validated first;
    the invalid ones are reported together (exit 2)."""
    from convertctl.recipe import load_recipe

    loaded, problems = [], []
    for path in recipe_files:
        try:
            loaded.append((path, load_recipe(path)[0]))
        except ConvertctlError as exc:
            problems.append(exc.message)
    if problems:
        raise UsageError(f"{len(problems)} invalid recipe{'s' if len(problems) > 1 else ''}: " + "; ".join(problems),
                         hint="`convertctl recipe validate FILE` shows one recipe's problems")
    owner: dict[str, Path] = {}
    for path, recipe in loaded:
        if recipe.name in owner:
            raise UsageError(f"{display_path(owner[recipe.name])} and {display_path(path)} are both named "
                             f"{recipe.name!r}: their jobs and output folders would clash",
                             hint="give each recipe a distinct `name`")
        owner[recipe.name] = path
    base = root.rstrip("/") or "."
    jobs = []
    for path, recipe in loaded:
        ids = [t.id for t in recipe.targets] if per == "target" else []
        for target in ids or [None]:  # a recipe without targets (export/check/optimize only) is one job
            jobs.append({
                "name": recipe.name + (f"-{target}" if target else ""),
                "recipe": display_path(path),
                "target": target,
                "output": f"{base}/{recipe.name}" + (f"/{target}" if target else ""),
            })
    return jobs


def github_matrix(jobs: list[dict]) -> str:
    """One line of JSON for `strategy.matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`."""
    return json.dumps({"include": jobs}, separators=(",", ":"))


def write_github_output(matrix: str, path: str) -> None:
    """Append `matrix=...` to the file $GITHUB_OUTPUT names. Failing to is exit 2, not a warning: the jobs that
    read `needs.plan.outputs.matrix` would otherwise get nothing and silently build nothing."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"matrix={matrix}\n")
    except OSError as exc:
        raise UsageError(f"cannot write the job output to GITHUB_OUTPUT={path}: {exc.strerror or exc}",
                         hint="GITHUB_OUTPUT must name a writable file (GitHub Actions sets it); unset it outside "
                              "Actions, or use --format json") from None


def job_command(job: dict) -> str:
    cmd = ["convertctl", "run", job["recipe"]]
    if job["target"]:
        cmd += ["--target", job["target"]]
    return shlex.join(cmd + ["-o", job["output"]])


def gitlab_pipeline(jobs: list[dict], root: str = "out") -> str:
    """A child pipeline: one `build` job per entry (its output folder kept as an artifact, also when it fails),
    then `release`, which merges every job's manifest (a parent pipeline cannot read a child's artifacts).

    It holds no image and no install step: the parent prepends a `default:` section (docs/ci/gitlab-ci.yml)."""
    import yaml

    base = root.rstrip("/") or "."
    doc: dict = {"stages": ["build", "release"]}
    for job in jobs:
        doc[f"build:{job['name']}"] = {
            "stage": "build",
            "script": [job_command(job)],
            "artifacts": {"when": "always", "paths": [job["output"], f"{job['output']}.partial"]},
        }
    doc["release"] = {
        "stage": "release",
        "when": "always",  # also after a failed build: the index says which one, and merge exits with its code
        "script": [f"convertctl merge {shlex.quote(base)}/* -o release"],
        "artifacts": {"when": "always", "paths": ["release"]},
    }
    header = "# generated by `convertctl plan --format gitlab`: one job per recipe x target, then the release\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=1000)


# --- convertctl merge ----------------------------------------------------------------------------------


def collect_manifests(arguments: Iterable[str]) -> tuple[list[Path], list[Path]]:
    """Manifest files from the arguments: a file, a folder's manifest.json, else the manifest.json of each of
    its sub-folders. Returns (manifests, sub-folders without one: jobs that did not finish)."""
    found: list[Path] = []
    incomplete: list[Path] = []
    for arg in arguments:
        path = Path(arg)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            if (path / "manifest.json").is_file():
                found.append(path / "manifest.json")
                continue
            # hidden folders are staging folders; a release folder (merged into out/release) is no job
            subs = sorted(p for p in _listing(path) if p.is_dir() and not p.name.startswith(".") and not is_release(p))
            here = [p / "manifest.json" for p in subs if (p / "manifest.json").is_file()]
            if not here:
                raise UsageError(f"{arg}: no manifest.json in it or in its sub-folders",
                                 hint="give run output folders (each with a manifest.json), or the folder holding them")
            found += here
            incomplete += [p for p in subs if not (p / "manifest.json").is_file()]
        elif path.exists():
            raise UsageError(f"{arg}: not a regular file or a folder")
        else:
            raise UsageError(f"{arg}: no such file or folder")
    return found, incomplete  # a manifest given twice is kept twice: merge reports it as a duplicate


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise UsageError(f"{folder}: cannot list it: {exc.strerror or exc}") from None


def read_manifest(path: Path) -> tuple[dict, bytes]:
    """One manifest, checked (report/manifest.py: JSON, schema major, types, values): as a dict, and its bytes."""
    from convertctl.report.manifest import read_manifest as read_checked

    manifest, raw = read_checked(path, display_path(path))
    return manifest.model_dump(mode="json"), raw


def manifest_target_ids(manifest: dict) -> list[str]:
    """The targets the run built: from the recipe as run (command-line --target applied), else its artifacts."""
    content = manifest["recipe"].get("content") or {}
    targets = content.get("targets")
    if isinstance(targets, list):
        return [t.get("name") or f"{t.get('runtime')}_{t.get('precision')}" for t in targets]
    return [a["id"] for a in manifest.get("artifacts") or []]


def _first_cosine(artifact: dict) -> float | None:
    gate = (artifact.get("verification") or [None])[0]
    outputs = (gate or {}).get("outputs") or {}
    first = next(iter(outputs.values()), None)
    return first.get("cosine") if isinstance(first, dict) else None


def _p50(artifact: dict) -> float | None:
    lat = artifact.get("latency") or {}
    return lat.get("p50_ms") if lat.get("status") == "measured" else None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "_.+-" else "_" for c in text)


def merge(arguments: Iterable[str], release: Path) -> dict:
    """Copy the manifests into `release`/manifests/, write index.json and index.md; return the index.

    Everything is checked first; the release is assembled in a staging folder beside it and renamed into place
    only when complete, so a failure leaves no half-written release. An existing `release` is replaced only
    when it is empty or a previous merge's output (index.json of kind RELEASE_KIND, nothing else of the user's)."""
    paths, incomplete = collect_manifests(arguments)
    loaded = [(p, *read_manifest(p)) for p in paths]
    refuse_duplicates(loaded)
    release = Path(os.path.abspath(release))
    check_release_folder(release)
    staging = release.parent / f".{release.name}.merge-staging-{os.getpid()}"
    try:
        index = write_release(staging, loaded, incomplete)
        swap_in(staging, release)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"cannot write the release folder {release}: {exc.strerror or exc}",
                         hint="choose another folder with -o") from None
    except BaseException:  # a bug or an interrupt: nothing half-written stays either
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def refuse_duplicates(loaded: list[tuple[Path, dict, bytes]]) -> None:
    """The same artifact (recipe name, target id) from two manifests: which one is the release's is unknowable."""
    owner: dict[tuple[str, str], Path] = {}
    for p, m, _ in loaded:
        name, ids = m["recipe"]["name"], manifest_target_ids(m)
        for key in [(name, i) for i in ids] or [(name, "")]:
            if key in owner:
                what = f"target {key[1]} of recipe {name}" if key[1] else f"recipe {name}"
                where = (f"{p} is given twice" if owner[key].resolve() == p.resolve()
                         else f"it is in both {owner[key]} and {p}")
                raise UsageError(f"duplicate: {what}: {where}", hint="merge each job's output once")
            owner[key] = p


def is_release(folder: Path) -> bool:
    """True for a folder a previous merge wrote: its index.json says so (written last, so the folder is whole)."""
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(index, dict) and index.get("kind") == RELEASE_KIND


def check_release_folder(release: Path) -> None:
    """Refuse a `release` merge may not replace: a file, a link, or a folder that is not a merge output (or holds
    something a merge did not write): the user's files are never deleted."""
    fix = "choose an empty or new folder with -o"
    if release.is_symlink():
        raise UsageError(f"release folder {release} is a symbolic link; merge replaces its release folder as a whole",
                         hint=f"give the real folder it points to, or {fix}")
    if not release.exists():
        return
    if not release.is_dir():
        raise UsageError(f"release path {release} exists and is not a folder", hint=fix)
    entries = sorted(p.name for p in release.iterdir())
    if not entries:
        return
    if not is_release(release):
        raise UsageError(f"release folder {release} exists and is not the output of `convertctl merge` (no index.json "
                         f"of kind {RELEASE_KIND}): it is left alone", hint=fix)
    foreign = [e for e in entries if e not in RELEASE_ENTRIES]
    if foreign:
        raise UsageError(f"release folder {release} holds {foreign[0]}, which `convertctl merge` did not write: the "
                         "folder would be replaced as a whole, so it is left alone", hint=fix)


def write_release(folder: Path, loaded: list[tuple[Path, dict, bytes]], incomplete: list[Path]) -> dict:
    """manifests/, index.json and index.md in `folder` (created here); index.json last. Returns the index."""
    shutil.rmtree(folder, ignore_errors=True)  # a killed merge of this process id: never ours to keep
    (folder / "manifests").mkdir(parents=True)
    per_recipe: dict[str, int] = {}
    for _, m, _ in loaded:
        per_recipe[m["recipe"]["name"]] = per_recipe.get(m["recipe"]["name"], 0) + 1
    entries, used = [], set()
    for p, m, raw in loaded:
        name, ids = m["recipe"]["name"], manifest_target_ids(m)
        stem = _safe(name) + (f"__{_safe('+'.join(ids))}" if per_recipe[name] > 1 and ids else "")
        candidate, n = stem, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{stem}-{n}"
        used.add(candidate.lower())
        relative = f"manifests/{candidate}.json"
        (folder / relative).write_bytes(raw)  # the bytes that were checked, not the file as it is now
        entries.append(index_entry(p, m, relative, hashlib.sha256(raw).hexdigest(), ids))
    index = {
        "schema_version": INDEX_SCHEMA_VERSION,
        "kind": RELEASE_KIND,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "entries": entries,
        "incomplete": [display_path(p) for p in incomplete],
        "exit_code": overall_exit_code(e["exit_code"] for e in entries),
    }
    (folder / "index.md").write_text(index_markdown(index))
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n")  # last: it marks a whole release
    return index


def index_entry(source: Path, m: dict, relative: str, sha: str, ids: list[str]) -> dict:
    return {
        "recipe": m["recipe"]["name"],
        "recipe_sha256": m["recipe"]["sha256"],
        "targets": ids,
        "source": display_path(source),
        "manifest": relative,
        "manifest_sha256": sha,
        "status": m["status"],
        "exit_code": m["exit_code"],
        "artifacts": [{"id": a["id"], "runtime": a["runtime"], "precision": a["precision"], "status": a["status"],
                       "files": [f["path"] for f in a["files"]], "cosine": _first_cosine(a), "p50_ms": _p50(a)}
                      for a in m["artifacts"]],
    }


def swap_in(staging: Path, release: Path) -> None:
    """Put the complete staging folder in `release`'s place; a previous release is removed only afterwards."""
    old = None
    if release.exists():
        check_release_folder(release)  # again: the user may have put files there meanwhile
        if any(release.iterdir()):
            old = release.parent / f".{release.name}.merge-old-{os.getpid()}"
            os.replace(release, old)
        else:
            release.rmdir()  # an empty folder: nothing is lost
    try:
        os.replace(staging, release)
    except OSError:
        if old is not None:
            os.replace(old, release)  # the previous release goes back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def index_markdown(index: dict) -> str:
    def num(value, fmt):
        return "–" if value is None else format(value, fmt)

    lines = [f"# convertctl release ({index['created_at']})", "",
             "| recipe | artifact | status | cosine | p50 ms |", "|---|---|---|---:|---:|"]
    for e in index["entries"]:
        for a in e["artifacts"]:
            lines.append(f"| {e['recipe']} | {a['id']} | {a['status']} | {num(a['cosine'], '.6f')} | "
                         f"{num(a['p50_ms'], '.2f')} |")
        if not e["artifacts"]:
            lines.append(f"| {e['recipe']} | – | {e['status']} | – | – |")
    lines += ["", f"{len(index['entries'])} manifest(s), exit code {index['exit_code']}."]
    for p in index.get("incomplete") or []:
        lines.append(f"- {p}: no manifest.json (the job did not finish)")
    return "\n".join(lines) + "\n"


def env_github_output() -> str | None:
    return os.environ.get("GITHUB_OUTPUT") or None
