"""RolloutStore: tail repair, settings, and what counts as a recorded rollout."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eglr.schema import RolloutRecord
from eglr.store import RolloutStore
from rollout_records import record

FIXTURE = Path(__file__).parent / "data" / "rollouts_schema_v1.jsonl"


def fixture_lines() -> list[bytes]:
    return FIXTURE.read_bytes().splitlines(keepends=True)


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path) -> None:
    lines = fixture_lines()
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(b"".join(lines[:-1]) + lines[-1].rstrip(b"\n"))
    RolloutStore(path, "another-settings-hash")
    assert path.read_bytes() == b"".join(lines)


def test_a_partial_last_line_is_cut_off(tmp_path) -> None:
    lines = fixture_lines()
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(b"".join(lines) + lines[0][: len(lines[0]) // 2])
    RolloutStore(path, "another-settings-hash")
    assert path.read_bytes() == b"".join(lines)


def test_a_valid_json_tail_that_is_not_a_record_is_cut_off(tmp_path) -> None:
    lines = fixture_lines()
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(b"".join(lines) + json.dumps({"model": "tiny-math"}).encode())
    RolloutStore(path, "another-settings-hash")
    assert path.read_bytes() == b"".join(lines)


def _record(**fields) -> RolloutRecord:
    return RolloutRecord(**record(**fields))


def test_a_record_is_appended_only_when_the_latest_one_is_not_current(tmp_path) -> None:
    path = tmp_path / "rollouts.jsonl"
    store = RolloutStore(path, "settings-a")
    ungraded = _record(correct=None, extracted=None, grade_reason=None, grader_version=None)
    assert store.append([ungraded]) == 1
    assert store.append([ungraded]) == 0  # same digest, gold and (no) grade
    graded = _record()
    assert store.append([graded]) == 1  # a grade supersedes no grade
    assert store.append([ungraded]) == 0  # asking for no grade: any grade will do
    assert store.append([_record(gold="5", correct=False)]) == 1  # another gold
    assert store.append([_record(gold="5", correct=False, problem_digest="fedcba9876543210")]) == 1
    key = ("1", 0, 0.0, 0)
    assert store.get(key).gold == "5" and store.read([key])[0].problem_digest == "fedcba9876543210"
    # A second store on the same file (another process) sees the same latest record.
    again = RolloutStore(path, "settings-a")
    assert again.get(key) == store.get(key) and len(path.read_text().splitlines()) == 4


def test_concurrent_stores_write_a_record_once(tmp_path) -> None:
    path = tmp_path / "rollouts.jsonl"
    first, second = RolloutStore(path, "settings-a"), RolloutStore(path, "settings-a")
    assert first.append([_record()]) == 1
    assert second.append([_record()]) == 0  # rescanned under the lock before writing
    assert len(path.read_text().splitlines()) == 1


def test_records_of_other_settings_are_kept_and_not_reused(tmp_path) -> None:
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(FIXTURE.read_bytes())
    store = RolloutStore(path, "settings-a")
    assert store.other_settings == 10 and not store.latest
    assert store.append([_record()]) == 1
    assert path.read_bytes().startswith(FIXTURE.read_bytes())


def test_an_unreadable_line_is_skipped_and_its_rollout_not_counted(tmp_path, caplog) -> None:
    path = tmp_path / "rollouts.jsonl"
    good = _record(problem_id="2").to_json()
    bad = _record().to_json().replace('"layer_span": 0', '"layer_span": "zero"')
    path.write_text(bad + "\n" + good + "\n")
    store = RolloutStore(path, "settings-a")
    assert store.get(("1", 0, 0.0, 0)) is None and store.get(("2", 0, 0.0, 0)) is not None
    assert "unreadable record at byte 0" in caplog.text and "layer_span='zero'" in caplog.text


def test_a_record_of_other_settings_cannot_be_appended(tmp_path) -> None:
    with pytest.raises(ValueError, match="settings-b"):
        RolloutStore(tmp_path / "r.jsonl", "settings-a").append([_record(settings_hash="settings-b")])
