"""The rollout record schema: one definition, validated, and old files still read."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eglr.metrics import load_rollouts
from eglr.schema import SCHEMA_VERSION, RecordError, RolloutRecord

FIXTURE = Path(__file__).parent / "data" / "rollouts_schema_v1.jsonl"


def v1_records() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_schema_1_records_upgrade_to_the_current_schema() -> None:
    old = v1_records()[0]
    record = RolloutRecord.from_dict(old)
    assert record.schema_version == 1 and SCHEMA_VERSION >= 2
    assert record.num_reapplications == old["num_iterations"]
    assert record.engine == "hf" and record.reinject == "raw"
    assert record.num_converged is None and record.reapplication_histogram is None and record.provenance is None


def test_a_record_round_trips_through_its_json_line() -> None:
    record = RolloutRecord.from_dict(v1_records()[3])
    line = record.to_json()
    assert RolloutRecord.from_dict(json.loads(line)) == record
    assert list(json.loads(line)) == list(RolloutRecord.field_names())


@pytest.mark.parametrize("field,value,message", [
    ("layer_span", "2", "layer_span='2'"),
    ("correct", "yes", "correct='yes'"),
    ("temperature", None, "temperature=None"),
    ("num_tokens", 1.5, "num_tokens=1.5"),
    ("schema_version", 99, "schema_version=99"),
    ("eps", float("inf"), "eps=inf must be a finite number"),
    ("tau", float("nan"), "tau=nan must be a finite number"),
    ("tau", "infinity", "tau='infinity' must be a number"),
])
def test_a_bad_field_is_named_with_its_value(field, value, message) -> None:
    record = v1_records()[0] | {field: value}
    with pytest.raises(RecordError) as error:
        RolloutRecord.from_dict(record)
    assert message in str(error.value)


def test_an_infinite_tau_is_written_as_a_string() -> None:
    record = RolloutRecord.from_dict(v1_records()[0] | {"tau": "-inf"})
    assert record.tau == float("-inf")
    assert json.loads(record.to_json())["tau"] == "-inf"
    assert RolloutRecord.from_dict(json.loads(record.to_json())) == record


def test_a_missing_field_is_named() -> None:
    record = v1_records()[0]
    del record["gold"]
    with pytest.raises(RecordError, match="gold"):
        RolloutRecord.from_dict(record)


def test_the_committed_demo_schema_loads_for_the_analysis() -> None:
    rollouts = load_rollouts(FIXTURE)
    assert len(rollouts) == 10
    assert (rollouts["schema_version"] == 1).all()
    assert rollouts["num_reapplications"].tolist() == [record["num_iterations"] for record in v1_records()]
    assert "num_iterations" not in rollouts


def test_a_bad_field_in_a_file_names_the_file_line_and_field(tmp_path) -> None:
    records = v1_records()
    records[1]["layer_span"] = "two"
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(ValueError, match=r"r\.jsonl:2.*layer_span='two'"):
        load_rollouts(path)
