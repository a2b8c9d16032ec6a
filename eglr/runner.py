"""One job of the study: a model x a benchmark x an L x T grid, written rollout by rollout.

The job plans every rollout up front, groups them into fixed batches (per grid cell, problems in
order), and skips any batch whose rollouts are all recorded already. Because batches are the same
on every run of the same command, a resumed job regenerates a partly written batch exactly as the
uninterrupted job would have, and writes only its missing records: the final file equals that of an
uninterrupted run.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eglr.benchmarks import Problem, get_benchmark, load_benchmark
from eglr.benchmarks.prompts import PromptConfig, render_prompt
from eglr.seeds import sample_seed, settings_hash
from eglr.store import RolloutKey, RolloutStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollout:
    """One planned rollout: a problem under one (layer span, temperature, sample)."""

    problem: Problem
    layer_span: int
    temperature: float
    sample: int
    seed: int | None

    @property
    def key(self) -> RolloutKey:
        return (self.problem.id, self.layer_span, self.temperature, self.sample)


@dataclass(frozen=True)
class Cell:
    layer_span: int
    temperature: float
    samples: int


def grid_cells(grid: Any) -> list[Cell]:
    """The (layer span, temperature) cells of a grid with their sample counts.

    Temperature 0 is greedy and has one rollout; layer span 0 at a non-zero temperature draws
    ``baseline_samples`` (default ``samples``) so the temperature-only pool can match the joint
    pool's budget.
    """
    baseline = grid.get("baseline_samples")
    baseline = grid.samples if baseline is None else baseline
    cells = []
    for layer_span in grid.layer_spans:
        for temperature in grid.temperatures:
            if temperature == 0:
                samples = 1
            else:
                samples = baseline if layer_span == 0 else grid.samples
            cells.append(Cell(int(layer_span), float(temperature), int(samples)))
    return cells


def validate(cfg: DictConfig) -> None:
    """Reject a bad configuration before any model or data is loaded, naming the bad value."""
    from eglr.engine import EGLRConfig

    grid = cfg.grid
    if not grid.layer_spans:
        raise ValueError("grid.layer_spans is empty: give at least one layer span, e.g. [0]")
    if not grid.temperatures:
        raise ValueError("grid.temperatures is empty: give at least one temperature, e.g. [0.0]")
    for name in ("layer_spans", "temperatures"):
        values = list(grid[name])
        if len(set(values)) != len(values):
            raise ValueError(f"grid.{name}={values} has duplicates")
    depth = int(cfg.model.num_layers)
    for layer_span in grid.layer_spans:
        if not isinstance(layer_span, int) or isinstance(layer_span, bool):
            raise ValueError(f"grid.layer_spans: {layer_span!r} is not an integer")
        if not 0 <= layer_span <= depth:
            raise ValueError(f"grid.layer_spans: {layer_span} is outside [0, {depth}], the decoder "
                             f"depth of model {cfg.model.name}")
        EGLRConfig(layer_span=layer_span, **cfg.eglr)
    for temperature in grid.temperatures:
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"grid.temperatures: {temperature!r} is not a finite temperature >= 0")
    for name in ("samples", "baseline_samples"):
        value = grid.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"grid.{name}={value!r} must be a positive integer")
    generation = cfg.generation
    if not isinstance(generation.max_new_tokens, int) or generation.max_new_tokens < 1:
        raise ValueError(f"generation.max_new_tokens={generation.max_new_tokens!r} must be >= 1")
    if not isinstance(generation.batch_size, int) or generation.batch_size < 1:
        raise ValueError(f"generation.batch_size={generation.batch_size!r} must be >= 1")
    if not 0 < generation.top_p <= 1:
        raise ValueError(f"generation.top_p={generation.top_p!r} must be in (0, 1]")
    if not isinstance(cfg.num_shards, int) or cfg.num_shards < 1:
        raise ValueError(f"num_shards={cfg.num_shards!r} must be a positive integer")
    if not isinstance(cfg.shard, int) or not 0 <= cfg.shard < cfg.num_shards:
        raise ValueError(f"shard={cfg.shard!r} must be in [0, num_shards={cfg.num_shards})")
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise ValueError(f"limit={cfg.limit!r} must be a positive integer or null")
    get_benchmark(cfg.benchmark.name)


def job_settings(cfg: DictConfig) -> dict[str, Any]:
    """Everything that changes a rollout's output, apart from its key: hashed into settings_hash."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("num_layers", None)
    return {
        "model": model,
        "benchmark": OmegaConf.to_container(cfg.benchmark, resolve=True),
        "prompt": OmegaConf.to_container(cfg.prompt, resolve=True),
        "eglr": OmegaConf.to_container(cfg.eglr, resolve=True),
        "top_p": float(cfg.generation.top_p),
        "max_new_tokens": int(cfg.generation.max_new_tokens),
        "seed": int(cfg.generation.seed),
    }


def output_path(cfg: DictConfig) -> Path:
    """``<output_dir>/<model>/<benchmark>/rollouts.jsonl``; each shard of a sharded job has its own file."""
    name = "rollouts.jsonl" if cfg.num_shards == 1 else f"rollouts.shard{cfg.shard}-of-{cfg.num_shards}.jsonl"
    return Path(cfg.output_dir) / cfg.model.name / cfg.benchmark.name / name


def load_problems(cfg: DictConfig) -> list[Problem]:
    """The benchmark's problems, cut to ``limit`` and then to this job's shard."""
    options = {key: cfg.benchmark[key] for key in ("path", "hub_id", "split")
               if cfg.benchmark.get(key) is not None}
    problems = load_benchmark(cfg.benchmark.name, **options)
    if cfg.limit is not None:
        problems = problems[: cfg.limit]
    return [problem for index, problem in enumerate(problems) if index % cfg.num_shards == cfg.shard]


def plan_batches(problems: list[Problem], cells: list[Cell], batch_size: int,
                 base_seed: int) -> list[list[Rollout]]:
    """All rollouts of the job in fixed batches: one cell at a time, problems in order."""
    batches = []
    for cell in cells:
        rollouts = [
            Rollout(problem, cell.layer_span, cell.temperature, sample,
                    None if cell.temperature == 0 else sample_seed(problem.id, cell.temperature, sample, base_seed))
            for problem in problems for sample in range(cell.samples)
        ]
        batches.extend(rollouts[start:start + batch_size] for start in range(0, len(rollouts), batch_size))
    return batches


class Generator:
    """The loaded model: turns a batch of rollouts into records (generated, decoded and graded)."""

    def __init__(self, cfg: DictConfig, settings: str) -> None:
        import torch

        from eglr.engine import EGLRConfig
        from eglr.models import eos_token_ids, load_model
        from eglr.version import eglr_version

        self.cfg = cfg
        if cfg.get("torch_threads"):
            torch.set_num_threads(int(cfg.torch_threads))
        self.eglr_config = EGLRConfig
        self.model, self.tokenizer = load_model(cfg.model, device=cfg.device)
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.prompt = PromptConfig(**OmegaConf.to_container(cfg.prompt, resolve=True))
        self.version = eglr_version()
        self.hash = settings
        self._prompt_ids: dict[str, list[int]] = {}
        if cfg.grade:
            from eglr.grading import GRADER_VERSION, grade

            self.grade, self.grader_version = grade, GRADER_VERSION
        else:
            self.grade, self.grader_version = None, None

    def _encode(self, problem: Problem) -> list[int]:
        if problem.id not in self._prompt_ids:
            text = render_prompt(self.tokenizer, problem.problem, self.prompt)
            self._prompt_ids[problem.id] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prompt_ids[problem.id]

    def __call__(self, batch: list[Rollout]) -> list[dict[str, Any]]:
        from eglr.engine import generate

        cfg = self.cfg
        encoded = self.tokenizer.pad({"input_ids": [self._encode(r.problem) for r in batch]},
                                     padding=True, return_tensors="pt")
        device = self.model.device
        layer_span, temperature = batch[0].layer_span, batch[0].temperature
        started = time.perf_counter()
        output = generate(
            self.model, encoded["input_ids"].to(device), encoded["attention_mask"].to(device),
            eglr=self.eglr_config(layer_span=layer_span, **cfg.eglr),
            temperature=temperature, top_p=float(cfg.generation.top_p),
            max_new_tokens=int(cfg.generation.max_new_tokens),
            seed=None if temperature == 0 else [r.seed for r in batch],
            eos_token_id=self.eos_ids, pad_token_id=self.tokenizer.pad_token_id)
        sequences = output.sequences.cpu()
        responses = [self.tokenizer.decode(sequences[row, :count], skip_special_tokens=True)
                     for row, count in enumerate(output.num_tokens)]
        seconds = (time.perf_counter() - started) / len(batch)
        return [self._record(rollout, responses[row], output, row, seconds)
                for row, rollout in enumerate(batch)]

    def _record(self, rollout: Rollout, response: str, output: Any, row: int, seconds: float) -> dict[str, Any]:
        cfg, problem = self.cfg, rollout.problem
        if self.grade is not None:
            graded = self.grade(response, problem.answer, benchmark=cfg.benchmark.name,
                                timeout_s=float(cfg.grader_timeout_s))
            extracted, correct = graded.extracted, bool(graded.correct)
        else:
            extracted, correct = None, None
        num_tokens = int(output.num_tokens[row])
        sum_logprob = float(output.sum_logprob[row])
        return {
            "model": cfg.model.name,
            "model_id": cfg.model.hub_id or cfg.model.get("path") or cfg.model.name,
            "revision": cfg.model.revision,
            "benchmark": cfg.benchmark.name,
            "problem_id": problem.id,
            "layer_span": rollout.layer_span,
            "temperature": rollout.temperature,
            "top_p": float(cfg.generation.top_p),
            "sample": rollout.sample,
            "seed": rollout.seed,
            "tau": float(cfg.eglr.tau),
            "k_max": int(cfg.eglr.k_max),
            "eps": float(cfg.eglr.eps),
            "criterion": cfg.eglr.criterion,
            "kv_policy": cfg.eglr.kv_policy,
            "max_new_tokens": int(cfg.generation.max_new_tokens),
            "prompt_version": cfg.prompt.version,
            "response": response,
            "gold": problem.answer,
            "extracted": extracted,
            "correct": correct,
            "num_tokens": num_tokens,
            "num_gated": int(output.num_gated[row]),
            "num_iterations": int(output.num_reapplications[row]),
            "finish_reason": output.finish_reasons[row],
            "mean_logprob": round(sum_logprob / num_tokens, 6) if num_tokens else None,
            "num_layers": int(cfg.model.num_layers),
            "dtype": cfg.model.dtype,
            "grader_version": self.grader_version,
            "time_s": round(seconds, 4),
            "settings_hash": self.hash,
            "eglr_version": self.version,
        }


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="rollout", dynamic_ncols=True,
                desc="rollouts")


def pending_batches(batches: list[list[Rollout]], store: RolloutStore) -> Iterator[list[Rollout]]:
    for batch in batches:
        if not all(store.is_done(rollout.key) for rollout in batch):
            yield batch


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job to completion (or resume it); returns a small summary."""
    validate(cfg)
    problems = load_problems(cfg)
    if not problems:
        raise ValueError(f"benchmark {cfg.benchmark.name!r} gave no problems for shard {cfg.shard} of "
                         f"{cfg.num_shards} (limit={cfg.limit})")
    batches = plan_batches(problems, grid_cells(cfg.grid), int(cfg.generation.batch_size),
                           int(cfg.generation.seed))
    path = output_path(cfg)
    store = RolloutStore(path, settings_hash(job_settings(cfg)))
    total = sum(len(batch) for batch in batches)
    done = sum(store.is_done(rollout.key) for batch in batches for rollout in batch)
    log.info("%s x %s: %d problems, %d rollouts, %d already in %s", cfg.model.name, cfg.benchmark.name,
             len(problems), total, done, path)
    written = 0
    todo = list(pending_batches(batches, store))
    if todo:
        generator = Generator(cfg, store.settings_hash)
        tracker = _Tracker(cfg)
        with _progress(total, done, bool(cfg.progress)) as bar:
            for batch in todo:
                records = generator(batch)
                count = store.append(records)
                written += count
                bar.update(count)
                tracker.log(records)
        tracker.finish(path, store.settings_hash)
    summary = {"path": str(path), "problems": len(problems), "rollouts": total,
               "generated": written, "skipped": done}
    log.info("done: %s", summary)
    return summary


class _Tracker:
    """Optional Weights & Biases logging (off unless ``wandb.mode`` is offline or online)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.run = None
        if cfg.wandb.mode == "disabled":
            return
        import wandb

        self.run = wandb.init(mode=cfg.wandb.mode, project=cfg.wandb.project, entity=cfg.wandb.entity,
                              group=cfg.wandb.group, name=f"{cfg.model.name}/{cfg.benchmark.name}",
                              config=OmegaConf.to_container(cfg, resolve=True))

    def log(self, records: list[dict[str, Any]]) -> None:
        if self.run is not None:
            graded = [r["correct"] for r in records if r["correct"] is not None]
            self.run.log({"batch_accuracy": sum(graded) / len(graded) if graded else float("nan"),
                          "batch_tokens": sum(r["num_tokens"] for r in records)})

    def finish(self, path: Path, settings: str) -> None:
        if self.run is None:
            return
        self.run.summary.update(cell_accuracy(path, settings))
        self.run.finish()


def cell_accuracy(path: Path, settings: str) -> dict[str, float]:
    """Accuracy per (layer span, temperature) cell of one rollout file, for run summaries."""
    import json

    totals: dict[str, list[int]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break
            record = json.loads(line)
            if record.get("settings_hash") != settings or record.get("correct") is None:
                continue
            name = f"accuracy/L{record['layer_span']}_T{record['temperature']:g}"
            tally = totals.setdefault(name, [0, 0])
            tally[0] += bool(record["correct"])
            tally[1] += 1
    return {name: hits / count for name, (hits, count) in totals.items()}
