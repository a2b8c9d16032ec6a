"""Turn a raw benchmark row (local JSONL or Hugging Face hub schema) into a ``Problem``.

Each benchmark stores its problem and gold answer differently; the quirks
handled here are listed in ``shared/data/benchmarks/README.md``:

- GSM8K: the gold is the text after ``####`` in ``answer``, with thousands commas;
- AIME 2024: answers are strings with leading zeros (``"025"``);
- AIME 2025: ``answer`` is an int, and some problems lost their backslashes to
  JSON escapes (``\\frac`` stored as a form feed + ``rac``): repaired here;
- AMC 2023: answers are floats (``27.0``);
- Minerva: no answer field, the gold is the last ``\\boxed{}`` of ``solution``
  (the hub copy ``math-ai/minervamath`` has ``question``/``answer`` instead);
- OlympiadBench: the gold is ``final_answer[0]`` with its ``$`` removed, possibly
  several answers (``$69$,$84$`` -> ``69,84``) and a separate ``unit``.

Ids are strings that do not depend on where a row was loaded from: MATH-500's
``unique_id``, GSM8K's and Minerva's row index (``idx`` in the local files,
which equals the position in the hub split), and the ``id`` column elsewhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from eglr.grading.extract import last_boxed


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: stable ``id``, ``problem`` text, gold ``answer``."""

    id: str
    problem: str
    answer: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


# A JSON escape that swallowed a LaTeX backslash, e.g. "\frac" read as form feed + "rac".
_SWALLOWED_ESCAPES = {"\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}
_SWALLOWED_BEFORE_LETTER = re.compile(r"[\t\r](?=[a-zA-Z])")
_INTEGER = re.compile(r"^[+-]?\d+$")


def repair_escapes(text: str) -> str:
    """Restore backslashes that a JSON round trip turned into control characters.

    Form feed, backspace, bell and vertical tab never occur in problem text, so
    they are always repaired; a TAB or CR only when a letter follows
    (``\\triangle`` stored as TAB + ``riangle``). Newlines are ambiguous and kept.
    """
    for control, escape in _SWALLOWED_ESCAPES.items():
        text = text.replace(control, escape)
    return _SWALLOWED_BEFORE_LETTER.sub(lambda match: {"\t": "\\t", "\r": "\\r"}[match.group(0)], text)


def _first(row: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = row.get(key)
        if value is not None and value != "":
            return value
    raise ValueError(f"row has none of the fields {keys}: keys are {sorted(row)}")


def _row_id(row: dict[str, Any], index: int, *keys: str) -> str:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    return str(index)


def _integer_text(value: Any) -> str:
    """``"025"`` -> ``"25"``, ``27.0`` -> ``"27"``; other values as text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if _INTEGER.match(text):
        return str(int(text))
    return text


def _solution_text(solution: Any) -> str | None:
    if isinstance(solution, list):
        return "\n\n".join(str(part) for part in solution) if solution else None
    return solution


def math500_row(row: dict[str, Any], index: int) -> Problem:
    solution = row.get("solution")
    answer = row.get("answer") or (last_boxed(solution, join_adjacent=False) if solution else None)
    if not answer:
        raise ValueError(f"MATH-500 row {index} has no answer")
    return Problem(
        id=_row_id(row, index, "unique_id"),
        problem=_first(row, "problem"),
        answer=str(answer).strip(),
        metadata={"subject": row.get("subject"), "level": row.get("level"), "solution": solution},
    )


def gsm8k_row(row: dict[str, Any], index: int) -> Problem:
    worked = _first(row, "answer")
    if "####" not in worked:
        raise ValueError(f"GSM8K row {index} has no '####' in its answer: {worked[-80:]!r}")
    gold = worked.rsplit("####", 1)[1].strip().replace(",", "")
    return Problem(
        id=_row_id(row, index, "idx"),
        problem=_first(row, "question", "problem"),
        answer=_integer_text(gold),
        metadata={"solution": worked},
    )


def aime_row(row: dict[str, Any], index: int) -> Problem:
    answer = _first(row, "answer")
    return Problem(
        id=_row_id(row, index, "id"),
        problem=repair_escapes(_first(row, "problem", "question")),
        answer=_integer_text(answer),
        metadata={"raw_answer": answer, "solution": row.get("solution"), "url": row.get("url")},
    )


def amc_row(row: dict[str, Any], index: int) -> Problem:
    answer = _first(row, "answer")
    return Problem(
        id=_row_id(row, index, "id"),
        problem=_first(row, "problem", "question"),
        answer=_integer_text(answer),
        metadata={"raw_answer": answer, "url": row.get("url")},
    )


def minerva_row(row: dict[str, Any], index: int) -> Problem:
    solution = row.get("solution")
    answer = row.get("answer") or (last_boxed(solution, join_adjacent=False) if solution else None)
    if not answer:
        raise ValueError(f"Minerva row {index} has neither an answer nor a \\boxed{{}} in its solution")
    return Problem(
        id=_row_id(row, index, "idx"),
        problem=_first(row, "problem", "question"),
        answer=str(answer).strip(),
        metadata={"type": row.get("type"), "solution": solution},
    )


def olympiadbench_row(row: dict[str, Any], index: int) -> Problem:
    final_answer = _first(row, "final_answer")
    raw = final_answer[0] if isinstance(final_answer, list) else final_answer
    answer = str(raw).replace("$", "").strip().rstrip(".").strip()
    if not answer:
        raise ValueError(f"OlympiadBench row {index} has an empty final_answer: {final_answer!r}")
    question = _first(row, "question", "problem")
    if row.get("context"):
        question = f"{row['context']}\n\n{question}"
    return Problem(
        id=_row_id(row, index, "id"),
        problem=question,
        answer=answer,
        metadata={
            "raw_answer": raw,
            "answer_type": row.get("answer_type"),
            "is_multiple_answer": bool(row.get("is_multiple_answer")),
            "unit": row.get("unit"),
            "subfield": row.get("subfield"),
            "solution": _solution_text(row.get("solution")),
        },
    )


def arith_row(row: dict[str, Any], index: int) -> Problem:
    return Problem(
        id=_row_id(row, index, "id"),
        problem=_first(row, "problem"),
        answer=_integer_text(_first(row, "answer")),
        metadata={"solution": row.get("solution")},
    )
