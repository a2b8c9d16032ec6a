"""Synthetic rollout records of the runner's schema (:mod:`eglr.schema`), for tests, benchmarks and demos.

Correctness follows a simple latent model: problem ``p`` has a difficulty, each
model an ability, and each (layer span, temperature) cell shifts the logit by a
fixed, problem-specific amount, so that different cells solve different
problems (the situation the oracle analysis is about). Wrong rollouts extract
one of a few wrong answers or nothing.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eglr.schema import SCHEMA_VERSION, RolloutRecord


def synthetic_rollouts(
    models: Sequence[str] = ("tiny-math",),
    benchmarks: Sequence[str] = ("math500",),
    n_problems: int = 20,
    layer_spans: Sequence[int] = (0, 2, 4),
    temperatures: Sequence[float] = (0.0, 0.6, 1.0),
    samples_per_cell: int = 4,
    samples_at_layer_span_0: int | None = None,
    num_layers: int = 24,
    seed: int = 0,
) -> pd.DataFrame:
    """Every (model, benchmark, problem, layer span, temperature, sample) rollout, with
    one sample at temperature 0 and ``samples_per_cell`` at the others --
    ``samples_at_layer_span_0`` at layer span 0 if given, as in the paper grid. The frame is
    what :func:`eglr.metrics.load_rollouts` returns for such files: the record fields plus an
    (empty: there is one configuration) ``configuration`` column."""
    if n_problems < 1 or samples_per_cell < 1:
        raise ValueError(f"need n_problems >= 1 and samples_per_cell >= 1, got {n_problems}, {samples_per_cell}")
    rng = np.random.default_rng(seed)
    cells = [
        (span, float(temperature), sample)
        for span in layer_spans
        for temperature in temperatures
        for sample in range(
            1 if temperature == 0 else samples_at_layer_span_0 if span == 0 and samples_at_layer_span_0 else samples_per_cell
        )
    ]
    cell_span, cell_temperature, cell_sample = (np.array(values) for values in zip(*cells))
    n_groups, n_cells = len(models) * len(benchmarks), len(cells)
    group = np.repeat(np.arange(n_groups), n_problems * n_cells)
    problem = np.tile(np.repeat(np.arange(n_problems), n_cells), n_groups)
    cell = np.tile(np.arange(n_cells), n_groups * n_problems)
    model = np.asarray(models)[group // len(benchmarks)]
    benchmark = np.asarray(benchmarks)[group % len(benchmarks)]
    span, temperature = cell_span[cell], cell_temperature[cell]

    ability = rng.normal(0.5, 0.5, len(models))[group // len(benchmarks)]
    difficulty = rng.normal(0.0, 1.5, (n_groups, n_problems))[group, problem]
    cell_ids = np.unique(np.stack([cell_span, cell_temperature]), axis=1, return_inverse=True)[1].ravel()
    cell_effect = rng.normal(0.0, 1.0, (n_groups, n_problems, cell_ids.max() + 1))[group, problem, cell_ids[cell]]
    noise = rng.logistic(0.0, 1.0, len(group)) * (temperature > 0)
    correct = ability - difficulty + cell_effect + noise > 0

    gold = np.char.add("g", problem.astype(str))
    wrong = np.char.add(np.char.add("w", (problem % 7).astype(str)), rng.integers(0, 3, len(group)).astype(str))
    abstain = ~correct & (rng.random(len(group)) < 0.15)
    extracted = np.where(correct, gold, wrong).astype(object)
    extracted[abstain] = None

    num_tokens = rng.integers(50, 400, len(group))
    num_gated = rng.binomial(num_tokens, 0.1) * (span > 0)
    num_reapplications = num_gated * rng.integers(1, 4, len(group))
    num_converged = rng.binomial(num_gated, 0.5)
    seeds = np.where(temperature > 0, problem * 1000 + cell_sample[cell], -1).astype(object)
    seeds[temperature == 0] = None
    frame = pd.DataFrame({
        "schema_version": SCHEMA_VERSION, "model": model, "model_id": np.char.add("org/", model),
        "revision": "main", "dtype": "bfloat16", "provenance": None, "engine": "hf",
        "benchmark": benchmark, "problem_id": problem.astype(str),
        "problem_digest": np.char.add("digest-", problem.astype(str)),
        "layer_span": span, "temperature": temperature, "top_p": 1.0, "sample": cell_sample[cell], "seed": seeds,
        "tau": 1.0, "tau_quantile": None, "k_max": 4, "eps": 1e-3, "criterion": "kl", "kv_policy": "overwrite",
        "reinject": "raw", "max_new_tokens": 1024, "prompt_version": "v1",
        "response": "...", "gold": gold, "extracted": extracted, "correct": correct,
        "grade_reason": np.where(correct, "match", np.where(abstain, "no_answer", "mismatch")),
        "grader_version": "synthetic",
        "num_tokens": num_tokens, "num_gated": num_gated, "num_reapplications": num_reapplications,
        "num_converged": num_converged, "reapplication_histogram": None,
        "mean_stop_kl": np.where(num_gated > 0, 0.01, np.nan),
        "finish_reason": "eos",
        "mean_logprob": np.where(correct, -0.3, -0.6) + rng.normal(0, 0.15, len(group)),
        "num_layers": num_layers, "time_s": num_tokens / 50.0, "settings_hash": "synthetic",
        "eglr_version": "0.1.0",
    }, columns=list(RolloutRecord.field_names()))
    RolloutRecord.from_dict(_first_record(frame))  # the schema is the runner's
    frame["configuration"] = pd.Categorical([""] * len(frame))
    return frame


def _first_record(frame: pd.DataFrame) -> dict:
    return json.loads(frame.drop(columns="configuration", errors="ignore").head(1).to_json(orient="records"))[0]


def write_rollouts(rollouts: pd.DataFrame, directory: str | Path) -> list[Path]:
    """Write ``<directory>/<model>/<benchmark>/rollouts.jsonl`` files as the runner does."""
    paths = []
    records = rollouts[list(RolloutRecord.field_names())]
    for (model, benchmark), frame in records.groupby(["model", "benchmark"], observed=True, sort=True):
        path = Path(directory) / str(model) / str(benchmark) / "rollouts.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.sort_values(["problem_id", "layer_span", "temperature", "sample"]).to_json(
            path, orient="records", lines=True)
        paths.append(path)
    return paths
