"""Load a benchmark as a list of ``Problem``.

Source order (``source="auto"``, the default):

1. an explicit ``path`` (JSONL, or any format ``datasets`` reads by extension);
2. the local data directory, ``$EGLR_DATA_DIR/<name>/test.jsonl`` or else
   ``<repo>/../shared/data/benchmarks/<name>/test.jsonl``, if that file exists;
3. the Hugging Face hub, via ``datasets.load_dataset(hub_id, hub_config, split=...)``.

``source="local"`` or ``"hub"`` forces one of the last two. A ``hub_id`` other
than the registry's means "load that copy" and goes to the hub directly. The
synthetic ``arith`` benchmark always comes from
``eglr.benchmarks.arith.test_rows()``.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from eglr.benchmarks.records import Problem
from eglr.benchmarks.registry import BenchmarkSpec, get_benchmark

DATA_DIR_ENV = "EGLR_DATA_DIR"
SOURCES = ("auto", "local", "hub")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOAD_OPTIONS = ("source", "data_dir", "hub_id", "hub_config", "split", "revision", "cache_dir")


def data_dir() -> Path:
    """Directory holding ``<name>/test.jsonl`` for every benchmark."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else _REPO_ROOT.parent / "shared" / "data" / "benchmarks"


def local_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where the local copy of benchmark ``name`` would be."""
    return Path(directory or data_dir()) / name / "test.jsonl"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON: {error.msg}") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_file(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    if path.suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    formats = {".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if path.suffix not in formats:
        raise ValueError(
            f"unsupported benchmark file type {path.suffix!r} ({path}); use .jsonl, .json, .parquet or .csv"
        )
    import datasets

    return list(datasets.load_dataset(formats[path.suffix], data_files=str(path), split="train"))


def _read_hub(spec: BenchmarkSpec, options: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    hub_id = options.get("hub_id") or spec.hub_id
    if hub_id is None:
        raise ValueError(f"benchmark {spec.name!r} has no hub dataset; give a local path")
    hub_config = options.get("hub_config") or (spec.hub_config if hub_id == spec.hub_id else None)
    import datasets

    dataset = datasets.load_dataset(
        hub_id,
        hub_config,
        split=options.get("split") or spec.split,
        revision=options.get("revision"),
        cache_dir=options.get("cache_dir"),
    )
    return list(dataset), f"hf:{hub_id}"


def _read_arith() -> list[dict[str, Any]]:
    try:
        arith = importlib.import_module("eglr.benchmarks.arith")
    except ImportError as error:
        raise RuntimeError("benchmark 'arith' needs eglr.benchmarks.arith, which is not available") from error
    return list(arith.test_rows())


def _rows(spec: BenchmarkSpec, path: str | os.PathLike | None, options: dict[str, Any]) -> tuple[list[dict], str]:
    source = options.get("source", "auto")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if path is not None:
        return _read_file(Path(path)), str(path)
    if spec.name == "arith":
        return _read_arith(), "eglr.benchmarks.arith"
    candidate = local_path(spec.name, options.get("data_dir"))
    other_copy = options.get("hub_id") not in (None, spec.hub_id)
    if source == "local" or (source == "auto" and candidate.is_file() and not other_copy):
        return _read_file(candidate), str(candidate)
    return _read_hub(spec, options)


def load_benchmark(
    name: str, path: str | os.PathLike | None = None, limit: int | None = None, **options: Any
) -> list[Problem]:
    """Problems of benchmark ``name``, in file order, at most ``limit`` of them.

    Options: ``source`` ("auto", "local", "hub"), ``data_dir`` (instead of the
    default local directory), and for the hub ``hub_id``, ``hub_config``,
    ``split``, ``revision`` and ``cache_dir``. ``None`` values mean "default",
    as in the runner's config.
    """
    spec = get_benchmark(name)
    options = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(options) - set(_LOAD_OPTIONS))
    if unknown:
        raise TypeError(f"unknown load_benchmark option(s) {unknown}; allowed: {list(_LOAD_OPTIONS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    rows, origin = _rows(spec, path, options)
    if not rows:
        raise ValueError(f"benchmark {name!r}: {origin} holds no problems (it is empty)")
    problems = []
    for index, row in enumerate(rows[:limit] if limit is not None else rows):
        try:
            problem = spec.row_to_problem(row, index)
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"benchmark {name!r}: {origin}, row {index + 1} (index {index}) cannot be read: "
                             f"{error}") from error
        problem.metadata.update(benchmark=spec.name, source=origin)
        problems.append(problem)
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise ValueError(f"benchmark {name!r} from {origin} has duplicate problem id {problem.id!r}")
        seen.add(problem.id)
    return problems
