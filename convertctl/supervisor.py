"""A native crash (a segfault or abort inside ONNX Runtime, OpenVINO, NNCF, ...) is contained and reported.

The commands that load runtimes run in a child process of a thin parent (this module; the parent imports
no runtime). The child leaves breadcrumbs in a state file: the stage in flight, the artifact, the staging
folder. If the child dies by a signal it did not ask for (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, or
SIGKILL from the kernel's OOM killer), the parent:
- when the crash was in one target's build or verification, runs the command again with that target
  marked as crashed (the stage cache makes the stages before it cheap), so the other targets still run and
  the manifest records the crashed one as an error with the signal and the Python stack;
- otherwise keeps the staging folder as `<out>.partial/` with ERROR.txt (stage, signal, Python stack from
  faulthandler), prints one line naming the stage (a JSON object with --json), and exits 1.
Signals sent to the parent (SIGINT, SIGTERM, SIGHUP) are passed on to the child, which stops as usual.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STATE_ENV = "CONVERTCTL_SUPERVISED"  # the child's state file; set only for the supervised child itself
CRASHED_ENV = "CONVERTCTL_CRASHED"  # JSON {artifact id: reason} of targets that crashed an earlier attempt
FAULT_ENV = "CONVERTCTL_FAULT_AT"  # testing aid: a stage name ('quantize', 'build X') at which to segfault
FAULT_KILL_ENV = "CONVERTCTL_FAULT_KILL"  # testing aid: "1" to SIGKILL itself there instead, as `kill -9` would
COMMANDS = {"run", "build", "quantize", "export", "optimize", "check"}  # the ones that load runtimes
CRASH_SIGNALS = {signal.SIGSEGV: "a segmentation fault", signal.SIGABRT: "an abort", signal.SIGBUS: "a bus error",
                 signal.SIGFPE: "a floating-point exception", signal.SIGILL: "an illegal instruction",
                 signal.SIGKILL: "killed, most often by the kernel's out-of-memory killer",
                 signal.SIGTRAP: "a trap", signal.SIGSYS: "a bad system call"}

_state_file: Path | None = None
_state: dict = {}


# -- in the child -------------------------------------------------------------------------------------------
def enter_child() -> None:
    """In a supervised child: remember the state file (and take it out of the environment, so processes this
    one starts are supervised on their own), and write Python's stack to a file beside it on a crash."""
    global _state_file
    path = os.environ.pop(STATE_ENV, None)
    if not path:
        return
    import faulthandler

    _state_file = Path(path)
    trace = open(str(_state_file) + ".trace", "w")  # noqa: SIM115 - must stay open until the process ends
    faulthandler.enable(file=trace, all_threads=False)


def note(**fields) -> None:
    """Record where the run is (stage, artifact, staging folder...); a no-op unless supervised."""
    if _state_file is not None:
        _state.update(fields)
        tmp = _state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(_state, default=str))
        os.replace(tmp, _state_file)
    if fields.get("stage") and fields["stage"] == os.environ.get(FAULT_ENV):
        import faulthandler

        if os.environ.get(FAULT_KILL_ENV) == "1":
            os.kill(os.getpid(), signal.SIGKILL)

        faulthandler._sigsegv()  # a real segmentation fault in C code, for the tests of this module


def crashed_targets() -> dict[str, str]:
    """{artifact id: what happened} for targets that crashed convertctl in an earlier attempt of this command."""
    try:
        value = json.loads(os.environ.get(CRASHED_ENV) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


class Breadcrumbs:
    """A reporter that also notes each stage as it starts (what a crash report names)."""

    def __init__(self, reporter):
        self._reporter = reporter

    def start(self, stage: str, detail: str = "") -> None:
        note(stage=stage)
        self._reporter.start(stage, detail)

    def __getattr__(self, name):
        return getattr(self._reporter, name)


# -- in the parent ------------------------------------------------------------------------------------------
def wanted(argv: list[str]) -> bool:
    """Supervise this command line? Only the commands that load runtimes, never twice, and never for --help."""
    if os.environ.get(STATE_ENV) or os.environ.get("CONVERTCTL_NO_SUPERVISOR"):
        return False
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] in COMMANDS and "--help" not in argv and "-h" not in argv


def supervise(argv: list[str]) -> int:
    """Run `convertctl argv` in a child and return its exit code, turning a native crash into a report."""
    crashed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="convertctl-supervisor-") as tmp:
        for attempt in range(1, 50):
            state_path = Path(tmp) / f"state-{attempt}.json"
            ooms = oom_kills()
            code = _attempt(argv, state_path, crashed)
            if code >= 0:
                return code
            sig = signal.Signals(-code)
            state = _read_json(state_path)
            trace = _read_text(Path(str(state_path) + ".trace"))
            what = f"{sig.name} ({CRASH_SIGNALS.get(sig, 'a signal')})"
            stage = state.get("stage") or "start-up"
            if sig == signal.SIGKILL and ooms is not None:  # the cgroup's counter tells the OOM killer from a person
                if oom_kills() == ooms:  # killed from outside (kill -9, a CI timeout): not a crash, never rerun
                    return _report(argv, state, stage, "SIGKILL (killed by another process, not the out-of-memory "
                                   "killer)", trace, code=128 + signal.SIGKILL)
                what = "SIGKILL (killed by the kernel's out-of-memory killer)"
            target = _target_of(stage)
            if target and target not in crashed and state.get("staging"):
                crashed[target] = f"crashed convertctl natively: {what} during '{stage}'" + _last_frame(trace)
                print(f"convertctl: {target} crashed natively ({what}) during '{stage}'; running again without "
                      "it, so the other targets still run", file=sys.stderr, flush=True)
                continue
            return _report(argv, state, stage, what, trace)
    return 1


def _attempt(argv: list[str], state_path: Path, crashed: dict[str, str]) -> int:
    env = dict(os.environ, **{STATE_ENV: str(state_path)})
    if crashed:
        env[CRASHED_ENV] = json.dumps(crashed)
    proc = subprocess.Popen([sys.executable, "-m", "convertctl", *argv], env=env, preexec_fn=_die_with_parent)

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except InterruptedError:
                continue
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if code < 0 and signal.Signals(-code) not in CRASH_SIGNALS:
        return 128 - code  # stopped by a signal it did not handle: the shell's convention
    return code


def _die_with_parent() -> None:
    from convertctl.processes import die_with_parent as die

    die()


def _target_of(stage: str) -> str | None:
    """The artifact id of a target's stage ('build X', 'kit X'), else None."""
    head, _, rest = stage.partition(" ")
    return rest.strip() or None if head in ("build", "kit") else None


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed in this process's memory cgroup
    (`oom_kill` of cgroup v2's memory.events or v1's memory.oom_control); None where it cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    files = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        path = path.strip().rstrip("/")
        if "memory" in controllers.split(","):
            files += [f"/sys/fs/cgroup/memory{path}/memory.oom_control", "/sys/fs/cgroup/memory/memory.oom_control"]
        elif controllers == "":
            files += [f"/sys/fs/cgroup{path}/memory.events", "/sys/fs/cgroup/memory.events"]
    for name in files:  # in a container the listed path may not exist: its own cgroup is the mount's root
        try:
            text = Path(name).read_text()
        except OSError:
            continue
        for row in text.splitlines():
            key, _, value = row.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def _report(argv: list[str], state: dict, stage: str, what: str, trace: str, code: int | None = None) -> int:
    from convertctl.errors import EXIT_INTERNAL

    code = EXIT_INTERNAL if code is None else code
    message = (f"convertctl crashed natively: {what} during '{stage}'" if code == EXIT_INTERNAL else
               f"convertctl was stopped: {what} during '{stage}'")
    kept = _keep_partial(state, message, trace)
    hint = (f"partial output kept in {kept} (ERROR.txt has the Python stack)" if kept else
            "the Python stack at the crash is printed above")
    if code == EXIT_INTERNAL:
        hint += "; please report it with the model"
    if kept is None and trace:
        print(trace.rstrip(), file=sys.stderr)
    if "--json" in argv:
        print(json.dumps({"status": "error", "exit_code": code, "error": message, "hint": hint}), flush=True)
    from convertctl.cli.ui import print_error

    print_error(message, hint)
    return code


def _keep_partial(state: dict, message: str, trace: str) -> Path | None:
    """The dead child's staging folder becomes `<out>.partial/` with ERROR.txt, as for any failed run."""
    from convertctl.report.outdir import OutputFolder, made_by_convertctl

    staging, final = state.get("staging"), state.get("output")
    if not staging or not final or not made_by_convertctl(Path(staging)):
        return None
    out = OutputFolder(Path(final))
    out.staging = Path(staging)
    out.protected = [Path(os.path.realpath(p)) for p in state.get("protected") or []]
    try:
        return out.abandon(message + "\n\nPython stack at the crash (faulthandler):\n" + (trace or "(none)"))
    except OSError:
        return Path(staging)


def _last_frame(trace: str) -> str:
    """The innermost convertctl frame of faulthandler's stack, to say where in convertctl it crashed."""
    import re

    for line in trace.splitlines():  # innermost first: '  File "/x/convertctl/targets/onnxruntime.py", line 69 in session'
        m = re.match(r'\s*File "(?:.*/)?(convertctl/[^"]+)", line (\d+) in (\S+)', line)
        if m:
            return f" (in {m.group(1)}:{m.group(2)}, {m.group(3)})"
    return ""


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
