"""The entropy gate calibrated per model: tau as a quantile of the model's own greedy next-token entropies.

An entropy of 1 nat means different things for different models (a 0.5B model
decoding its own chain of thought has a median next-token entropy of a few
hundredths of a nat, a random model several nats). ``eglr.tau_quantile = q``
sets tau to the q-quantile of the entropies of every next-token distribution of
greedy, L = 0 decoding on calibration prompts (the first generated token and
the end-of-sequence step included), so that the gate fires on about 1 - q of a
greedy chain's steps.

The calibration prompts are problems that are not evaluated: the last
``num_prompts`` problems of the calibration benchmark (by default the job's own
benchmark, whose first problems are the evaluated ones; the runner checks that
the two sets do not overlap). The result is deterministic (greedy decoding, a
fixed batch), and cached as a small JSON file keyed on everything it depends on,
so a rerun reads the same tau without loading anything. A calibration saved
beside committed results (``.json.gz``) can be put back into the cache on a new
machine with ``python -m eglr.calibration import FILE...``, so that a resumed
study uses the very tau its first records were made with.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eglr.benchmarks.records import Problem
from eglr.weights import cache_root


def check_quantile(quantile: object) -> float:
    """``quantile`` as a float in (0, 1); ValueError naming the value otherwise."""
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
        raise ValueError(f"eglr.tau_quantile must be a number strictly between 0 and 1 (e.g. 0.9), got {quantile!r}")
    return float(quantile)


def calibration_problems(problems: Sequence[Problem], evaluated_ids: set[str], num_prompts: int,
                         benchmark: str) -> list[Problem]:
    """The last ``num_prompts`` problems of a benchmark, refusing any that is also evaluated."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"calibration.num_prompts must be a positive integer, got {num_prompts!r}")
    if num_prompts > len(problems):
        raise ValueError(f"calibration.num_prompts={num_prompts} but benchmark {benchmark!r} has {len(problems)} problems")
    chosen = list(problems[-num_prompts:])
    overlap = [problem.id for problem in chosen if problem.id in evaluated_ids]
    if overlap:
        raise ValueError(
            f"the calibration prompts (the last {num_prompts} problems of {benchmark!r}) overlap the evaluated problems "
            f"({len(overlap)} shared, e.g. {overlap[0]!r}): lower `limit`, lower calibration.num_prompts or set "
            f"calibration.benchmark to another benchmark")
    return chosen


@dataclass(frozen=True)
class Calibration:
    """Greedy next-token entropies (nats, sorted) of a model on its calibration prompts."""

    key: str
    description: dict[str, object]
    entropies: tuple[float, ...]

    def tau(self, quantile: float) -> float:
        """The ``quantile`` of the entropies (linear interpolation between order statistics)."""
        quantile = check_quantile(quantile)
        if not self.entropies:
            raise ValueError(f"calibration {self.key} has no entropies")
        position = quantile * (len(self.entropies) - 1)
        below = math.floor(position)
        above = min(below + 1, len(self.entropies) - 1)
        low, high = self.entropies[below], self.entropies[above]
        return float(low + (high - low) * (position - below))


def calibration_key(description: dict[str, object]) -> str:
    """A short digest of everything a calibration depends on."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_directory() -> Path:
    """Where calibrations are cached: ``$EGLR_CACHE/calibration`` (default ``~/.cache/eglr/calibration``)."""
    return cache_root() / "calibration"


def greedy_entropies(model, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int, batch_size: int,
                     eos_token_id: int | Sequence[int] | None = None,
                     pad_token_id: int | None = None) -> list[float]:
    """The entropy of every next-token distribution of greedy L = 0 decoding of each prompt
    (the engine's own, :attr:`eglr.engine.GenerationOutput.step_entropies`), in prompt order."""
    from eglr.engine import EGLRConfig, generate
    from eglr.text import left_padded

    pad = pad_token_id if pad_token_id is not None else model.generation_config.pad_token_id
    values: list[float] = []
    for start in range(0, len(prompt_ids), batch_size):
        input_ids, mask = left_padded([list(ids) for ids in prompt_ids[start:start + batch_size]], pad)
        output = generate(model, input_ids.to(model.device), mask.to(model.device), eglr=EGLRConfig(),
                          max_new_tokens=max_new_tokens, eos_token_id=eos_token_id, pad_token_id=pad,
                          return_entropies=True)
        for row in output.step_entropies:
            values.extend(row)
    return values


def load_or_calibrate(description: dict[str, object], compute, directory: Path | None = None) -> Calibration:
    """The cached calibration for ``description``, or ``compute()`` (a list of entropies) written to the cache."""
    key = calibration_key(description)
    path = (directory or cache_directory()) / f"{key}.json"
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("description") == json.loads(json.dumps(description)):
            return Calibration(key, stored["description"], tuple(stored["entropies"]))
    entropies = tuple(sorted(float(value) for value in compute()))
    calibration = Calibration(key, description, entropies)
    _write_cached(path, asdict(calibration))
    return calibration


def _write_cached(path: Path, stored: dict[str, object]) -> None:
    """Write a cache entry whole or not at all (built aside, then renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(stored, allow_nan=False) + "\n", encoding="utf-8")
    temporary.replace(path)


def import_calibration(source: Path, directory: Path | None = None) -> Path:
    """Copy a saved calibration (``.json`` or ``.json.gz``) into the cache, after checking that its
    key is its description's digest and its entropies are sorted finite numbers; returns the cached path."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as handle:
        stored = json.load(handle)
    key, description, entropies = stored.get("key"), stored.get("description"), stored.get("entropies")
    if not isinstance(description, dict) or key != calibration_key(description):
        raise ValueError(f"{source}: its key {key!r} is not the digest of its description; not a calibration "
                         "this code wrote, or edited since")
    if (not isinstance(entropies, list) or not entropies
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in entropies)
            or entropies != sorted(entropies)):
        raise ValueError(f"{source}: its entropies are not a non-empty sorted list of finite numbers")
    path = (directory or cache_directory()) / f"{key}.json"
    _write_cached(path, stored)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eglr.calibration",
                                     description="Put saved calibrations back into the cache ($EGLR_CACHE/calibration).")
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("import", help="copy saved calibration files (.json or .json.gz) into the cache")
    put.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for source in args.files:
        print(f"{source} -> {import_calibration(source)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
