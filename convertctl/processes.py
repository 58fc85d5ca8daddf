"""Child processes that never outlive convertctl, and the signals that stop a run.

Each child starts in a process group of its own, so stopping it stops what it started too (paddle2onnx's
grandchild, a runtime's helpers), and on Linux is killed by the kernel if convertctl itself is killed. When convertctl is interrupted (SIGINT, SIGTERM, SIGHUP), the signal
becomes an `Interrupted` exception in the main thread: every stage's cleanup runs as for any error, and
the children still running are stopped, group by group, before convertctl exits with 128 + the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

_GRACE_S = 3.0  # a child gets this long to exit after SIGTERM, then it is killed
_live: set[subprocess.Popen] = set()
_pending: int | None = None  # the stop signal received, if any
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """convertctl received a stop signal. A KeyboardInterrupt, so code that stops on Ctrl-C stops on it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


def install_signal_handlers() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def _on_signal(signum, frame):
    global _pending
    # The cleanup that follows must not be cut short by a second Ctrl-C: later signals are ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    _pending = signum
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise the stop signal again where it is safe to. An exception raised by a signal handler is lost when
    the signal lands in code that ignores exceptions (a fork hook, a finaliser), so long steps ask here."""
    if _pending is not None:
        raise Interrupted(_pending)


@contextlib.contextmanager
def spawn(cmd: list[str], **popen_kwargs):
    """A registered child in its own process group; stopped (group and all) if the block raises."""
    raise_if_interrupted()
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent, **popen_kwargs)
    with _lock:
        _live.add(proc)
    try:
        yield proc
        raise_if_interrupted()
    except BaseException:
        stop(proc)
        raise
    finally:
        with _lock:
            _live.discard(proc)


def die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed when convertctl dies, even by SIGKILL (no handler runs
    then). Elsewhere a no-op."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_POLL_S = 0.25  # how soon a stop signal whose exception was swallowed still stops a wait


def run(cmd: list[str], timeout: float | None = None, **popen_kwargs) -> subprocess.CompletedProcess:
    """Like subprocess.run for a child whose output goes to files: wait, and stop its whole group on a
    timeout (subprocess.TimeoutExpired is raised) or an interrupt.

    The wait is cut in slices that each ask `raise_if_interrupted`: spawning with `preexec_fn` runs Python's
    at-fork hooks (logging's `_releaseLock`), and a signal landing in one of them loses its exception, so the
    run went on timing a latency worker for minutes after Ctrl-C (measured once in CI, on loaded cores)."""
    with spawn(cmd, **popen_kwargs) as proc:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(cmd, timeout)
            try:
                returncode = proc.wait(timeout=_POLL_S if left is None else min(_POLL_S, left))
                break
            except subprocess.TimeoutExpired:
                raise_if_interrupted()
    return subprocess.CompletedProcess(cmd, returncode)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group, then SIGKILL to whatever of the group is left; reaps the child."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc, signal.SIGKILL)  # also the grandchildren the child left behind
    proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    """Stop every child still registered (the last step of an interrupt)."""
    with _lock:
        procs = list(_live)
    for proc in procs:
        stop(proc)
