"""Append-only rollout JSONL files that survive ``kill -9`` and concurrent writers.

One JSON object per line. Every append is a single ``write`` of whole lines under an exclusive
``flock``, followed by ``fsync``, so a file only ever ends in a partial line when a writer died in
the middle of a write. That partial line is detected and cut off (with a warning) the next time the
file is opened; complete records are never rewritten or dropped.

A rollout is identified by its key (problem id, layer span, temperature, sample) and counts as done
only when recorded with the same settings hash, so changing a setting that alters the output
(tau, prompt, model revision, ...) regenerates instead of silently reusing old results.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RolloutKey = tuple[str, int, float, int]


def rollout_key(record: dict[str, Any]) -> RolloutKey:
    """The identity of a rollout within one (model, benchmark) file."""
    return (str(record["problem_id"]), int(record["layer_span"]),
            float(record["temperature"]), int(record["sample"]))


def dumps(record: dict[str, Any]) -> str:
    """One record as one line of JSON (field order kept, so reruns are byte-identical)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


class RolloutStore:
    """The rollout file of one job: which keys are done, and appending new records."""

    def __init__(self, path: str | os.PathLike[str], settings_hash: str) -> None:
        self.path = Path(path)
        self.settings_hash = settings_hash
        self.done: set[RolloutKey] = set()
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
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _repair_tail(self, handle: Any) -> None:
        """Cut a partial last line left by a writer that died mid-write.

        Called under the lock: a live writer holds it for its whole write, so a partial line seen
        here can only come from a dead one.
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
        log.warning("%s ends in a partial line (%d bytes, from an interrupted write); dropping it",
                    self.path, size - keep)
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())

    def _scan(self, handle: Any) -> None:
        """Read records appended since the last scan (by this or any other process)."""
        handle.seek(self._offset)
        data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        for number, line in enumerate(complete.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = rollout_key(record)
            except (ValueError, KeyError, TypeError) as error:
                log.warning("%s: skipping an unreadable record near byte %d (%s)", self.path,
                            self._offset, error)
                continue
            if record.get("settings_hash") == self.settings_hash:
                self.done.add(key)
            else:
                self.other_settings += 1
        self._offset += len(complete)

    def is_done(self, key: RolloutKey) -> bool:
        return key in self.done

    def append(self, records: Iterable[dict[str, Any]]) -> int:
        """Append the records whose key is not done yet; returns how many were written.

        Keys written meanwhile by a concurrent job with the same settings are skipped, so two
        identical jobs racing on one file still leave one record per key.
        """
        with self._locked() as handle:
            self._repair_tail(handle)
            self._scan(handle)
            lines, keys = [], []
            for record in records:
                key = rollout_key(record)
                if key in self.done or key in keys:
                    continue
                lines.append(dumps(record) + "\n")
                keys.append(key)
            if not lines:
                return 0
            payload = "".join(lines).encode("utf-8")
            handle.seek(0, os.SEEK_END)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
            self._offset += len(payload)
            self.done.update(keys)
            return len(lines)
