"""A persistent worker process that runs symbolic comparisons under a time bound.

sympy can hang on inputs like ``10^{10^{10^{10}}}`` and math-verify's own
timeout uses ``signal.alarm``, which only works on the main thread. Instead,
the parent sends comparisons to a child process over a pipe and waits for each
answer with a deadline; a child that misses its deadline is killed and a fresh
one is started for the remaining jobs. This works from any thread and inside
daemonic pool workers (the child is a plain ``subprocess``, not a
``multiprocessing`` child), and the child's memory is capped so a runaway
expression cannot take the machine down.

Time bound: a job gets ``timeout_s`` seconds from the moment the child starts
it. The child's start-up (importing sympy, warming the LaTeX parser, about a
second) is not charged to any job; after a timeout, a spare child that is
already warming up takes over, so only a call that comes right after another
call's timeout may also wait for the rest of that start-up.

Protocol: the parent sends ``[(pred, gold, rel_tol), ...]``; the child answers
each job, in order, with ``("ok", bool)`` or ``("error", message)``.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

WORKER_MEMORY_LIMIT_BYTES = 4 * 1024**3
STARTUP_TIMEOUT_S = 120.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one comparison: ``status`` is "ok", "timeout" or "error"."""

    status: str
    equal: bool = False
    message: str = ""


def _limit_memory(limit_bytes: int) -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ImportError, ValueError, OSError):
        pass


def serve() -> None:
    """Child side: answer jobs from stdin on the original stdout until EOF."""
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    # Stray prints from libraries must not corrupt the reply channel.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory(WORKER_MEMORY_LIMIT_BYTES)
    from eglr.grading.slow.symbolic import symbolic_equal, warm_up

    warm_up()
    replies.send(("ready", ""))
    while True:
        try:
            jobs = requests.recv()
        except (EOFError, OSError):
            return
        for pred, gold, rel_tol in jobs:
            try:
                reply = ("ok", bool(symbolic_equal(pred, gold, rel_tol)))
            except MemoryError:
                reply = ("error", "MemoryError")
            except RecursionError:
                reply = ("error", "RecursionError")
            except Exception as error:  # noqa: BLE001 - any parser failure is a verdict, not a crash
                reply = ("error", f"{type(error).__name__}: {str(error)[:200]}")
            replies.send(reply)


class _Child:
    """One worker process and the two pipe ends the parent talks to it through."""

    def __init__(self) -> None:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            path for path in (_PACKAGE_ROOT, environment.get("PYTHONPATH", "")) if path
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eglr.grading.slow.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            close_fds=True,
        )
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> None:
        if self.ready:
            return
        if not self.replies.poll(timeout_s):
            self.stop()
            raise RuntimeError(f"grading worker did not start within {timeout_s} s")
        try:
            self.replies.recv()
        except (EOFError, OSError) as error:
            self.stop()
            raise RuntimeError("grading worker exited during startup") from error
        self.ready = True

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.requests.close()
        self.replies.close()
        self.process.kill()
        self.process.wait()


class SymbolicWorker:
    """Owns the worker process; thread-safe (jobs from concurrent threads queue up).

    After the first timeout a spare process is kept warm, so that the next
    timeout's replacement is ready at once instead of after the seconds it
    takes to import sympy.
    """

    def __init__(self, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._active: _Child | None = None
        self._spare: _Child | None = None
        self._owner_pid = os.getpid()
        self.restarts = 0
        self.jobs_run = 0

    def _ensure_active(self) -> _Child:
        """The running worker process; a dead one (killed from outside) is replaced."""
        if self._active is not None and not self._active.alive():
            self._active.stop()
            self._active = None
        if self._active is None:
            spare, self._spare = self._spare, None
            if spare is not None and not spare.alive():
                spare.stop()
                spare = None
            self._active = spare or _Child()
        self._active.wait_ready(self.startup_timeout_s)
        return self._active

    def _replace_active(self) -> None:
        """Kill the active process (it hung or died) and warm up a spare."""
        if self._active is not None:
            self._active.stop()
            self._active = None
        self.restarts += 1
        if self._spare is None:
            self._spare = _Child()

    def _forget_inherited(self) -> None:
        """After a fork the pipes belong to the parent's worker: start our own."""
        if self._owner_pid != os.getpid():
            self._lock = threading.Lock()
            self._active = self._spare = None
            self._owner_pid = os.getpid()

    def run(self, jobs: list[tuple[str, str, float]], timeout_s: float) -> list[JobOutcome]:
        """Outcome of each job, in order; each job gets ``timeout_s`` seconds."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._forget_inherited()
        outcomes: list[JobOutcome] = []
        with self._lock:
            while len(outcomes) < len(jobs):
                child = self._ensure_active()
                outcomes.extend(self._run_until_failure(child, jobs[len(outcomes) :], timeout_s))
        return outcomes

    def _run_until_failure(
        self, child: _Child, jobs: list[tuple[str, str, float]], timeout_s: float
    ) -> list[JobOutcome]:
        """Run jobs until one times out or kills the child (that one is included)."""
        try:
            child.requests.send(jobs)
        except (OSError, ValueError) as error:
            self._replace_active()
            return [JobOutcome("error", message=f"worker pipe: {error}")]
        outcomes: list[JobOutcome] = []
        for _ in jobs:
            self.jobs_run += 1
            if not child.replies.poll(timeout_s):
                self._replace_active()
                outcomes.append(JobOutcome("timeout"))
                return outcomes
            try:
                status, value = child.replies.recv()
            except (EOFError, OSError):
                self._replace_active()
                outcomes.append(JobOutcome("error", message="worker died"))
                return outcomes
            if status == "ok":
                outcomes.append(JobOutcome("ok", equal=value))
            else:
                outcomes.append(JobOutcome("error", message=value))
        return outcomes

    def close(self) -> None:
        """Stop the worker processes (a later ``run`` starts a new one)."""
        self._forget_inherited()
        with self._lock:
            for child in (self._active, self._spare):
                if child is not None:
                    child.stop()
            self._active = self._spare = None


_DEFAULT_WORKER: SymbolicWorker | None = None
_DEFAULT_WORKER_LOCK = threading.Lock()


def default_worker() -> SymbolicWorker:
    """The process-wide worker, started on first use and stopped at exit."""
    global _DEFAULT_WORKER
    with _DEFAULT_WORKER_LOCK:
        if _DEFAULT_WORKER is None:
            _DEFAULT_WORKER = SymbolicWorker()
            atexit.register(_DEFAULT_WORKER.close)
        return _DEFAULT_WORKER


if __name__ == "__main__":
    serve()
