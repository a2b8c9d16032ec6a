"""`arith`: synthetic multi-step arithmetic word problems.

This benchmark exists so the whole pipeline can run on a laptop: the project's
`tiny-math` model (``scripts/train_tiny_model.py``) is trained on
:func:`train_rows` and evaluated on the fixed :func:`test_rows`.

A problem starts from a small integer and applies 1 to 3 operations (add,
subtract, multiply, divide) left to right. Every intermediate value is an
integer in ``[0, MAX_VALUE]``, so answers are non-negative and below 1000.
Reference solutions write one operation per line (``17 * 3 = 51``) and end
with ``\\boxed{N}``. The test set is ``generate_problems(TEST_SIZE, TEST_SEED)``;
training streams skip every test problem by its exact text.
"""
from __future__ import annotations

import random
from functools import lru_cache

TEST_SEED = 20250601
TEST_SIZE = 300
MAX_VALUE = 999
MAX_START = 50
MAX_ADDEND = 50
MAX_FACTOR = 9
MAX_OPERATIONS = 3

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}

NAMES = ["Ava", "Ben", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Max", "Nora", "Omar", "Lily", "Raj"]
ITEMS = ["apples", "marbles", "stickers", "coins", "books", "pencils", "cookies", "stamps", "shells", "cards"]

# Story sentences, one per operation; {name}, {item} and {n} are filled in.
STORY_STEPS = {
    "add": ["{name} buys {n} more.", "{name} finds {n} more {item}.", "A friend gives {name} {n} more {item}."],
    "sub": ["{name} gives away {n} {item}.", "{name} loses {n} of them.", "{name} sells {n} {item}."],
    "mul": ["Then {name} has {n} times as many {item}.", "The number of {item} is multiplied by {n}."],
    "div": [
        "{name} splits the {item} into {n} equal piles and keeps one pile.",
        "{name} shares the {item} equally among {n} boxes and keeps one box.",
    ],
}
STORY_QUESTIONS = ["How many {item} does {name} have now?", "How many {item} does {name} have in the end?"]

# Instruction sentences for the "start with a number" wording.
COMMAND_STEPS = {
    "add": ["Add {n}.", "Increase it by {n}."],
    "sub": ["Subtract {n}.", "Take away {n}."],
    "mul": ["Multiply by {n}.", "Multiply the result by {n}."],
    "div": ["Divide by {n}.", "Divide the result by {n}."],
}
COMMAND_QUESTIONS = ["What is the result?", "What number do you get?"]


def _apply(operation: str, value: int, operand: int) -> int:
    if operation == "add":
        return value + operand
    if operation == "sub":
        return value - operand
    if operation == "mul":
        return value * operand
    return value // operand


def _choose_step(rng: random.Random, value: int) -> tuple[str, int]:
    """A random operation and operand that keep the running value in ``[0, MAX_VALUE]``."""
    options: list[tuple[str, list[int]]] = []
    addends = list(range(1, min(MAX_ADDEND, MAX_VALUE - value) + 1))
    if addends:
        options.append(("add", addends))
    if value >= 1:
        options.append(("sub", list(range(1, min(MAX_ADDEND, value) + 1))))
    factors = [f for f in range(2, MAX_FACTOR + 1) if value * f <= MAX_VALUE]
    if factors and value >= 1:
        options.append(("mul", factors))
    divisors = [d for d in range(2, MAX_FACTOR + 1) if value % d == 0]
    if divisors and value >= 1:
        options.append(("div", divisors))
    operation, operands = rng.choice(options)
    return operation, rng.choice(operands)


def _render_problem(rng: random.Random, start: int, steps: list[tuple[str, int]]) -> str:
    wording = rng.choice(["story", "command", "expression"])
    if wording == "story":
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        sentences = [f"{name} has {start} {item}."]
        sentences += [rng.choice(STORY_STEPS[op]).format(name=name, item=item, n=n) for op, n in steps]
        sentences.append(rng.choice(STORY_QUESTIONS).format(name=name, item=item))
        return " ".join(sentences)
    if wording == "command":
        sentences = [f"Start with {start}."]
        sentences += [rng.choice(COMMAND_STEPS[op]).format(n=n) for op, n in steps]
        sentences.append(rng.choice(COMMAND_QUESTIONS))
        return " ".join(sentences)
    expression = str(start)
    for index, (op, n) in enumerate(steps):
        expression = f"{expression} {SYMBOLS[op]} {n}"
        if index < len(steps) - 1:
            expression = f"({expression})"
    return f"What is {expression}?"


def _random_problem(rng: random.Random) -> dict[str, str]:
    start = rng.randint(1, MAX_START)
    value = start
    steps: list[tuple[str, int]] = []
    lines: list[str] = []
    for _ in range(rng.randint(1, MAX_OPERATIONS)):
        operation, operand = _choose_step(rng, value)
        result = _apply(operation, value, operand)
        lines.append(f"{value} {SYMBOLS[operation]} {operand} = {result}")
        steps.append((operation, operand))
        value = result
    lines.append(f"The answer is \\boxed{{{value}}}")
    return {
        "problem": _render_problem(rng, start, steps),
        "answer": str(value),
        "solution": "\n".join(lines),
    }


def _unique_problems(n: int, seed: int, exclude: frozenset[str], id_prefix: str) -> list[dict[str, str]]:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    rng = random.Random(seed)
    seen: set[str] = set(exclude)
    rows: list[dict[str, str]] = []
    for _ in range(100 * n + 1000):
        if len(rows) == n:
            return rows
        row = _random_problem(rng)
        if row["problem"] in seen:
            continue
        seen.add(row["problem"])
        rows.append({"id": f"{id_prefix}{len(rows):04d}", **row})
    if len(rows) == n:
        return rows
    raise RuntimeError(f"could not draw {n} distinct arith problems from seed {seed}")


def generate_problems(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` distinct problems drawn reproducibly from ``seed``.

    Each row has ``id`` (``arith-0000``, ...), ``problem``, ``answer`` (the
    integer as a string) and ``solution`` (one step per line, ending in
    ``\\boxed{answer}``).
    """
    return _unique_problems(n, seed, frozenset(), "arith-")


@lru_cache(maxsize=1)
def _test_set() -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple(tuple(row.items()) for row in generate_problems(TEST_SIZE, TEST_SEED))


def test_rows() -> list[dict[str, str]]:
    """The fixed ``arith`` test set (``TEST_SIZE`` problems, ids ``arith-0000`` onwards)."""
    return [dict(row) for row in _test_set()]


def train_rows(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` distinct training problems from ``seed``, none of whose text is in the test set."""
    if seed == TEST_SEED:
        raise ValueError(f"seed {seed} is the test-set seed; pick another for training data")
    test_problems = frozenset(row["problem"] for row in test_rows())
    return _unique_problems(n, seed, test_problems, "arith-train-")
