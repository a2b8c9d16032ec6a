"""The time-bounded worker: timeouts, restarts, threads, pools, forks, caching."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import time

import pytest

from eglr.grading import GradeResult, SymbolicWorker, clear_cache, grade, grade_many, is_equiv

# Six nested parentheses pass the complexity guard but take the LaTeX parser
# a few tenths of a second: far longer than the tiny time bound used here. As
# an inequality, no fast-path rule can decide it, so it goes to the worker.
SLOW_ANSWER = "\\sin(\\sin(\\sin(\\sin(\\sin(\\sin(x)))))) \\le 1"
SLOW_GOLD = "x \\le 1"
TINY_TIMEOUT_S = 0.02
SYMBOLIC_PAIRS = [
    ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
    ("\\boxed{\\sqrt{12}}", "2\\sqrt{3}", True),
    ("\\boxed{x^2-1}", "x^2+1", False),
    ("\\boxed{[0,1)}", "[0,1]", False),
    ("\\boxed{\\{2,1\\}}", "\\{1,2\\}", True),
    ("\\boxed{\\pm 3}", "3", False),
]


@pytest.fixture(scope="module")
def worker():
    symbolic_worker = SymbolicWorker()
    yield symbolic_worker
    symbolic_worker.close()


def test_slow_comparison_times_out_and_the_worker_recovers(worker):
    clear_cache()
    restarts = worker.restarts
    started = time.perf_counter()
    result = grade(f"\\boxed{{{SLOW_ANSWER}}}", SLOW_GOLD, timeout_s=TINY_TIMEOUT_S, worker=worker)
    assert result == GradeResult(False, SLOW_ANSWER, "timeout")
    assert worker.restarts == restarts + 1
    assert time.perf_counter() - started < 60
    assert grade("\\boxed{(x+1)^2}", "x^2+2x+1", timeout_s=30, worker=worker).correct


def test_timeout_is_retried_when_more_time_is_allowed(worker):
    clear_cache()
    assert grade(f"\\boxed{{{SLOW_ANSWER}}}", SLOW_GOLD, timeout_s=TINY_TIMEOUT_S, worker=worker).reason == "timeout"
    # The cached timeout only stands for calls that do not allow more time.
    assert grade(f"\\boxed{{{SLOW_ANSWER}}}", SLOW_GOLD, timeout_s=TINY_TIMEOUT_S, worker=worker).reason == "timeout"
    assert grade(f"\\boxed{{{SLOW_ANSWER}}}", SLOW_GOLD, timeout_s=60, worker=worker).reason == "mismatch"


def test_batch_continues_after_a_timeout(worker):
    clear_cache()
    responses = ["\\boxed{(x+1)^2}", f"\\boxed{{{SLOW_ANSWER}}}", "\\boxed{x^2-1}"]
    golds = ["x^2+2x+1", SLOW_GOLD, "x^2+1"]
    results = grade_many(responses, golds, timeout_s=TINY_TIMEOUT_S * 50, worker=worker)
    assert [result.reason for result in results][0::2] == ["match", "mismatch"]
    assert results[1].correct is False


def test_worker_killed_from_outside_is_replaced(worker):
    clear_cache()
    assert is_equiv("(x+1)^2", "x^2+2x+1", timeout_s=30, worker=worker)
    os.kill(worker._active.process.pid, signal.SIGKILL)
    worker._active.process.wait()
    clear_cache()
    assert is_equiv("(x+1)^2", "x^2+2x+1", timeout_s=30, worker=worker)


def test_cache_answers_repeated_pairs_without_the_worker(worker):
    clear_cache()
    grade("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", timeout_s=30, worker=worker)
    jobs = worker.jobs_run
    # Same normalised pair, different spelling: answered from the cache.
    assert grade("so $\\boxed{\\sqrt 8}$", "2 \\sqrt{2}", timeout_s=30, worker=worker).correct
    assert worker.jobs_run == jobs


def test_fast_path_needs_no_worker():
    clear_cache()
    idle = SymbolicWorker()
    results = grade_many(["\\boxed{016}", "\\boxed{0.5}", "#### 1,000"], ["16", "\\frac12", "1000"], "gsm8k",
                         worker=idle)
    assert all(result.correct for result in results)
    assert idle.jobs_run == 0 and idle._active is None


def test_grading_from_threads_matches_serial_grading(worker):
    clear_cache()
    expected = [correct for _, _, correct in SYMBOLIC_PAIRS]
    outputs: dict[int, list[bool]] = {}

    def grade_all(thread_index: int) -> None:
        outputs[thread_index] = [
            grade(response, gold, timeout_s=60, worker=worker).correct for response, gold, _ in SYMBOLIC_PAIRS
        ]

    threads = [threading.Thread(target=grade_all, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {index: expected for index in range(6)}


def _grade_in_child(pair: tuple[str, str]) -> bool:
    return grade(pair[0], pair[1], timeout_s=60).correct


def test_grading_inside_daemonic_pool_workers():
    """multiprocessing.Pool workers are daemonic and may not start multiprocessing children."""
    pairs = [(response, gold) for response, gold, _ in SYMBOLIC_PAIRS[:3]]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        verdicts = pool.map(_grade_in_child, pairs)
    assert verdicts == [correct for _, _, correct in SYMBOLIC_PAIRS[:3]]


def test_forked_child_does_not_share_the_parents_worker():
    clear_cache()
    assert is_equiv("(x+1)^2", "x^2+2x+1", timeout_s=60)
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_grade_in_child, args=(("\\boxed{x^2-1}", "x^2+1"),))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    clear_cache()
    assert is_equiv("(x+2)^2", "x^2+4x+4", timeout_s=60)


def test_grade_result_is_frozen():
    result = grade("\\boxed{5}", "5")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.correct = False  # type: ignore[misc]


def test_no_answer():
    assert grade("I could not solve it.", "5", benchmark="math500") == GradeResult(False, None, "no_answer")
    assert grade(None, "5") == GradeResult(False, None, "no_answer")


@pytest.mark.parametrize("timeout_s", [0, -1.0])
def test_non_positive_timeout_is_rejected(timeout_s):
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        grade("\\boxed{5}", "5", timeout_s=timeout_s)


def test_mismatched_batch_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 responses but 1 golds"):
        grade_many(["a", "b"], ["1"])
