"""One job of the study: a model x a benchmark x an L x T grid, written rollout by rollout.

The job plans every rollout up front, groups them into fixed batches (per grid cell, problems in
order), and skips any batch whose rollouts are all recorded already. Because batches are the same
on every run of the same command, a resumed job regenerates a partly written batch exactly as the
uninterrupted job would have, and writes only its missing records: the final file equals that of an
uninterrupted run.

A recorded rollout is reused only if it is current: same settings hash, same problem text (its
``problem_digest``), graded against the current gold by the current grader (when grading is on).
A rollout whose problem text changed is regenerated; one whose gold or grader changed, or that was
written with ``grade=false``, is re-graded from its recorded response without loading the model.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eglr.benchmarks import Problem, get_benchmark, load_benchmark
from eglr.benchmarks.prompts import PromptConfig, render_prompt
from eglr.schema import ENGINES, SCHEMA_VERSION, TEMPERATURE_DECIMALS, RolloutRecord
from eglr.seeds import sample_seed, settings_hash, text_digest
from eglr.store import RolloutKey, RolloutStore, recorded_rollouts, rollout_key

log = logging.getLogger(__name__)

# Below this a temperature multiplies logit gaps by more than 1000: any gap above 0.02 nats leaves
# the runner-up less than e^-20 of the mass, so it is greedy decoding in all but name, while
# logits / T heads for float overflow (inf below about 1e-37). Use 0 for greedy.
MIN_TEMPERATURE = 1e-3

def available_engines() -> tuple[str, ...]:
    """``hf``, and ``vllm`` where the optional package ``eglr_vllm`` and vLLM are installed (they live
    in their own environment, .venv-vllm: ``make vllm-setup``). Looked up without importing vLLM."""
    from importlib.util import find_spec

    try:
        has_vllm = find_spec("vllm") is not None and find_spec("eglr_vllm.generator") is not None
    except (ImportError, ValueError):
        has_vllm = False
    return ("hf", "vllm") if has_vllm else ("hf",)


AVAILABLE_ENGINES = available_engines()
DEVICES = ("auto", "cpu", "cuda", "cuda:<index>")
WANDB_MODES = ("disabled", "offline", "online")
# The engine's keys of the eglr config group; everything else there (tau_quantile) is the runner's.
ENGINE_KEYS = ("tau", "k_max", "eps", "criterion", "kv_policy", "reinject")


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
    ``samples_at_layer_span_0`` (default ``samples``) so the temperature-only pool can match the
    joint pool's budget.
    """
    at_span_0 = grid.get("samples_at_layer_span_0")
    at_span_0 = grid.samples if at_span_0 is None else at_span_0
    cells = []
    for layer_span in grid.layer_spans:
        for temperature in grid.temperatures:
            if temperature == 0:
                samples = 1
            else:
                samples = at_span_0 if layer_span == 0 else grid.samples
            cells.append(Cell(int(layer_span), float(temperature), int(samples)))
    return cells


# --- validation: every value checked once, here, before any model or data is loaded -------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Reject a bad configuration before any model or data is loaded: one ValueError naming every
    bad key and its value."""
    problems: list[str] = []
    for check in (_check_engine, _check_device, _check_model, _check_grid, _check_eglr, _check_calibration,
                  _check_generation, _check_prompt, _check_job):
        check(cfg, problems)
    if problems:
        raise ValueError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_engine(cfg: DictConfig, problems: list[str]) -> None:
    engine = cfg.engine
    if engine not in ENGINES:
        problems.append(f"engine={engine!r}: must be one of {ENGINES}")
    elif engine not in AVAILABLE_ENGINES:
        problems.append(f"engine={engine!r}: not available in this eglr (available: {AVAILABLE_ENGINES}); "
                        "`make vllm-setup` builds .venv-vllm with vLLM and eglr_vllm, run the job from there")
    if engine == "vllm":
        options = cfg.get("vllm") or {}
        for name in ("max_model_len", "max_num_seqs"):
            value = options.get(name)
            if not _is_int(value) or value < 1:
                problems.append(f"vllm.{name}={value!r}: must be a positive integer")
        if not _is_number(options.get("kv_cache_gib")) or not options.get("kv_cache_gib") > 0:
            problems.append(f"vllm.kv_cache_gib={options.get('kv_cache_gib')!r}: must be a number > 0")
        device = cfg.get("device")
        if isinstance(device, str) and device.startswith("cuda:"):
            problems.append(f"device={device!r} with engine=vllm: vLLM runs on the first visible GPU; choose it "
                            f"with CUDA_VISIBLE_DEVICES={device.removeprefix('cuda:')} and device=cuda")


def _check_device(cfg: DictConfig, problems: list[str]) -> None:
    device = cfg.device
    index = device.removeprefix("cuda:") if isinstance(device, str) and device.startswith("cuda:") else None
    if device not in ("auto", "cpu", "cuda") and not (index is not None and index.isdigit()):
        problems.append(f"device={device!r}: must be one of {DEVICES}")
        return
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(f"device={device!r}: no CUDA device is available to this torch "
                            f"({torch.__version__}); use device=cpu or device=auto")
        elif index is not None and int(index) >= torch.cuda.device_count():
            problems.append(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")


def _check_model(cfg: DictConfig, problems: list[str]) -> None:
    from eglr.models import DTYPES, SOURCES

    model = cfg.model
    for name in ("name", "hub_id", "path", "revision"):
        value = model.get(name)
        if not (isinstance(value, str) or (value is None and name != "name")):
            problems.append(f"model.{name}={value!r}: must be a string{'' if name == 'name' else ' or null'} "
                            "(quote a revision that looks like a number)")
    if model.source not in SOURCES:
        problems.append(f"model.source={model.source!r}: must be one of {SOURCES}")
    if model.dtype not in DTYPES:
        problems.append(f"model.dtype={model.dtype!r}: must be one of {sorted(DTYPES)}")
    if not _is_int(model.num_layers) or model.num_layers < 1:
        problems.append(f"model.num_layers={model.num_layers!r}: must be a positive integer")
    provenance = model.get("provenance")
    if provenance is not None and not isinstance(provenance, DictConfig):
        problems.append(f"model.provenance={provenance!r}: must be a mapping or null")


def _check_grid(cfg: DictConfig, problems: list[str]) -> None:
    grid = cfg.grid
    spans, temperatures = list(grid.layer_spans or []), list(grid.temperatures or [])
    if not spans:
        problems.append("grid.layer_spans is empty: give at least one layer span, e.g. [0]")
    if not temperatures:
        problems.append("grid.temperatures is empty: give at least one temperature, e.g. [0.0]")
    depth = cfg.model.num_layers if _is_int(cfg.model.num_layers) else None
    for layer_span in spans:
        if not _is_int(layer_span):
            problems.append(f"grid.layer_spans: {layer_span!r} is not an integer")
        elif depth is not None and not 0 <= layer_span <= depth:
            problems.append(f"grid.layer_spans: {layer_span} is outside [0, {depth}], the decoder depth of "
                            f"model {cfg.model.name}")
    if len(set(spans)) != len(spans):
        problems.append(f"grid.layer_spans={spans} has duplicates")
    for temperature in temperatures:
        if not _is_number(temperature) or not math.isfinite(temperature) or temperature < 0:
            problems.append(f"grid.temperatures: {temperature!r} is not a finite temperature >= 0")
        elif 0 < temperature < MIN_TEMPERATURE:
            problems.append(f"grid.temperatures: {temperature!r} is below the minimum {MIN_TEMPERATURE} "
                            "(use 0.0 for greedy decoding)")
    rounded = [round(t, TEMPERATURE_DECIMALS) for t in temperatures if _is_number(t) and math.isfinite(t)]
    if len(set(rounded)) != len(rounded):
        problems.append(f"grid.temperatures={temperatures} has duplicates (at {TEMPERATURE_DECIMALS} decimals)")
    for name in ("samples", "samples_at_layer_span_0"):
        value = grid.get(name)
        if (value is not None or name == "samples") and (not _is_int(value) or value < 1):
            problems.append(f"grid.{name}={value!r}: must be a positive integer")


def _check_eglr(cfg: DictConfig, problems: list[str]) -> None:
    """Each engine key through EGLRConfig's own checks (one definition), named by its key."""
    from eglr.step import EGLRConfig

    accepted = {field.name for field in dataclasses.fields(EGLRConfig)}
    for name in ENGINE_KEYS:
        if name not in cfg.eglr or name not in accepted:
            continue
        value = cfg.eglr[name]
        try:
            EGLRConfig(**{name: value})
        except ValueError as error:
            problems.append(f"eglr.{name}={value!r}: {error}")


def _check_calibration(cfg: DictConfig, problems: list[str]) -> None:
    """``eglr.tau_quantile`` and, when it is set, the ``calibration`` block it uses."""
    from eglr.calibration import check_quantile

    quantile = cfg.eglr.get("tau_quantile")
    if quantile is None:
        return
    try:
        check_quantile(quantile)
    except ValueError as error:
        problems.append(f"eglr.tau_quantile={quantile!r}: {error}")
    calibration = cfg.get("calibration")
    if calibration is None:
        problems.append("eglr.tau_quantile is set but the config has no `calibration` block")
        return
    for name in ("num_prompts", "max_new_tokens"):
        value = calibration.get(name)
        if not _is_int(value) or value < 1:
            problems.append(f"calibration.{name}={value!r}: must be a positive integer")
    if calibration.get("benchmark") is not None:
        try:
            get_benchmark(calibration.benchmark)
        except ValueError as error:
            problems.append(f"calibration.benchmark={calibration.benchmark!r}: {error}")


def _check_generation(cfg: DictConfig, problems: list[str]) -> None:
    from eglr.sampling import validate_sampling

    generation = cfg.generation
    try:
        validate_sampling(1.0, generation.top_p)
    except ValueError as error:
        problems.append(f"generation.top_p={generation.top_p!r}: {error}")
    for name in ("max_new_tokens", "batch_size"):
        value = generation[name]
        if not _is_int(value) or value < 1:
            problems.append(f"generation.{name}={value!r}: must be a positive integer")
    if not _is_int(generation.seed) or generation.seed < 0:
        problems.append(f"generation.seed={generation.seed!r}: must be an integer >= 0")


def _check_prompt(cfg: DictConfig, problems: list[str]) -> None:
    for name in ("instruction", "template", "version"):
        if not isinstance(cfg.prompt[name], str):
            problems.append(f"prompt.{name}={cfg.prompt[name]!r}: must be a string")
    if cfg.prompt.system is not None and not isinstance(cfg.prompt.system, str):
        problems.append(f"prompt.system={cfg.prompt.system!r}: must be a string or null")
    template = cfg.prompt.template
    if isinstance(template, str):
        try:
            filled = template.format(problem="\0", instruction="")
        except (KeyError, IndexError, ValueError) as error:
            problems.append(f"prompt.template={template!r}: takes only {{problem}} and {{instruction}} ({error!r})")
        else:
            if "\0" not in filled:
                problems.append(f"prompt.template={template!r}: has no {{problem}}")


def _check_job(cfg: DictConfig, problems: list[str]) -> None:
    if not _is_int(cfg.num_shards) or cfg.num_shards < 1:
        problems.append(f"num_shards={cfg.num_shards!r}: must be a positive integer")
    elif not _is_int(cfg.shard) or not 0 <= cfg.shard < cfg.num_shards:
        problems.append(f"shard={cfg.shard!r}: must be in [0, num_shards={cfg.num_shards})")
    if cfg.limit is not None and (not _is_int(cfg.limit) or cfg.limit < 1):
        problems.append(f"limit={cfg.limit!r}: must be a positive integer or null")
    if cfg.torch_threads is not None and (not _is_int(cfg.torch_threads) or cfg.torch_threads < 1):
        problems.append(f"torch_threads={cfg.torch_threads!r}: must be a positive integer or null")
    for name in ("grade", "progress"):
        if not isinstance(cfg[name], bool):
            problems.append(f"{name}={cfg[name]!r}: must be true or false")
    if not _is_number(cfg.grader_timeout_s) or not cfg.grader_timeout_s > 0:
        problems.append(f"grader_timeout_s={cfg.grader_timeout_s!r}: must be a number > 0")
    if not isinstance(cfg.output_dir, str) or not cfg.output_dir:
        problems.append(f"output_dir={cfg.output_dir!r}: must be a directory path")
    reuse = cfg.get("reuse_from")
    if reuse is not None and (not isinstance(reuse, str) or not Path(reuse).is_dir()):
        problems.append(f"reuse_from={reuse!r}: must be null or an existing output directory")
    elif reuse is not None and Path(reuse).resolve() == Path(str(cfg.output_dir)).resolve():
        problems.append(f"reuse_from={reuse!r}: is this job's own output_dir")
    if cfg.wandb.mode not in WANDB_MODES:
        problems.append(f"wandb.mode={cfg.wandb.mode!r}: must be one of {WANDB_MODES}")
    try:
        get_benchmark(cfg.benchmark.name)
    except ValueError as error:
        problems.append(f"benchmark.name={cfg.benchmark.name!r}: {error}")


# --- settings: what the engine gets, what is recorded, what is hashed ----------------------------

def eglr_settings(cfg: DictConfig) -> dict[str, Any]:
    """The EGLR settings as they act on the output, typed: what each record carries and the settings
    hash covers. ``eps`` is None under ``criterion=argmax``, where it plays no part."""
    eglr = cfg.eglr
    criterion = eglr.criterion
    tau_quantile = eglr.get("tau_quantile")
    return {
        "tau": float(eglr.tau),
        "tau_quantile": None if tau_quantile is None else float(tau_quantile),
        "k_max": int(eglr.k_max),
        "eps": float(eglr.eps) if criterion == "kl" else None,
        "criterion": criterion,
        "kv_policy": eglr.kv_policy,
        "reinject": eglr.get("reinject", "raw"),
    }


def eglr_config(cfg: DictConfig, layer_span: int) -> Any:
    """The engine's EGLRConfig for one layer span, from the engine's own keys of ``cfg.eglr``."""
    from eglr.step import EGLRConfig

    accepted = {field.name for field in dataclasses.fields(EGLRConfig)}
    values = {name: cfg.eglr[name] for name in ENGINE_KEYS if name in accepted and name in cfg.eglr}
    values["tau"] = float(values["tau"])
    return EGLRConfig(layer_span=layer_span, **values)


def job_settings(cfg: DictConfig) -> dict[str, Any]:
    """Everything that changes a rollout's output, apart from its key and its problem: hashed into
    settings_hash (by value: :func:`eglr.seeds.settings_hash` writes 1.0 as 1).

    The problems themselves are fingerprinted per record (``problem_digest``, ``gold``), so where
    the benchmark was read from is not part of the settings; ``batch_size``, ``device`` and
    ``torch_threads`` do not change a rollout either.
    """
    return {
        "engine": cfg.engine,
        "model": model_settings(cfg),
        "benchmark": cfg.benchmark.name,
        "prompt": OmegaConf.to_container(cfg.prompt, resolve=True),
        "eglr": eglr_settings(cfg),
        "top_p": float(cfg.generation.top_p),
        "max_new_tokens": int(cfg.generation.max_new_tokens),
        "seed": int(cfg.generation.seed),
    }


def model_settings(cfg: DictConfig) -> dict[str, Any]:
    """The model config as it changes outputs (its decoder depth is checked, not a setting)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("num_layers", None)
    return model


def resolve_tau(cfg: DictConfig, load: Any) -> DictConfig:
    """``cfg`` with ``eglr.tau`` set from ``eglr.tau_quantile`` when that is given (else ``cfg`` itself).

    The calibration (:mod:`eglr.calibration`) decodes the last ``calibration.num_prompts``
    problems of ``calibration.benchmark`` (default: the job's), which must not be among the
    evaluated ones, greedily; it is cached, so ``load()`` (the job's model loader) is called only
    when it has to be computed.
    """
    quantile = cfg.eglr.get("tau_quantile")
    if quantile is None:
        return cfg
    from eglr.calibration import calibration_problems, greedy_entropies, load_or_calibrate

    calibration = cfg.calibration
    name = calibration.benchmark or cfg.benchmark.name
    same = name == cfg.benchmark.name
    pool = load_benchmark(name, **(_source_options(cfg) if same else {}))
    evaluated = {problem.id for problem in (pool if same else load_benchmark(cfg.benchmark.name, **_source_options(cfg)))
                 [: cfg.limit]} if same else set()
    chosen = calibration_problems(pool, evaluated, int(calibration.num_prompts), name)
    description = {
        "model": model_settings(cfg),
        "prompt": OmegaConf.to_container(cfg.prompt, resolve=True),
        "benchmark": name,
        "problems": [[problem.id, text_digest(problem.problem)] for problem in chosen],
        "max_new_tokens": int(calibration.max_new_tokens),
        "device": _device_type(cfg),
    }

    def compute() -> list[float]:
        model, tokenizer = load()
        encode = PromptIds(tokenizer, cfg.prompt)
        prompt_ids = [encode(problem) for problem in chosen]
        log.info("calibrating the gate of %s on %d %s problems", cfg.model.name, len(chosen), name)
        return greedy_entropies(model, prompt_ids, max_new_tokens=int(calibration.max_new_tokens),
                                batch_size=int(cfg.generation.batch_size))

    tau = load_or_calibrate(description, compute).tau(float(quantile))
    log.info("eglr.tau_quantile=%s: tau = %.6g nats (calibration on %d %s problems)", quantile, tau, len(chosen), name)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.eglr.tau = tau
    return resolved


def _device_type(cfg: DictConfig) -> str:
    from eglr.models import resolve_device

    return resolve_device(cfg.device).type


def output_path(cfg: DictConfig, output_dir: str | None = None) -> Path:
    """``<output_dir>/<model>/<benchmark>/rollouts.jsonl``; each shard of a sharded job has its own file."""
    name = "rollouts.jsonl" if cfg.num_shards == 1 else f"rollouts.shard{cfg.shard}-of-{cfg.num_shards}.jsonl"
    return Path(output_dir or cfg.output_dir) / cfg.model.name / cfg.benchmark.name / name


def _source_options(cfg: DictConfig) -> dict[str, Any]:
    return {key: cfg.benchmark[key] for key in ("path", "hub_id", "split") if cfg.benchmark.get(key) is not None}


def load_problems(cfg: DictConfig) -> list[Problem]:
    """The benchmark's problems, cut to ``limit`` and then to this job's shard."""
    problems = load_benchmark(cfg.benchmark.name, **_source_options(cfg))
    if cfg.limit is not None:
        problems = problems[: cfg.limit]
    mine = [problem for index, problem in enumerate(problems) if index % cfg.num_shards == cfg.shard]
    if not mine:
        source = problems[0].metadata.get("source") if problems else cfg.benchmark.get("path")
        raise ValueError(f"benchmark {cfg.benchmark.name!r} ({source}) gave no problems for shard {cfg.shard} "
                         f"of {cfg.num_shards} (limit={cfg.limit}, {len(problems)} problems in all)")
    return mine


def plan_batches(problems: list[Problem], cells: list[Cell], batch_size: int,
                 base_seed: int) -> list[list[Rollout]]:
    """All rollouts of the job in fixed batches: blocks of ``batch_size`` problems, in order; within a
    block, one cell at a time.

    Problem-major order makes a job that is stopped part-way a complete grid on its first problems
    (every layer span and temperature of a problem done before the next block starts), so a long
    study can be analysed honestly while it runs. A block of ``batch_size`` problems fills whole
    batches in every cell. Rollouts do not depend on how they are batched.
    """
    batches = []
    for block_start in range(0, len(problems), batch_size):
        block = problems[block_start:block_start + batch_size]
        for cell in cells:
            rollouts = [
                Rollout(problem, cell.layer_span, cell.temperature, sample,
                        None if cell.temperature == 0 else sample_seed(problem.id, cell.temperature, sample,
                                                                       base_seed))
                for problem in block for sample in range(cell.samples)
            ]
            batches.extend(rollouts[start:start + batch_size] for start in range(0, len(rollouts), batch_size))
    return batches


# --- grading and generation -------------------------------------------------------------------

class Grader:
    """Grades records against their problem's current gold (or, with ``grade=false``, records them
    ungraded: a grade against a gold that has since changed would be stale)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.benchmark = cfg.benchmark.name
        self.timeout_s = float(cfg.grader_timeout_s)
        self.version: str | None = None
        if cfg.grade:
            from eglr.grading import GRADER_VERSION, grade_many

            self.version, self._grade_many = GRADER_VERSION, grade_many

    def __call__(self, records: Sequence[RolloutRecord], golds: Sequence[str]) -> list[RolloutRecord]:
        if self.version is None:
            return [record.replace(gold=gold, extracted=None, correct=None, grade_reason=None, grader_version=None)
                    for record, gold in zip(records, golds)]
        results = self._grade_many([record.response for record in records], list(golds), self.benchmark,
                                   timeout_s=self.timeout_s)
        return [record.replace(gold=gold, extracted=result.extracted, correct=bool(result.correct),
                               grade_reason=result.reason, grader_version=self.version)
                for record, gold, result in zip(records, golds, results)]


class ModelLoader:
    """Loads the job's model and tokenizer once, when first needed (calibration or generation)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self._loaded: tuple[Any, Any] | None = None

    def __call__(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch

            from eglr.models import load_model

            if self.cfg.torch_threads:
                torch.set_num_threads(int(self.cfg.torch_threads))
            self._loaded = load_model(self.cfg.model, device=self.cfg.device)
        return self._loaded


def record_fields(cfg: DictConfig, settings: str) -> dict[str, Any]:
    """The fields every record of a job shares, whatever engine generates it."""
    from eglr.version import eglr_version

    provenance = cfg.model.get("provenance")
    return {
        "schema_version": SCHEMA_VERSION,
        "model": cfg.model.name,
        "model_id": cfg.model.hub_id or cfg.model.get("path") or cfg.model.name,
        "revision": cfg.model.revision,
        "dtype": cfg.model.dtype,
        "provenance": None if provenance is None else OmegaConf.to_container(provenance, resolve=True),
        "engine": cfg.engine,
        "benchmark": cfg.benchmark.name,
        "top_p": float(cfg.generation.top_p),
        **eglr_settings(cfg),
        "max_new_tokens": int(cfg.generation.max_new_tokens),
        "prompt_version": cfg.prompt.version,
        "num_layers": int(cfg.model.num_layers),
        "settings_hash": settings,
        "eglr_version": eglr_version(),
    }


def build_record(fixed: dict[str, Any], rollout: Rollout, generation: Any, seconds: float) -> RolloutRecord:
    """The ungraded record of one rollout: the job's ``fixed`` fields (:func:`record_fields`) and a
    generation with the fields of :class:`eglr.text.TextGeneration` (both engines build those)."""
    num_tokens = generation.num_tokens
    return RolloutRecord(
        **fixed,
        problem_id=rollout.problem.id,
        problem_digest=text_digest(rollout.problem.problem),
        layer_span=rollout.layer_span,
        temperature=rollout.temperature,
        sample=rollout.sample,
        seed=rollout.seed,
        response=generation.text,
        gold=rollout.problem.answer,
        extracted=None,
        correct=None,
        grade_reason=None,
        grader_version=None,
        num_tokens=num_tokens,
        num_gated=generation.num_gated,
        num_reapplications=generation.num_reapplications,
        num_converged=generation.num_converged,
        reapplication_histogram=list(generation.reapplication_histogram),
        mean_stop_kl=generation.mean_stop_kl,
        finish_reason=generation.finish_reason,
        mean_logprob=round(generation.sum_logprob / num_tokens, 6) if num_tokens else None,
        time_s=seconds,
    )


def make_generator(cfg: DictConfig, settings: str, load: ModelLoader) -> Any:
    """The job's generator: :class:`Generator` (engine=hf) or eglr_vllm's (engine=vllm)."""
    if cfg.engine == "vllm":
        from eglr_vllm.generator import VLLMGenerator

        return VLLMGenerator(cfg, settings, load)
    return Generator(cfg, settings, load)


class PromptIds:
    """A problem's prompt token ids under the job's prompt config, rendered once per problem (both
    engines' generators encode with it, so they decode from the same ids)."""

    def __init__(self, tokenizer: Any, prompt: DictConfig) -> None:
        self.tokenizer = tokenizer
        self.prompt = PromptConfig(**OmegaConf.to_container(prompt, resolve=True))
        self._ids: dict[str, list[int]] = {}

    def __call__(self, problem: Problem) -> list[int]:
        if problem.id not in self._ids:
            text = render_prompt(self.tokenizer, problem.problem, self.prompt)
            self._ids[problem.id] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._ids[problem.id]


class Generator:
    """The loaded model: turns a batch of rollouts into ungraded records."""

    def __init__(self, cfg: DictConfig, settings: str, load: ModelLoader) -> None:
        self.cfg = cfg
        self.model, self.tokenizer = load()
        self.encode = PromptIds(self.tokenizer, cfg.prompt)
        self.fixed = record_fields(cfg, settings)

    def submissions(self, batches: list[list[Rollout]]) -> Iterator[list[Rollout]]:
        """The units of work, each generated and then written as a whole: here the planned batches."""
        return iter(batches)

    def __call__(self, batch: list[Rollout]) -> list[RolloutRecord]:
        from eglr.text import generate_batch

        cfg = self.cfg
        layer_span, temperature = batch[0].layer_span, batch[0].temperature
        started = time.perf_counter()
        generations = generate_batch(
            self.model, self.tokenizer, [self.encode(rollout.problem) for rollout in batch],
            eglr=eglr_config(cfg, layer_span), temperature=temperature, top_p=float(cfg.generation.top_p),
            max_new_tokens=int(cfg.generation.max_new_tokens),
            seeds=None if temperature == 0 else [rollout.seed for rollout in batch])
        seconds = round((time.perf_counter() - started) / len(batch), 4)
        return [build_record(self.fixed, rollout, generation, seconds) for rollout, generation in zip(batch, generations)]


# --- the job -------------------------------------------------------------------------------------

@dataclass
class Plan:
    """What a job still has to do: batches to generate, recorded rollouts to re-grade."""

    generate: list[list[Rollout]]
    regrade: list[Rollout]
    current: int
    total: int


def plan_work(batches: list[list[Rollout]], store: RolloutStore, grader_version: str | None) -> Plan:
    """Compare every planned rollout with the store: missing or generated from another problem text
    means (re)generate its batch; recorded but graded against another gold or grader means re-grade."""
    stale_batches, regrade, current, total = [], [], 0, 0
    for batch in batches:
        stale = False
        for rollout in batch:
            total += 1
            stored = store.get(rollout.key)
            digest = text_digest(rollout.problem.problem)
            if stored is None or stored.problem_digest != digest:
                stale = True
            elif stored.is_current(digest, rollout.problem.answer, grader_version):
                current += 1
            else:
                regrade.append(rollout)
        if stale:
            stale_batches.append(batch)
    stale_keys = {rollout.key for batch in stale_batches for rollout in batch}
    regrade = [rollout for rollout in regrade if rollout.key not in stale_keys]
    return Plan(stale_batches, regrade, current, total)


def adopt_recorded(batches: list[list[Rollout]], store: RolloutStore, source: Path) -> int:
    """Copy into this job's file the planned rollouts that another job's file (``reuse_from``)
    already holds under the same settings hash and problem text, instead of generating them again.

    The settings hash covers everything that changes a rollout, so such a record *is* this job's
    rollout: an ablation's default variant is the main study's cell, an extended grid keeps its
    old cells. The copies are the source's records byte for byte (grade, timing and version
    included); a grade against another gold or grader is then redone like any stored record's.
    """
    recorded = recorded_rollouts(source, store.settings_hash)
    adopted = []
    for rollout in (rollout for batch in batches for rollout in batch):
        record = recorded.get(rollout.key)
        stored = store.get(rollout.key)
        digest = text_digest(rollout.problem.problem)
        if record is not None and record.problem_digest == digest and (
                stored is None or stored.problem_digest != digest):
            adopted.append(record)
    written = store.append(adopted)
    if written:
        log.info("reused %d rollouts recorded under the same settings in %s", written, source)
    return written


def _progress(total: int, done: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, unit="rollout", dynamic_ncols=True,
                desc="rollouts")


def _chunks(items: list[Rollout], size: int) -> Iterator[list[Rollout]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job to completion (or resume it); returns a small summary."""
    from eglr.version import eglr_version

    validate(cfg)
    eglr_version()  # read (and cached) now: the commit of the code this process runs, not what HEAD is later
    problems = load_problems(cfg)
    load = ModelLoader(cfg)
    cfg = resolve_tau(cfg, load)
    batches = plan_batches(problems, grid_cells(cfg.grid), int(cfg.generation.batch_size),
                           int(cfg.generation.seed))
    path = output_path(cfg)
    store = RolloutStore(path, settings_hash(job_settings(cfg)))
    reused = 0
    if cfg.get("reuse_from") is not None:
        reused = adopt_recorded(batches, store, output_path(cfg, cfg.reuse_from))
    grader = Grader(cfg)
    plan = plan_work(batches, store, grader.version)
    log.info("%s x %s: %d problems, %d rollouts, %d current in %s, %d to re-grade", cfg.model.name,
             cfg.benchmark.name, len(problems), plan.total, plan.current, path, len(plan.regrade))
    regraded = _regrade(plan.regrade, store, grader, int(cfg.generation.batch_size))
    written = 0
    if plan.generate:
        generator = make_generator(cfg, store.settings_hash, load)
        tracker = _Tracker(cfg)
        with _progress(plan.total, plan.total - sum(map(len, plan.generate)), bool(cfg.progress)) as bar:
            for batch in generator.submissions(plan.generate):
                records = grader(generator(batch), [rollout.problem.answer for rollout in batch])
                count = store.append(records)
                written += count
                bar.update(len(batch))
                tracker.log(records)
        tracker.finish(path, store.settings_hash)
    summary = {"path": str(path), "problems": len(problems), "rollouts": plan.total,
               "generated": written, "regraded": regraded, "skipped": plan.current, "reused": reused}
    log.info("done: %s", summary)
    return summary


def _regrade(rollouts: list[Rollout], store: RolloutStore, grader: Grader, batch_size: int) -> int:
    """Re-grade recorded rollouts against their problem's current gold; returns how many were written."""
    written = 0
    for chunk in _chunks(rollouts, batch_size):
        records = store.read([rollout.key for rollout in chunk])
        written += store.append(grader(records, [rollout.problem.answer for rollout in chunk]))
    if written:
        log.info("re-graded %d recorded rollouts (changed gold, grader or grading switched on)", written)
    return written


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

    def log(self, records: list[RolloutRecord]) -> None:
        if self.run is not None:
            graded = [r.correct for r in records if r.correct is not None]
            self.run.log({"batch_accuracy": sum(graded) / len(graded) if graded else float("nan"),
                          "batch_tokens": sum(r.num_tokens for r in records)})

    def finish(self, path: Path, settings: str) -> None:
        if self.run is None:
            return
        self.run.summary.update(cell_accuracy(path, settings))
        self.run.finish()


def cell_accuracy(path: Path, settings: str) -> dict[str, float]:
    """Accuracy per (layer span, temperature) cell of one rollout file's current records, for run
    summaries."""
    totals: dict[str, list[int]] = {}
    for record in recorded_rollouts(path, settings).values():
        if record.correct is None:
            continue
        name = f"accuracy/L{record.layer_span}_T{record.temperature:g}"
        tally = totals.setdefault(name, [0, 0])
        tally[0] += record.correct
        tally[1] += 1
    return {name: hits / count for name, (hits, count) in totals.items()}
