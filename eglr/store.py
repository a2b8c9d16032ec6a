"""Append-only rollout JSONL files that survive ``kill -9`` and concurrent writers.

One :class:`~eglr.schema.RolloutRecord` per line. Every append is a single ``write`` of whole lines
under an exclusive ``flock``, followed by ``fsync``, so a file only ever ends without a newline when
a writer died in the middle of a write. The next open repairs that tail: a last line that is a
complete, valid record gets its newline; anything else is a partial line and is cut off (with a
warning). Complete records are never rewritten or dropped.

A rollout is identified by its key (problem id, layer span, temperature, sample) and counts only
when recorded with the same settings hash, so changing a setting that alters the output (tau,
prompt, model revision, ...) regenerates instead of silently reusing old results. Within one
settings hash a later record of a key supersedes an earlier one: that is how a re-graded or
regenerated rollout replaces a stale one without rewriting the file.
"""
from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eglr.schema import RecordError, RolloutRecord

log = logging.getLogger(__name__)

RolloutKey = tuple[str, int, float, int]


def rollout_key(record: RolloutRecord) -> RolloutKey:
    """The identity of a rollout within one (model, benchmark) file and settings hash."""
    return (record.problem_id, record.layer_span, record.temperature, record.sample)


@dataclass(frozen=True)
class StoredRollout:
    """Where the latest record of a key sits, and what it was generated from and graded against."""

    offset: int
    length: int
    problem_digest: str | None
    gold: str
    grader_version: str | None  # None: not graded

    def is_current(self, problem_digest: str | None, gold: str, grader_version: str | None) -> bool:
        """Whether this record stands for a rollout of that problem text, graded against that gold
        (by that grader; ``grader_version=None`` asks for no grade, so any grade will do)."""
        return (self.problem_digest == problem_digest and self.gold == gold
                and (grader_version is None or self.grader_version == grader_version))


@contextmanager
def _flocked(handle: Any, operation: int) -> Iterator[None]:
    """Hold ``flock(operation)`` on an open file: LOCK_EX for the writer, LOCK_SH for a reader that
    must not see half a write."""
    fcntl.flock(handle.fileno(), operation)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def complete_lines(data: bytes) -> bytes:
    """``data`` up to and including its last newline: what a reader may trust of a file being appended."""
    return data[: data.rfind(b"\n") + 1]


class RolloutStore:
    """The rollout file of one job: which keys are recorded, and appending new records."""

    def __init__(self, path: str | os.PathLike[str], settings_hash: str) -> None:
        self.path = Path(path)
        self.settings_hash = settings_hash
        self.latest: dict[RolloutKey, StoredRollout] = {}
        self.other_settings = 0
        self._offset = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as handle:
            self._repair_tail(handle)
            self._scan(handle)
        if self.other_settings:
            log.warning("%s holds %d records written under other settings; they are kept and not "
                        "reused (this job's settings hash is %s)", self.path, self.other_settings,
                        settings_hash)

    @contextmanager
    def _locked(self) -> Iterator[Any]:
        with open(self.path, "a+b") as handle, _flocked(handle, fcntl.LOCK_EX):
            yield handle

    def _repair_tail(self, handle: Any) -> None:
        """Give a complete last record its newline, or cut a partial last line.

        Called under the lock: a live writer holds it for its whole write, so a line without its
        newline seen here can only come from a dead one.
        """
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        keep = data.rfind(b"\n") + 1
        try:
            RolloutRecord.from_line(data[keep:])
        except ValueError as error:
            log.warning("%s ends in a partial line (%d bytes, from an interrupted write: %s); dropping it",
                        self.path, size - keep, error)
            handle.truncate(keep)
        else:
            log.warning("%s ends in a complete record without its newline; adding the newline", self.path)
            handle.write(b"\n")
        handle.flush()
        os.fsync(handle.fileno())

    def _scan(self, handle: Any) -> None:
        """Read records appended since the last scan (by this or any other process)."""
        handle.seek(self._offset)
        data = handle.read()
        complete = complete_lines(data)
        position = self._offset
        for line in complete.splitlines(keepends=True):
            start, position = position, position + len(line)
            if not line.strip():
                continue
            try:
                head = json.loads(line)
                if not isinstance(head, dict):
                    raise RecordError("not a JSON object")
                if head.get("settings_hash") != self.settings_hash:
                    self.other_settings += 1
                    continue
                record = RolloutRecord.from_dict(head)
            except ValueError as error:
                log.warning("%s: skipping an unreadable record at byte %d (%s)", self.path, start, error)
                continue
            self.latest[rollout_key(record)] = StoredRollout(
                start, len(line), record.problem_digest, record.gold, record.grader_version)
        self._offset += len(complete)

    def get(self, key: RolloutKey) -> StoredRollout | None:
        """The latest record of ``key`` under this store's settings, if any."""
        return self.latest.get(key)

    def read(self, keys: Iterable[RolloutKey]) -> list[RolloutRecord]:
        """The latest records of ``keys`` themselves (KeyError for a key without one)."""
        with open(self.path, "rb") as handle:
            records = []
            for key in keys:
                stored = self.latest[key]
                handle.seek(stored.offset)
                records.append(RolloutRecord.from_line(handle.read(stored.length)))
            return records

    def append(self, records: Iterable[RolloutRecord]) -> int:
        """Append the records not already current in the file; returns how many were written.

        A record is skipped when the file's latest record of its key (under these settings) is
        already current for its problem digest, gold and grader: so two identical jobs racing on one
        file, which rescan under the lock before writing, still leave one record per key.
        """
        with self._locked() as handle:
            self._repair_tail(handle)
            self._scan(handle)
            lines: list[bytes] = []
            written: dict[RolloutKey, RolloutRecord] = {}
            for record in records:
                if record.settings_hash != self.settings_hash:
                    raise ValueError(f"record of settings {record.settings_hash} appended to a store of "
                                     f"settings {self.settings_hash}")
                key = rollout_key(record)
                stored = self.latest.get(key)
                if key in written or (stored is not None and stored.is_current(
                        record.problem_digest, record.gold, record.grader_version)):
                    continue
                lines.append((record.to_json() + "\n").encode("utf-8"))
                written[key] = record
            if not lines:
                return 0
            handle.seek(0, os.SEEK_END)
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            for line, (key, record) in zip(lines, written.items()):
                self.latest[key] = StoredRollout(self._offset, len(line), record.problem_digest,
                                                 record.gold, record.grader_version)
                self._offset += len(line)
            return len(lines)


def whole_lines(path: str | os.PathLike[str]) -> bytes:
    """The file's complete lines, read under the writers' lock: a copy taken while a job runs never
    ends in the middle of a write."""
    with open(path, "rb") as handle, _flocked(handle, fcntl.LOCK_SH):
        return complete_lines(handle.read())


def recorded_rollouts(path: str | os.PathLike[str], settings_hash: str) -> dict[RolloutKey, RolloutRecord]:
    """The latest record of every key recorded under ``settings_hash`` in a rollout file, read
    without locking or repairing it (it may be another job's file, or only its ``.jsonl.gz``
    snapshot; a missing file has no records). Unreadable lines are skipped, as the store does."""
    live = Path(path)
    snapshot = live.with_name(live.name + ".gz")
    if live.exists():
        data = live.read_bytes()
    elif snapshot.exists():
        data = gzip.decompress(snapshot.read_bytes())
    else:
        return {}
    latest: dict[RolloutKey, RolloutRecord] = {}
    for line in complete_lines(data).splitlines():
        try:
            head = json.loads(line) if line.strip() else None
            if not isinstance(head, dict) or head.get("settings_hash") != settings_hash:
                continue
            record = RolloutRecord.from_dict(head)
        except ValueError:
            continue
        latest[rollout_key(record)] = record
    return latest
