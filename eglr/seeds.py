"""Stable seeds, settings hashes and problem digests.

A sampled rollout's seed depends on (base seed, problem id, temperature, sample index) and not on the
layer span, so every layer span sees the same random numbers: the L axis is compared under common
random numbers. Hashes are SHA-256 of canonical JSON, so they are stable across processes,
machines and Python versions (unlike ``hash()``). Settings are hashed by value, not by spelling:
numbers are numbers (``1`` and ``1.0`` hash alike) and mappings are key-sorted.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def _digest(payload: Any) -> bytes:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).digest()


def canonical(value: Any) -> Any:
    """``value`` with every integral float written as an int (``1.0`` -> ``1``) and infinities as
    ``"inf"`` / ``"-inf"`` (JSON has none), recursively."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(key): canonical(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def sample_seed(problem_id: str, temperature: float, sample: int, base_seed: int = 0) -> int:
    """The seed of one sampled rollout: a 63-bit integer, identical for every layer span."""
    payload = {"base_seed": int(base_seed), "problem_id": str(problem_id),
               "temperature": float(temperature), "sample": int(sample)}
    return int.from_bytes(_digest(payload)[:8], "big") >> 1


def settings_hash(settings: dict[str, Any]) -> str:
    """A short hash of everything that changes a rollout's output besides its key."""
    return _digest(canonical(settings)).hex()[:16]


def text_digest(text: str) -> str:
    """A short SHA-256 fingerprint of a text (a problem statement), to notice when it changes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
