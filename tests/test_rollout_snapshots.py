"""scripts/rollout_snapshots.py: the committed .jsonl.gz snapshots a long study resumes from."""
from __future__ import annotations

import fcntl
import gzip
import importlib.util
import multiprocessing
import sys
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LINES = b'{"a": 1}\n{"a": 2}\n'


@pytest.fixture(scope="module")
def snapshots():
    spec = importlib.util.spec_from_file_location("rollout_snapshots", REPO_ROOT / "scripts" / "rollout_snapshots.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def live_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "model" / "bench" / "rollouts.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_save_then_restore_gives_the_file_back_and_saving_again_writes_nothing(snapshots, tmp_path) -> None:
    live = live_file(tmp_path, LINES)
    assert snapshots.save(tmp_path) == [live.with_name("rollouts.jsonl.gz")]
    first = live.with_name("rollouts.jsonl.gz").read_bytes()
    assert snapshots.save(tmp_path) == []  # deterministic bytes: an unchanged file is not rewritten
    live.unlink()
    assert snapshots.restore(tmp_path) == [live]
    assert live.read_bytes() == LINES and live.with_name("rollouts.jsonl.gz").read_bytes() == first


def test_a_partial_last_line_is_left_out_of_the_snapshot(snapshots, tmp_path) -> None:
    live = live_file(tmp_path, LINES + b'{"a": 3, "resp')
    snapshots.save(tmp_path)
    assert gzip.decompress(live.with_name("rollouts.jsonl.gz").read_bytes()) == LINES


def test_restore_never_overwrites_a_live_file(snapshots, tmp_path) -> None:
    live = live_file(tmp_path, LINES)
    snapshots.save(tmp_path)
    live.write_bytes(LINES + b'{"a": 3}\n')
    assert snapshots.restore(tmp_path) == []
    assert live.read_bytes() == LINES + b'{"a": 3}\n'


def _hold_the_writers_lock(path: str, locked, release) -> None:
    with open(path, "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write(b'{"a": 3, "resp')
        handle.flush()
        locked.set()
        release.wait(10)
        handle.write(b'onse": "x"}\n')
        handle.flush()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def test_a_snapshot_waits_for_a_write_in_progress(snapshots, tmp_path) -> None:
    """The store appends under an exclusive flock; the snapshot reads under a shared one, so it sees
    the file before or after a write, never in the middle of one."""
    live = live_file(tmp_path, LINES)
    context = multiprocessing.get_context("fork")
    locked, release = context.Event(), context.Event()
    writer = context.Process(target=_hold_the_writers_lock, args=(str(live), locked, release))
    writer.start()
    try:
        assert locked.wait(10)
        threading.Timer(0.5, release.set).start()  # the write ends half a second after the snapshot starts
        snapshots.save(tmp_path)
    finally:
        release.set()
        writer.join(10)
    assert gzip.decompress(live.with_name("rollouts.jsonl.gz").read_bytes()) == LINES + b'{"a": 3, "response": "x"}\n'
