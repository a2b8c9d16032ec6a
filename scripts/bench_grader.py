"""Throughput of the grader on a realistic rollout mix, against plain math-verify.

The mix imitates 8-sample pools on MATH-500: for every problem, its reference
solution (3 rollouts), the same solution ending in a reformatted but equal
answer (2 rollouts: ``\\dfrac``, ``x =`` prefix, spaces, ``\\left(``, a final
period), and two
wrong answers, one repeated (3 rollouts). Our grader runs with its cache, one
``grade`` call per rollout, starting cold (a fresh worker already started,
empty caches);
math-verify runs ``verify(parse(gold), parse(response))`` per rollout on the
first ``--math-verify-problems`` problems' pools, and ours is timed on that
same subset too, so the speed-up compares equal inputs.

Writes ``results/bench/grader.json``. Usage::

    python scripts/bench_grader.py [--problems 500] [--math-verify-problems 125]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

from eglr.benchmarks import load_benchmark
from eglr.grading import GRADER_VERSION, clear_cache, grade
from eglr.grading.extract import last_boxed
from eglr.grading.slow.worker import default_worker

REPO_ROOT = Path(__file__).resolve().parents[1]
POOL_SIZE = 8
OUTPUT = REPO_ROOT / "results" / "bench" / "grader.json"


def reformat(answer: str, rng: random.Random) -> str:
    """An equal answer in another spelling."""
    variants = [
        answer.replace("\\frac", "\\dfrac"),
        f"x = {answer}" if "=" not in answer and "," not in answer else answer,
        answer.replace(",", ", ").replace("+", " + "),
        answer.replace("(", "\\left(").replace(")", "\\right)"),
        f"{answer}." if not answer.endswith(".") else answer,
    ]
    return rng.choice([variant for variant in variants if variant != answer] or [answer + " "])


def wrong_answer(answer: str, other_gold: str, rng: random.Random) -> str:
    """A plausible wrong answer: a perturbed number, or another problem's gold."""
    numbers = re.findall(r"\d+", answer)
    if numbers and rng.random() < 0.5:
        number = rng.choice(numbers)
        return answer.replace(number, str(int(number) + rng.choice([1, 2, 10])), 1)
    return other_gold


def with_final_answer(solution: str, answer: str) -> str:
    """The solution text with its last box holding ``answer`` instead."""
    start = solution.rindex("\\boxed")
    boxed = last_boxed(solution[start:], join_adjacent=False) or ""
    end = solution.index(boxed, start) + len(boxed)
    return f"{solution[:start]}\\boxed{{{answer}}}{solution[end + 1:]}"


def build_mix(problems, rng: random.Random) -> list[tuple[str, str]]:
    """(response, gold) rollouts, POOL_SIZE per problem, pools kept together."""
    rollouts = []
    golds = [problem.answer for problem in problems]
    for problem in problems:
        solution, gold = problem.metadata["solution"], problem.answer
        reformatted = with_final_answer(solution, reformat(gold, rng))
        wrong = [with_final_answer(solution, wrong_answer(gold, rng.choice(golds), rng)) for _ in range(2)]
        pool = [solution] * 3 + [reformatted] * 2 + [wrong[0]] * 2 + [wrong[1]]
        rng.shuffle(pool)
        rollouts.extend((response, gold) for response in pool)
    return rollouts


def start_fresh_worker() -> float:
    """Replace the grading worker with a fresh one (empty caches); its start-up time."""
    worker = default_worker()
    worker.close()
    started = time.perf_counter()
    worker.run([("x", "x", 1e-6)], timeout_s=60)
    return time.perf_counter() - started


def time_ours(rollouts: list[tuple[str, str]]) -> tuple[float, list[bool]]:
    """Seconds to grade ``rollouts`` one call each, from a cold cache and a fresh worker."""
    start_fresh_worker()
    clear_cache()
    started = time.perf_counter()
    verdicts = [grade(response, gold, benchmark="math500").correct for response, gold in rollouts]
    return time.perf_counter() - started, verdicts


def time_math_verify(rollouts: list[tuple[str, str]]) -> tuple[float, list[bool]]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    started = time.perf_counter()
    verdicts = [bool(verify(parse(f"${gold}$"), parse(response))) for response, gold in rollouts]
    return time.perf_counter() - started, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500, help="MATH-500 problems in the mix")
    parser.add_argument("--math-verify-problems", type=int, default=125, help="problems math-verify is timed on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    arguments = parser.parse_args(argv)
    if not 0 < arguments.math_verify_problems <= arguments.problems:
        parser.error("need 0 < --math-verify-problems <= --problems")

    problems = load_benchmark("math500", limit=arguments.problems)
    rollouts = build_mix(problems, random.Random(arguments.seed))
    subset = rollouts[: arguments.math_verify_problems * POOL_SIZE]

    startup_s = start_fresh_worker()
    ours_s, ours_verdicts = time_ours(rollouts)
    ours_subset_s, ours_subset_verdicts = time_ours(subset)
    math_verify_s, math_verify_verdicts = time_math_verify(subset)
    agreement = sum(a == b for a, b in zip(ours_subset_verdicts, math_verify_verdicts)) / len(subset)

    result = {
        "grader_version": GRADER_VERSION,
        "rollouts": len(rollouts),
        "unique_responses": len(set(rollouts)),
        "pool_size": POOL_SIZE,
        "rollouts_per_s": round(len(rollouts) / ours_s, 1),
        "rollouts_correct_fraction": round(sum(ours_verdicts) / len(rollouts), 4),
        "subset_rollouts": len(subset),
        "subset_rollouts_per_s": round(len(subset) / ours_subset_s, 1),
        "math_verify_rollouts_per_s": round(len(subset) / math_verify_s, 1),
        "speedup_vs_math_verify": round(math_verify_s / ours_subset_s, 1),
        "verdict_agreement_with_math_verify": round(agreement, 4),
        "worker_startup_s": round(startup_s, 2),
        "cache": "on (cold at start of each timing)",
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
