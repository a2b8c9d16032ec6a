"""Load rollout records (JSON Lines) into one pandas DataFrame, validated against the record schema.

The runner appends one :class:`eglr.schema.RolloutRecord` per rollout to
``<dir>/<model>/<benchmark>/rollouts*.jsonl``. Column types come from the schema; files are
parsed by Arrow with that schema (fast), and a file Arrow cannot read under it, or whose values
break the schema, is read again line by line so that the error names the file, the line, the field
and the value. Records of schema 1 (the first CPU demo's) are upgraded on reading.

What a frame holds:

* one row per rollout *per configuration*: records are never deduplicated across settings. Each
  row's ``configuration`` names its settings by the values that differ between the configurations
  of the input (``"tau=0.5"``), and is empty when there is only one; every table groups by it,
  so pools and oracles never mix configurations (:func:`describe_configurations`,
  :func:`require_single_configuration`);
* within one configuration (settings hash), the last record of a rollout: a later record of the
  same rollout supersedes an earlier one (a re-grade, or a regeneration after its problem
  changed), and a warning says how many were superseded;
* a killed writer's cut-off last line is ignored with a warning; a complete last line without its
  newline is a record like any other.
"""
from __future__ import annotations

import gzip

import io
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from eglr.schema import (
    ENGINES,
    FIELDS,
    FIELDS_BY_NAME,
    FINISH_REASONS,
    INFINITE_FIELDS,
    RENAMED_IN_V2,
    SCHEMA_1_VALUES,
    SCHEMA_VERSION,
    TEMPERATURE_DECIMALS,
    RolloutRecord,
)

GROUP_KEY = ["model", "benchmark", "configuration"]
PROBLEM_KEY = GROUP_KEY + ["problem_id"]
CELL_KEY = ["layer_span", "temperature"]
ROLLOUT_KEY = PROBLEM_KEY + CELL_KEY + ["sample"]
# The fields every analysis needs; ``configuration`` is derived from ``settings_hash`` and the settings.
REQUIRED_COLUMNS = ["model", "benchmark", "problem_id", "layer_span", "temperature", "sample", "correct",
                    "settings_hash"]
# A rollout's identity in the files: its key within one settings hash.
RECORD_KEY = ["model", "benchmark", "settings_hash", "problem_id", "layer_span", "temperature", "sample"]

TEXT_COLUMNS = ("response",)  # unique per rollout: plain strings
NESTED_COLUMNS = ("provenance", "reapplication_histogram")  # JSON objects and lists: loaded when asked for
CATEGORICAL_COLUMNS = tuple(f.name for f in FIELDS if f.kind == "str" and f.name not in TEXT_COLUMNS)
INTEGER_COLUMNS = tuple(f.name for f in FIELDS if f.kind == "int")
FLOAT_COLUMNS = tuple(f.name for f in FIELDS if f.kind == "float")
KNOWN_COLUMNS = tuple(f.name for f in FIELDS)
# Everything the analysis reads; leaving out the responses and the nested fields keeps a
# million-rollout load small and fast.
ANALYSIS_COLUMNS = tuple(name for name in KNOWN_COLUMNS if name not in TEXT_COLUMNS + NESTED_COLUMNS)

# The recorded settings that tell configurations apart: per-model ones (which naturally differ from
# one model to the next) and the rest.
MODEL_SETTINGS = ("model_id", "revision", "dtype", "provenance")
RUN_SETTINGS = ("engine", "tau", "tau_quantile", "k_max", "eps", "criterion", "kv_policy", "reinject",
                "top_p", "max_new_tokens", "prompt_version")
CONFIGURATION_COLUMNS = MODEL_SETTINGS + RUN_SETTINGS
# What a rollout was generated from and graded against: one value per problem within a configuration.
PROBLEM_VERSION_COLUMNS = ("problem_digest", "gold")

_BLOCK_SIZE = 2 << 20  # several blocks per file: Arrow parses blocks in parallel
_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                "int_list": pa.list_(pa.int64())}


class _SlowPath(Exception):
    """The fast reader cannot vouch for a file: read it line by line (which names any bad value)."""


def rollout_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The JSONL files named by ``paths``: files as given, directories searched recursively.

    Gzipped files (``*.jsonl.gz``, how committed results are stored) are read too; where a
    directory holds both ``X.jsonl`` and ``X.jsonl.gz``, the plain file is the live one a run
    appends to (the snapshot is a copy of an earlier state of it) and only it is read.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            plain = sorted(path.rglob("*.jsonl"))
            live = set(plain)
            found = sorted(plain + [gz for gz in path.rglob("*.jsonl.gz") if gz.with_suffix("") not in live])
            if not found:
                raise FileNotFoundError(f"no *.jsonl or *.jsonl.gz rollout files under directory {str(path)!r}")
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
    """Read rollout JSONL files and directories into one frame with the schema's types.

    ``columns`` restricts the result to these record fields (the key, ``correct`` and
    ``settings_hash`` are always kept; :data:`ANALYSIS_COLUMNS` is what the analysis uses). The
    frame also has a ``configuration`` column (see the module docstring). Raises ``ValueError``
    naming the file, line, field and value of a record that breaks the schema, and for ungraded
    rollouts or a problem recorded under two different texts or golds in one configuration.
    """
    unknown = sorted(set(columns or ()) - set(KNOWN_COLUMNS) - {"configuration"})
    if unknown:
        raise ValueError(f"unknown rollout fields {unknown}; the record fields are {list(KNOWN_COLUMNS)}")
    checked = set(REQUIRED_COLUMNS) | set(CONFIGURATION_COLUMNS) | set(PROBLEM_VERSION_COLUMNS)
    wanted = list(KNOWN_COLUMNS) if columns is None else [
        name for name in KNOWN_COLUMNS if name in set(columns) or name in checked and name not in NESTED_COLUMNS]
    frames = [_read_file(path, wanted) for path in rollout_files(paths)]
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        raise ValueError("the rollout files contain no records")
    rollouts = _set_dtypes(pd.concat(frames, ignore_index=True))
    superseded = rollouts.duplicated(RECORD_KEY, keep="last")
    if superseded.any():
        warnings.warn(f"{int(superseded.sum())} records were superseded by later records of the same rollout "
                      "and settings (re-graded, or regenerated after their problem changed); kept the latest",
                      stacklevel=2)
        rollouts = rollouts.loc[~superseded].reset_index(drop=True)
    rollouts = _canonical_order(rollouts)
    _check_graded(rollouts)
    _check_one_version_per_problem(rollouts)
    rollouts["configuration"] = configuration_labels(rollouts)
    keep = [name for name in wanted if columns is None or name in set(REQUIRED_COLUMNS) | set(columns)]
    return rollouts[[*keep, "configuration"]]


def _canonical_order(rollouts: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order whatever order the records were written in (a resumed, re-graded or
    problem-major job appends in another): by model, benchmark and configuration as first met,
    then layer span, temperature, problem as first met and sample. Float sums in the tables then
    do not depend on the writing order."""
    ranks = {name: pd.factorize(rollouts[name])[0] for name in ("model", "benchmark", "settings_hash", "problem_id")}
    keys = pd.DataFrame({"model": ranks["model"], "benchmark": ranks["benchmark"],
                         "settings": ranks["settings_hash"], "layer_span": rollouts["layer_span"].to_numpy(),
                         "temperature": rollouts["temperature"].to_numpy(), "problem": ranks["problem_id"],
                         "sample": rollouts["sample"].to_numpy()})
    order = keys.sort_values(list(keys.columns), kind="mergesort").index.to_numpy()
    return rollouts.iloc[order].reset_index(drop=True)


# --- reading one file ----------------------------------------------------------------------------

def _read_file(path: Path, wanted: list[str]) -> pd.DataFrame:
    raw = path.read_bytes()
    data = _drop_truncated_tail(path, gzip.decompress(raw) if path.name.endswith(".gz") else raw)
    if not data.strip():
        return pd.DataFrame()
    try:
        return _read_fast(data, wanted)
    except _SlowPath:
        return _read_slowly(path, data, wanted)


def _read_fast(data: bytes, wanted: list[str]) -> pd.DataFrame:
    """Arrow under the schema's types, then the checks Arrow's types do not make; _SlowPath if any fails."""
    flat = [name for name in wanted if FIELDS_BY_NAME[name].kind != "object"]
    renamed = [previous for previous, name in RENAMED_IN_V2.items() if name in flat]
    read = list(dict.fromkeys([*flat, "schema_version", *renamed]))
    schema = pa.schema([(name, _ARROW_TYPES[FIELDS_BY_NAME[RENAMED_IN_V2.get(name, name)].kind]) for name in read])
    if b'inf"' in data:  # an infinite tau, as the writer spells it, in the spelling Arrow reads
        for name in INFINITE_FIELDS:
            data = data.replace(f'"{name}": "inf"'.encode(), f'"{name}": Infinity'.encode())
            data = data.replace(f'"{name}": "-inf"'.encode(), f'"{name}": -Infinity'.encode())
    try:
        table = pa_json.read_json(
            io.BytesIO(data), read_options=pa_json.ReadOptions(block_size=_BLOCK_SIZE),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    except pa.ArrowInvalid as error:
        raise _SlowPath from error
    frame = table.to_pandas()
    version = frame.pop("schema_version")
    old = version.isna()
    if old.any():
        for previous, name in RENAMED_IN_V2.items():
            if name in frame:
                frame.loc[old, name] = frame.loc[old, previous]
        for name, value in SCHEMA_1_VALUES.items():
            if name in frame:
                frame.loc[old, name] = value
    frame = frame.drop(columns=[previous for previous in RENAMED_IN_V2 if previous in frame])
    if ((version.fillna(1) < 1) | (version.fillna(1) > SCHEMA_VERSION)).any() or not _valid(frame):
        raise _SlowPath
    frame.insert(0, "schema_version", version.fillna(1).astype("int64"))
    for name in wanted:
        if FIELDS_BY_NAME[name].kind == "object":
            frame[name] = _json_texts(data, name)
    return frame


def _valid(frame: pd.DataFrame) -> bool:
    """Whether every value the schema constrains (beyond its JSON type) is within bounds."""
    for name in frame.columns:
        field = FIELDS_BY_NAME[name]
        column = frame[name]
        if not field.nullable and column.isna().any():
            return False
        values = column.dropna().to_numpy(dtype=float) if field.kind == "float" else None
        if values is not None and not (np.isfinite(values) | (np.isinf(values) & (name in INFINITE_FIELDS))).all():
            return False
    for name in ("layer_span", "sample", "temperature", "num_tokens", "num_gated", "num_reapplications"):
        if name in frame and (frame[name] < 0).any():
            return False
    for name, allowed in (("engine", ENGINES), ("finish_reason", FINISH_REASONS)):
        if name in frame and not frame[name].isin(allowed).all():
            return False
    return True


def _json_texts(data: bytes, name: str) -> list[str | None]:
    """A JSON-object field of every record, as canonical JSON text (keys sorted), None where null."""
    texts = []
    for line in data.splitlines():
        if line.strip():
            value = json.loads(line).get(name)
            texts.append(None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False))
    return texts


def _drop_truncated_tail(path: Path, data: bytes) -> bytes:
    """Remove a last line cut off mid-write: no newline and not a complete, valid record (the store's
    rule, :meth:`RolloutRecord.from_line`)."""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    if not tail.strip():
        return data
    try:
        RolloutRecord.from_line(tail)
    except ValueError:
        warnings.warn(f"ignoring truncated last line of {path}", stacklevel=5)
        return data[:cut]
    return data + b"\n"


def _read_slowly(path: Path, data: bytes, wanted: list[str]) -> pd.DataFrame:
    """Every line through :meth:`RolloutRecord.from_dict`; the first bad one is named."""
    records = []
    for line_number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}:{line_number} is not valid UTF-8 ({error.reason} at byte {error.start}); "
                             "the runner skips and regenerates such a record, delete the line to analyse "
                             "the file") from None
        try:
            record = RolloutRecord.from_dict(json.loads(text))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from None
        except ValueError as error:
            raise ValueError(f"{path}:{line_number}: {error}") from None
        values = record.to_dict()
        records.append({name: values[name] for name in wanted})
    frame = pd.DataFrame.from_records(records, columns=wanted)
    for name in wanted:
        if FIELDS_BY_NAME[name].kind == "object":
            frame[name] = [None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
                           for value in frame[name]]
    return frame


def _set_dtypes(rollouts: pd.DataFrame) -> pd.DataFrame:
    converted = {}
    for name in rollouts.columns:
        column, kind = rollouts[name], FIELDS_BY_NAME[name].kind
        if name == "temperature":
            converted[name] = column.astype("float64").round(TEMPERATURE_DECIMALS)
        elif name in ("layer_span", "sample", "schema_version"):
            converted[name] = column.astype("int64")
        elif kind == "int":
            converted[name] = pd.to_numeric(column).astype("Int64")
        elif kind == "float":
            converted[name] = pd.to_numeric(column).astype("float64")
        elif name in TEXT_COLUMNS:
            converted[name] = column.astype("str")
        elif kind in ("str", "object"):
            converted[name] = column.astype("category")
        elif kind == "bool":
            converted[name] = column
    return rollouts.assign(**converted)


def _check_graded(rollouts: pd.DataFrame) -> None:
    ungraded = rollouts["correct"].isna()
    if ungraded.any():
        raise ValueError(f"field 'correct' is null in {int(ungraded.sum())} rollouts (ungraded rollouts: grade "
                         "them before the analysis, e.g. rerun the job with grade=true)")
    rollouts["correct"] = rollouts["correct"].astype("bool")


def _check_one_version_per_problem(rollouts: pd.DataFrame) -> None:
    """Within a configuration, all rollouts of a problem come from one problem text and one gold."""
    problem = ["model", "benchmark", "settings_hash", "problem_id"]
    for name in PROBLEM_VERSION_COLUMNS:
        versions = rollouts[[*problem, name]].drop_duplicates()
        mixed = versions[versions.duplicated(problem, keep=False)]
        if len(mixed):
            first = mixed.iloc[0]
            values = sorted(map(str, mixed.loc[mixed["problem_id"] == first["problem_id"], name]))
            raise ValueError(
                f"{mixed[problem].drop_duplicates().shape[0]} problem(s) have rollouts under different {name} "
                f"values in one configuration, e.g. problem {first['problem_id']!r} of {first['model']} x "
                f"{first['benchmark']}: {values}; the benchmark changed after some cells were written: rerun the "
                "job over its whole grid to regenerate or re-grade them")


# --- configurations ------------------------------------------------------------------------------

def setting_text(value: object) -> str:
    """A recorded setting as the configuration labels write it (``null`` for a missing value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    return str(value)


def configuration_labels(rollouts: pd.DataFrame) -> pd.Categorical:
    """Each row's configuration label: the recorded settings that differ between the configurations
    (settings hashes) of the frame, e.g. ``"tau=0.5"``; empty when there is one configuration.

    Per-model settings (model_id, revision, dtype, provenance) count only where they differ within
    a model. Two configurations of one (model, benchmark) whose recorded settings agree (they differ
    in something unrecorded, such as the base seed or the prompt text) are told apart by their
    hash: ``"settings 1a2b3c4d"``. Labels are ordered by the values they name.
    """
    identity = ["model", "benchmark", "settings_hash"]
    group = rollouts.groupby(identity, observed=True, sort=False).ngroup().to_numpy()
    firsts = rollouts.iloc[np.unique(group, return_index=True)[1]]
    settings = [name for name in CONFIGURATION_COLUMNS if name in firsts]
    combos = firsts[identity + settings].astype(object).where(firsts[identity + settings].notna(), None)
    varying = [name for name in settings if (
        combos.groupby("model")[name].nunique(dropna=False).gt(1).any() if name in MODEL_SETTINGS
        else combos[name].nunique(dropna=False) > 1)]
    labels = [", ".join(f"{name}={setting_text(row[name])}" for name in varying) for _, row in combos.iterrows()]
    combos = combos.assign(label=labels)
    clash = combos.duplicated(["model", "benchmark", "label"], keep=False)
    combos.loc[clash, "label"] = [
        ", ".join(filter(None, [label, f"settings {str(digest)[:8]}"]))
        for label, digest in zip(combos.loc[clash, "label"], combos.loc[clash, "settings_hash"])]
    order = combos.sort_values(varying + ["settings_hash"], key=_sort_key, na_position="first")["label"]
    categories = list(dict.fromkeys(order))
    return pd.Categorical.from_codes(
        pd.Categorical(combos["label"], categories=categories).codes[group], categories=categories)


def _sort_key(column: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    return numeric if numeric.notna().sum() == column.notna().sum() else column.astype(str)


def describe_configurations(rollouts: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, benchmark, configuration): its settings hash, rollout count and the
    recorded settings."""
    settings = [name for name in CONFIGURATION_COLUMNS if name in rollouts]
    grouped = rollouts.groupby(GROUP_KEY, observed=True, sort=True)
    table = grouped[["settings_hash", *settings]].first()
    table.insert(1, "n_rollouts", grouped.size())
    return table.reset_index()


def require_single_configuration(rollouts: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the differing settings if the frame holds several configurations."""
    labels = list(rollouts["configuration"].cat.categories)
    if len(labels) <= 1:
        return
    counts = rollouts.groupby("configuration", observed=True).size()
    shown = "; ".join(f"{label} ({counts[label]} rollouts)" for label in labels)
    raise ValueError(f"the rollouts hold {len(labels)} configurations, which differ in their settings: {shown}. "
                     "Analyse one at a time, or give each configuration its own output_dir")
