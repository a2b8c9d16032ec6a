"""RolloutStore: tail repair, settings, and what counts as a recorded rollout."""
from __future__ import annotations

import json
from pathlib import Path

from eglr.store import RolloutStore

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
