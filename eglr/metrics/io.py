"""Load graded rollout records (JSON Lines) into one pandas DataFrame.

The runner appends one JSON object per rollout to
``<dir>/<model>/<benchmark>/rollouts*.jsonl``. A run killed mid-write can leave a
truncated last line, and a resumed or re-run sweep can write the same rollout
twice; both are handled here so that every analysis starts from a clean frame.
"""
from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

PROBLEM_KEY = ["model", "benchmark", "problem_id"]
CELL_KEY = ["layer_span", "temperature"]
ROLLOUT_KEY = PROBLEM_KEY + CELL_KEY + ["sample"]
REQUIRED_COLUMNS = ROLLOUT_KEY + ["correct"]

CATEGORICAL_COLUMNS = (
    "model", "model_id", "revision", "benchmark", "problem_id", "criterion",
    "kv_policy", "prompt_version", "finish_reason", "settings_hash", "eglr_version",
)
INTEGER_COLUMNS = (
    "layer_span", "sample", "seed", "k_max", "max_new_tokens",
    "num_tokens", "num_gated", "num_iterations", "num_layers",
)
FLOAT_COLUMNS = ("temperature", "top_p", "tau", "eps", "time_s", "mean_logprob")
TEXT_COLUMNS = ("response", "gold", "extracted")
KNOWN_COLUMNS = (
    CATEGORICAL_COLUMNS + INTEGER_COLUMNS + FLOAT_COLUMNS + TEXT_COLUMNS + ("correct",)
)

# Everything the analysis reads; leaving out ``response`` keeps a million-rollout
# load small and fast.
ANALYSIS_COLUMNS = tuple(column for column in KNOWN_COLUMNS if column != "response")

# Temperatures are grouped on; rounding removes float noise such as 0.7000000001.
TEMPERATURE_DECIMALS = 6
_BLOCK_SIZE = 2 << 20  # several blocks per file: Arrow parses blocks in parallel
# Text fields are read as strings: left to itself Arrow turns a column of
# date-like answers ("2024-01-01") into timestamps.
_STRING_SCHEMA = pa.schema([(name, pa.string()) for name in CATEGORICAL_COLUMNS + TEXT_COLUMNS])


def rollout_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The JSONL files named by ``paths``: files as given, directories searched recursively."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("*.jsonl"))
            if not found:
                raise FileNotFoundError(f"no *.jsonl rollout files under directory {str(path)!r}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"rollout path {str(path)!r} does not exist")
    if not files:
        raise ValueError("no rollout paths given")
    return files


def load_rollouts(
    paths: str | Path | Iterable[str | Path], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read rollout JSONL files and directories into one frame with fixed dtypes.

    ``columns`` restricts the result to these fields (the key and ``correct`` are
    always kept). Optional fields absent from the files (e.g. ``mean_logprob`` in
    old runs) are added as missing values. If the same rollout -- same model,
    benchmark, problem, layer span, temperature and sample -- appears more than
    once, the last one read wins (files in the order given, directories sorted)
    and a warning says how many were dropped.
    """
    wanted = None if columns is None else list(dict.fromkeys([*REQUIRED_COLUMNS, *columns]))
    frames = [_read_jsonl(path, wanted) for path in rollout_files(paths)]
    frames = [frame for frame in frames if len(frame.columns)]
    if not frames:
        raise ValueError("the rollout files contain no records")
    rollouts = pd.concat(frames, ignore_index=True)
    rollouts = _set_dtypes(rollouts, wanted)
    duplicated = rollouts.duplicated(ROLLOUT_KEY, keep="last")
    if duplicated.any():
        warnings.warn(
            f"dropped {int(duplicated.sum())} duplicate rollouts (same {', '.join(ROLLOUT_KEY)}); "
            "kept the last one read",
            stacklevel=2,
        )
        rollouts = rollouts.loc[~duplicated].reset_index(drop=True)
    return rollouts


def _read_jsonl(path: Path, columns: list[str] | None) -> pd.DataFrame:
    data = _drop_truncated_tail(path, path.read_bytes())
    if not data.strip():
        return pd.DataFrame()
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(block_size=_BLOCK_SIZE),
            parse_options=pa_json.ParseOptions(explicit_schema=_STRING_SCHEMA, unexpected_field_behavior="infer"),
        )
    except pa.ArrowInvalid:
        # Arrow refuses a field whose JSON type changes between lines (say an
        # integer ``gold`` after string ones); the standard parser accepts it.
        return _read_jsonl_slowly(path, data, columns)
    if columns is not None:
        table = table.select([name for name in table.column_names if name in columns])
    return table.to_pandas()


def _drop_truncated_tail(path: Path, data: bytes) -> bytes:
    """Remove a last line cut off mid-write (no newline and not valid JSON)."""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    if not tail.strip():
        return data
    try:
        json.loads(tail)
    except json.JSONDecodeError:
        warnings.warn(f"ignoring truncated last line of {path}", stacklevel=4)
        return data[:cut]
    return data + b"\n"


def _read_jsonl_slowly(path: Path, data: bytes, columns: list[str] | None) -> pd.DataFrame:
    records = []
    for line_number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_number} is not a JSON object")
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if columns is not None:
        frame = frame[[name for name in frame.columns if name in columns]]
    return frame


def _set_dtypes(rollouts: pd.DataFrame, columns: list[str] | None) -> pd.DataFrame:
    missing = [name for name in REQUIRED_COLUMNS if name not in rollouts.columns]
    if missing:
        raise ValueError(f"rollout records lack required fields {missing}")
    for name in KNOWN_COLUMNS:
        if name not in rollouts.columns and (columns is None or name in columns):
            rollouts[name] = np.nan
    for name in REQUIRED_COLUMNS:
        if rollouts[name].isna().any():
            hint = " (ungraded rollouts: grade them before the analysis)" if name == "correct" else ""
            raise ValueError(f"field {name!r} is null in {int(rollouts[name].isna().sum())} rollouts{hint}")
    converted = {}
    for name in rollouts.columns:
        column = rollouts[name]
        if name in CATEGORICAL_COLUMNS:
            converted[name] = column.astype("str").astype("category") if name == "problem_id" \
                else column.astype("category")
        elif name in ("layer_span", "sample"):
            converted[name] = column.astype("int64")
        elif name in INTEGER_COLUMNS:
            converted[name] = pd.to_numeric(column).astype("Int64")
        elif name == "temperature":
            converted[name] = column.astype("float64").round(TEMPERATURE_DECIMALS)
        elif name in FLOAT_COLUMNS:
            converted[name] = pd.to_numeric(column).astype("float64")
        elif name in TEXT_COLUMNS:
            converted[name] = column.astype("str")
        elif name == "correct":
            converted[name] = _as_bool(column)
    return rollouts.assign(**converted)


def _as_bool(column: pd.Series) -> pd.Series:
    values = set(pd.unique(column))
    if not values <= {True, False}:  # 0 and 1 compare equal to False and True
        bad = sorted(map(repr, values - {True, False}))[:3]
        raise ValueError(f"field 'correct' must be true/false, got {', '.join(bad)}")
    return column.astype("bool")
