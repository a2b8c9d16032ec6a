"""Re-grade a rollout file without regenerating: ``python -m eglr.grading``.

Each input line is a JSON record with ``response``, the gold answer (``gold``)
and optionally ``benchmark`` (a registry name; else ``--benchmark``); the
output keeps every field and sets ``extracted``, ``correct``, ``grade_reason``
and ``grader_version``. A line that cannot be graded (bytes that are not
UTF-8, invalid JSON, a missing or empty field, an unknown benchmark) is
reported on stderr with its line number, copied byte for byte to a rejects
file, and makes the exit status 1; the other lines are graded. The output is
written to a temporary file and renamed into place, and it may only replace
the input with ``--in-place``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from eglr.grading.api import DEFAULT_TIMEOUT_S, GRADER_VERSION, grade_many
from eglr.grading.policy import resolve_policy

CHUNK_LINES = 2000


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eglr.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="rollouts JSONL")
    parser.add_argument("--output", required=True, type=Path, help="graded JSONL to write")
    parser.add_argument("--in-place", action="store_true", help="allow --output to be the --input file")
    parser.add_argument("--gold-field", default="gold", help="record field holding the gold answer")
    parser.add_argument("--benchmark", default=None, help="benchmark for records without a 'benchmark' field")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, help="bound per comparison")
    parser.add_argument("--rejects", type=Path, default=None, help="where bad lines go (default: OUTPUT.rejects)")
    return parser.parse_args(argv)


def _record_problem(record: object, gold_field: str) -> str | None:
    """Why a parsed line cannot be graded, or None if it can."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("response"), str):
        return "missing or non-string 'response'"
    gold = record.get(gold_field)
    if isinstance(gold, bool) or not isinstance(gold, (str, int, float)) or not str(gold).strip():
        return f"missing or empty gold field {gold_field!r}"
    benchmark = record.get("benchmark")
    if benchmark is not None and not isinstance(benchmark, str):
        return "non-string 'benchmark'"
    if benchmark is not None:
        try:
            resolve_policy(benchmark)
        except ValueError as error:
            return str(error)
    return None


def _parse_line(raw: bytes, gold_field: str) -> tuple[dict | None, str | None]:
    """The record of one raw line, or why it cannot be graded."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"not UTF-8 (byte {error.start}: {raw[error.start:error.start + 1]!r})"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return None, f"invalid JSON ({error.msg})"
    problem = _record_problem(record, gold_field)
    return (None, problem) if problem else (record, None)


def _chunks(path: Path) -> Iterator[list[tuple[int, bytes]]]:
    """Numbered raw lines, in chunks; bytes, so that one bad byte spoils only its own line."""
    chunk: list[tuple[int, bytes]] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            chunk.append((number, line))
            if len(chunk) >= CHUNK_LINES:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def regrade(
    input_path: Path,
    output_path: Path,
    *,
    gold_field: str = "gold",
    benchmark: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    in_place: bool = False,
    rejects_path: Path | None = None,
) -> tuple[int, int]:
    """Grade every record of ``input_path`` into ``output_path``; (graded, rejected) counts."""
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found: {input_path}")
    if output_path.exists() and output_path.resolve() == input_path.resolve() and not in_place:
        raise ValueError(f"--output {output_path} is the input file; pass --in-place to replace it")
    rejects_path = rejects_path or output_path.with_name(output_path.name + ".rejects")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if benchmark is not None:
        resolve_policy(benchmark)  # an unknown --benchmark is a usage error (ValueError)
    graded = 0
    rejected: list[bytes] = []
    handle, temporary = tempfile.mkstemp(dir=output_path.parent, prefix=f".{output_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as output:
            for chunk in _chunks(input_path):
                records = []
                for number, line in chunk:
                    if not line.strip():
                        continue
                    record, problem = _parse_line(line, gold_field)
                    if record is None:
                        print(f"{input_path}:{number}: skipped: {problem}", file=sys.stderr)
                        rejected.append(line if line.endswith(b"\n") else line + b"\n")
                        continue
                    records.append(record)
                results = grade_many(
                    [record["response"] for record in records],
                    [record[gold_field] for record in records],
                    [record.get("benchmark", benchmark) for record in records],
                    timeout_s=timeout_s,
                )
                for record, result in zip(records, results):
                    record.update(
                        extracted=result.extracted,
                        correct=result.correct,
                        grade_reason=result.reason,
                        grader_version=GRADER_VERSION,
                    )
                    output.write(json.dumps(record, ensure_ascii=False) + "\n")
                graded += len(records)
        os.replace(temporary, output_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if rejected:
        rejects_path.write_bytes(b"".join(rejected))
    return graded, len(rejected)


def main(argv: list[str] | None = None) -> int:
    arguments = _parse_args(argv)
    try:
        graded, rejected = regrade(
            arguments.input,
            arguments.output,
            gold_field=arguments.gold_field,
            benchmark=arguments.benchmark,
            timeout_s=arguments.timeout_s,
            in_place=arguments.in_place,
            rejects_path=arguments.rejects,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"graded {graded} records into {arguments.output} (grader {GRADER_VERSION})", file=sys.stderr)
    if rejected:
        rejects = arguments.rejects or arguments.output.with_name(arguments.output.name + ".rejects")
        print(f"{rejected} bad lines were not graded; copied to {rejects}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
