"""Stable seeds and settings hashes.

A sampled rollout's seed depends on (base seed, problem id, temperature, sample index) and not on the
layer span, so every layer span sees the same random numbers: the L axis is compared under common
random numbers. Hashes are SHA-256 of canonical JSON, so they are stable across processes,
machines and Python versions (unlike ``hash()``).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def _digest(payload: Any) -> bytes:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).digest()


def sample_seed(problem_id: str, temperature: float, sample: int, base_seed: int = 0) -> int:
    """The seed of one sampled rollout: a 63-bit integer, identical for every layer span."""
    payload = {"base_seed": int(base_seed), "problem_id": str(problem_id),
               "temperature": float(temperature), "sample": int(sample)}
    return int.from_bytes(_digest(payload)[:8], "big") >> 1


def settings_hash(settings: dict[str, Any]) -> str:
    """A short hash of everything that changes a rollout's output besides its key."""
    return _digest(settings).hex()[:16]
