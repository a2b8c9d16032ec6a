"""Committed snapshots of rollout files: ``save`` gzips every ``*.jsonl`` under a directory into
``*.jsonl.gz`` (deterministically: no timestamp, so an unchanged file gives identical bytes; its whole
lines only, read under the writers' lock, so it is safe while a job appends),
``restore`` unpacks a snapshot into the live ``*.jsonl`` a resumed run appends to, where that is
missing. The analysis reads either (``eglr.metrics.rollout_files``).

    python scripts/rollout_snapshots.py save results/real-cpu/rollouts
    python scripts/rollout_snapshots.py restore results/real-cpu/rollouts
"""
from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

from eglr.store import whole_lines


def save(directory: Path) -> list[Path]:
    written = []
    for live in sorted(directory.rglob("*.jsonl")):
        snapshot = live.with_name(live.name + ".gz")
        data = gzip.compress(whole_lines(live), compresslevel=9, mtime=0)
        if not snapshot.exists() or snapshot.read_bytes() != data:
            temporary = snapshot.with_name(f".{snapshot.name}.tmp{os.getpid()}")
            temporary.write_bytes(data)
            temporary.replace(snapshot)
            written.append(snapshot)
    return written


def restore(directory: Path) -> list[Path]:
    restored = []
    for snapshot in sorted(directory.rglob("*.jsonl.gz")):
        live = snapshot.with_suffix("")
        if not live.exists():
            live.write_bytes(gzip.decompress(snapshot.read_bytes()))
            restored.append(live)
    return restored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    if not args.directory.is_dir():
        if args.action == "restore":
            return
        raise SystemExit(f"{args.directory} is not a directory")
    changed = save(args.directory) if args.action == "save" else restore(args.directory)
    for path in changed:
        print(f"{args.action}d {path}")


if __name__ == "__main__":
    main()
