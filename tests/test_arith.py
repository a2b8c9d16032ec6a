"""The synthetic `arith` benchmark: reproducible, leak-free, and arithmetically right."""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from eglr.benchmarks import arith

STEP_LINE = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)$")
FINAL_LINE = re.compile(r"^The answer is \\boxed\{(\d+)\}$")


def check_solution(row: dict[str, str]) -> list[int]:
    """Recompute every step of a reference solution; returns the values it passes through."""
    *steps, final = row["solution"].split("\n")
    assert 1 <= len(steps) <= arith.MAX_OPERATIONS, row
    values: list[int] = []
    for line in steps:
        match = STEP_LINE.match(line)
        assert match, f"malformed step {line!r} in {row['id']}"
        left, symbol, right, result = match.groups()
        left, right, result = int(left), int(right), int(result)
        if not values:
            values.append(left)
        assert left == values[-1], f"step {line!r} does not continue from {values[-1]}"
        if symbol == "+":
            assert left + right == result
        elif symbol == "-":
            assert left - right == result
        elif symbol == "*":
            assert left * right == result
        else:
            assert right * result == left, f"inexact division {line!r}"
        values.append(result)
    boxed = FINAL_LINE.match(final)
    assert boxed, f"solution of {row['id']} does not end with the boxed answer: {final!r}"
    assert boxed.group(1) == row["answer"] == str(values[-1])
    return values


def test_generator_is_deterministic_per_seed():
    assert arith.generate_problems(40, seed=3) == arith.generate_problems(40, seed=3)


def test_different_seeds_give_different_problems():
    first = {row["problem"] for row in arith.generate_problems(40, seed=3)}
    second = {row["problem"] for row in arith.generate_problems(40, seed=4)}
    assert len(first & second) < 5


def test_rows_have_the_benchmark_keys_and_distinct_problems():
    rows = arith.generate_problems(200, seed=5)
    assert all(set(row) == {"id", "problem", "answer", "solution"} for row in rows)
    assert len({row["problem"] for row in rows}) == 200
    assert [row["id"] for row in rows[:3]] == ["arith-0000", "arith-0001", "arith-0002"]


def test_test_set_is_fixed():
    rows = arith.test_rows()
    assert len(rows) == arith.TEST_SIZE == 300
    assert [row["id"] for row in rows] == [f"arith-{index:04d}" for index in range(300)]
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    assert digest == "a5f57827345505c37d2f4d0a30219d385ae3f52ca43e5649338be0afe767439d"
    rows[0]["answer"] = "mutated"
    assert arith.test_rows()[0]["answer"] != "mutated"


def test_training_stream_never_contains_a_test_problem():
    test_problems = {row["problem"] for row in arith.test_rows()}
    unfiltered = {row["problem"] for row in arith.generate_problems(20000, seed=1)}
    assert unfiltered & test_problems, "expected raw collisions, else this test proves nothing"
    training = arith.train_rows(20000, seed=1)
    assert len(training) == 20000
    assert not {row["problem"] for row in training} & test_problems


def test_training_rejects_the_test_seed_and_bad_sizes():
    with pytest.raises(ValueError, match=str(arith.TEST_SEED)):
        arith.train_rows(10, seed=arith.TEST_SEED)
    with pytest.raises(ValueError, match="-1"):
        arith.generate_problems(-1, seed=0)
    with pytest.raises(ValueError, match="'7'"):
        arith.generate_problems(10, seed="7")


@pytest.mark.parametrize("source", ["test", "train"])
def test_reference_solutions_are_right_and_bounded(source):
    rows = arith.test_rows() if source == "test" else arith.train_rows(2000, seed=11)
    for row in rows:
        values = check_solution(row)
        assert all(0 <= value <= arith.MAX_VALUE for value in values), row
        # The problem states the start value and the operands in the order the steps use them.
        operands = [int(STEP_LINE.match(line).group(3)) for line in row["solution"].split("\n")[:-1]]
        assert [int(number) for number in re.findall(r"\d+", row["problem"])] == [values[0], *operands], row


def test_wording_and_operations_are_varied():
    rows = arith.test_rows()
    openings = {row["problem"].split()[0] for row in rows}
    assert {"Start", "What"} <= openings and len(openings) > 5
    symbols = {line.split()[1] for row in rows for line in row["solution"].split("\n")[:-1]}
    assert symbols == {"+", "-", "*", "/"}
    assert {row["solution"].count("\n") for row in rows} == {1, 2, 3}
