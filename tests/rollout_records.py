"""Complete rollout records of the current schema, for tests that write rollout files by hand."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eglr.schema import SCHEMA_VERSION, RolloutRecord

BASE: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION, "model": "tiny-math", "model_id": "asset:tiny-math", "revision": None,
    "dtype": "float32", "provenance": None, "engine": "hf", "benchmark": "arith", "problem_id": "1",
    "problem_digest": "0123456789abcdef", "layer_span": 0, "temperature": 0.0, "top_p": 1.0, "sample": 0,
    "seed": None, "tau": 1.0, "tau_quantile": None, "k_max": 4, "eps": 0.001, "criterion": "kl",
    "kv_policy": "overwrite", "reinject": "raw", "max_new_tokens": 96, "prompt_version": "v1",
    "response": "so \\boxed{4}", "gold": "4", "extracted": "4", "correct": True, "grade_reason": "match",
    "grader_version": "1.0", "num_tokens": 10, "num_gated": 2, "num_reapplications": 3, "num_converged": 1,
    "reapplication_histogram": [1, 0, 1, 0], "mean_stop_kl": 0.002, "finish_reason": "eos",
    "mean_logprob": -0.25, "num_layers": 4, "time_s": 0.01, "settings_hash": "settings-a", "eglr_version": "0.1.0",
}


def record(problem_id: str = "1", layer_span: int = 0, temperature: float = 0.0, sample: int = 0,
           correct: bool | None = True, **fields: Any) -> dict[str, Any]:
    """A valid record (checked against the schema) with the given key, grade and other fields."""
    values = BASE | {"problem_id": problem_id, "layer_span": layer_span, "temperature": temperature,
                     "sample": sample, "correct": correct} | fields
    return RolloutRecord(**values).to_dict()


def write_lines(path: Path, records: list[dict], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in records) + tail)
