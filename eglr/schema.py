"""The rollout record: what every line of a rollout JSONL file holds, in one definition.

The runner writes :class:`RolloutRecord` objects (:meth:`RolloutRecord.to_json`), the store reads
them back to resume (:meth:`RolloutRecord.from_dict`), the analysis loader
(:func:`eglr.metrics.load_rollouts`) derives its column types from :data:`FIELDS`, and the synthetic
data and the tests build records with it. Nothing else lists the fields.

Versions. ``schema_version`` 2 is the current schema. Version 1 is the schema of the first CPU demo
(no ``schema_version`` field): its records still load, upgraded on reading (:func:`upgrade`):
``num_iterations`` is read as ``num_reapplications``, ``engine`` as ``"hf"``, ``reinject`` as
``"raw"`` (the only engine and re-injection there were), and the fields added since are null.

Field kinds follow the annotations: ``str``, ``int``, ``float``, ``bool``, a JSON object
(``dict``) or a list of ints; ``| None`` marks a field that may be null. Floats are finite, except
``tau``, which may be infinite (``+inf`` never gates, ``-inf`` gates every step): JSON has no
infinities, so the file holds the strings ``"inf"`` and ``"-inf"`` there (:data:`INFINITIES`).
Fields outside the schema are ignored by every reader.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 2
ENGINES = ("hf", "vllm")
FINISH_REASONS = ("eos", "length")
# Temperatures are compared at this many decimals (0.7 and 0.7000000001 are the same cell).
TEMPERATURE_DECIMALS = 6

# The float fields that may be infinite, and how an infinity is written in JSON.
INFINITE_FIELDS = ("tau",)
INFINITIES = {"inf": math.inf, "-inf": -math.inf}
# Schema 1 -> 2: the renamed field, and the values fields added since had in schema 1.
RENAMED_IN_V2 = {"num_iterations": "num_reapplications"}
SCHEMA_1_VALUES = {"schema_version": 1, "engine": "hf", "reinject": "raw"}


class RecordError(ValueError):
    """A record that does not follow the schema; the message names the field and its value."""


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout: a problem decoded under one (layer span, temperature, sample) and its grade.

    Identity: (``model``, ``benchmark``, ``problem_id``, ``layer_span``, ``temperature``,
    ``sample``) within one ``settings_hash``, the hash of every setting that can change the output
    (:func:`eglr.runner.job_settings`). ``problem_digest`` fingerprints the problem text the
    rollout was generated from; ``gold`` is the answer it was graded against. A later record with
    the same identity supersedes an earlier one (a re-grade, or a regeneration after the problem
    changed).
    """

    schema_version: int
    # The model and the engine that ran it
    model: str
    model_id: str
    revision: str | None
    dtype: str
    provenance: dict[str, Any] | None  # the weights' provenance (model config's ``provenance:``)
    engine: str
    # The problem and the cell
    benchmark: str
    problem_id: str
    problem_digest: str | None  # null only in schema-1 records
    layer_span: int
    temperature: float
    top_p: float
    sample: int
    seed: int | None  # null at temperature 0
    # EGLR and generation settings, as they acted (see eglr.runner.eglr_settings)
    tau: float
    tau_quantile: float | None
    k_max: int
    eps: float | None  # null where it cannot act (criterion=argmax)
    criterion: str
    kv_policy: str
    reinject: str
    max_new_tokens: int
    prompt_version: str
    # Output and grade
    response: str
    gold: str
    extracted: str | None
    correct: bool | None  # null: not graded
    grade_reason: str | None
    grader_version: str | None
    # Decoding statistics
    num_tokens: int
    num_gated: int
    num_reapplications: int
    num_converged: int | None
    reapplication_histogram: list[int] | None
    mean_stop_kl: float | None
    finish_reason: str
    mean_logprob: float | None
    num_layers: int
    time_s: float
    settings_hash: str
    eglr_version: str

    def __post_init__(self) -> None:
        for field in FIELDS:
            value = getattr(self, field.name)
            checked = field.check(value)
            if checked is not value:
                object.__setattr__(self, field.name, checked)
        _check_values(self)

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(field.name for field in FIELDS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutRecord:
        """Validate a parsed JSON line (any schema version) into a current record."""
        if not isinstance(data, Mapping):
            raise RecordError(f"a rollout record must be a JSON object, got {type(data).__name__}")
        data = upgrade(data)
        missing = [field.name for field in FIELDS if field.name not in data]
        if missing:
            raise RecordError(f"the record lacks the fields {missing}")
        return cls(**{field.name: data[field.name] for field in FIELDS})

    @classmethod
    def from_line(cls, line: bytes | str) -> RolloutRecord:
        """A record from one line of a rollout file; ValueError (RecordError, or bad JSON / UTF-8) otherwise.
        A line that does not give a record is what the readers call partial."""
        return cls.from_dict(json.loads(line))

    def to_dict(self) -> dict[str, Any]:
        """The fields as Python values (an infinite ``tau`` is a float)."""
        return {field.name: getattr(self, field.name) for field in FIELDS}

    def to_json(self) -> str:
        """One line of JSON, fields in schema order (so reruns are byte-identical); an infinite
        ``tau`` is written as ``"inf"`` or ``"-inf"``."""
        values = self.to_dict()
        for name in INFINITE_FIELDS:
            if isinstance(values[name], float) and math.isinf(values[name]):
                values[name] = "inf" if values[name] > 0 else "-inf"
        return json.dumps(values, ensure_ascii=False, allow_nan=False)

    def replace(self, **changes: Any) -> RolloutRecord:
        return dataclasses.replace(self, **changes)


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """A record of any schema version with the current field names (values not yet checked)."""
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise RecordError(f"schema_version={version!r} is not one this eglr reads (1..{SCHEMA_VERSION}; "
                          "a newer eglr may have written it)")
    record = dict(data)
    if version == 1:
        for old, new in RENAMED_IN_V2.items():
            if old in record and new not in record:
                record[new] = record.pop(old)
        for name, value in SCHEMA_1_VALUES.items():
            record.setdefault(name, value)
        for field in FIELDS:
            if field.nullable:
                record.setdefault(field.name, None)
    return record


@dataclass(frozen=True)
class Field:
    """One field of the record: its name, its JSON kind, and whether it may be null."""

    name: str
    kind: str  # "str" | "int" | "float" | "bool" | "object" | "int_list"
    nullable: bool

    def check(self, value: Any) -> Any:
        """The value, as the field's kind (an int for a float field becomes a float), or RecordError."""
        if value is None:
            if self.nullable:
                return None
            raise self.error(value, "must not be null")
        kind = self.kind
        if kind == "str" and isinstance(value, str):
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and self.name in INFINITE_FIELDS and value in INFINITIES:
            return INFINITIES[value]
        if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(value) or (math.isinf(value) and self.name not in INFINITE_FIELDS):
                raise self.error(value, "must be a finite number")
            return value if isinstance(value, float) else float(value)
        if kind == "object" and isinstance(value, dict):
            return value
        if kind == "int_list" and isinstance(value, list) and all(
                isinstance(item, int) and not isinstance(item, bool) for item in value):
            return value
        raise self.error(value, f"must be {_KIND_WORDS[kind]}")

    def error(self, value: Any, reason: str) -> RecordError:
        return RecordError(f"{self.name}={value!r} {reason}")


_KIND_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "object": "a JSON object", "int_list": "a list of integers"}
_KINDS = {str: "str", int: "int", float: "float", bool: "bool", dict: "object", list: "int_list"}


def _fields() -> tuple[Field, ...]:
    hints = typing.get_type_hints(RolloutRecord)
    fields = []
    for field in dataclasses.fields(RolloutRecord):
        hint = hints[field.name]
        arguments = [argument for argument in typing.get_args(hint) if argument is not type(None)]
        nullable = type(None) in typing.get_args(hint)
        base = arguments[0] if nullable else hint
        fields.append(Field(field.name, _KINDS[typing.get_origin(base) or base], nullable))
    return tuple(fields)


FIELDS: tuple[Field, ...] = _fields()
FIELDS_BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}


def _check_values(record: RolloutRecord) -> None:
    """The few value ranges the schema itself fixes (the settings are checked by the runner)."""
    if not 1 <= record.schema_version <= SCHEMA_VERSION:
        raise FIELDS_BY_NAME["schema_version"].error(record.schema_version, f"is not in 1..{SCHEMA_VERSION}")
    for name in ("layer_span", "sample", "num_tokens", "num_gated", "num_reapplications"):
        if getattr(record, name) < 0:
            raise FIELDS_BY_NAME[name].error(getattr(record, name), "must be >= 0")
    if record.temperature < 0:
        raise FIELDS_BY_NAME["temperature"].error(record.temperature, "must be >= 0")
    if record.engine not in ENGINES:
        raise FIELDS_BY_NAME["engine"].error(record.engine, f"must be one of {ENGINES}")
    if record.finish_reason not in FINISH_REASONS:
        raise FIELDS_BY_NAME["finish_reason"].error(record.finish_reason, f"must be one of {FINISH_REASONS}")
