"""Train `tiny-math`, the small Llama the project ships so the pipeline runs on a CPU.

The model learns the synthetic `arith` benchmark (``eglr/benchmarks/arith.py``) from exactly
the text the runner feeds it at inference: the chat prompt from
``eglr.benchmarks.prompts.render_prompt`` (default ``PromptConfig``) followed by the reference
solution and the end-of-turn token, with the loss on the solution tokens only. The tokenizer is
built here with the ``tokenizers`` library: byte-level BPE (any text encodes and decodes back
exactly), every digit its own token, a small role-tagged chat template, and a pad token distinct
from the end-of-turn/eos token. After training, the script measures greedy accuracy and pass@8 at
temperature 0.7 on the arith test set and writes them to ``training.json`` beside the checkpoint.

Training is bitwise deterministic for a seed and thread count. The committed checkpoint in
``eglr/assets/tiny-math`` is what the defaults produce (about 10 minutes of training on one
free CPU thread, plus about a minute of evaluation; ``training.json`` records the full command):

    .venv/bin/python scripts/train_tiny_model.py --out eglr/assets/tiny-math
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from eglr.benchmarks import arith
from eglr.benchmarks.prompts import DEFAULT_INSTRUCTION, render_prompt

REPO_ROOT = Path(__file__).resolve().parents[1]

PAD_TOKEN = "<|pad|>"
END_TOKEN = "<|end|>"
ROLES = ("system", "user", "assistant")
SPECIAL_TOKENS = [PAD_TOKEN, END_TOKEN] + [f"<|{role}|>" for role in ROLES]
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('tiny-math chat template: unknown role ' + message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)
# The tokenizer's merges are learned from a fixed corpus, independent of --seed, so that
# models trained with different seeds share one tokenizer.
TOKENIZER_CORPUS_SEED = 7
TOKENIZER_CORPUS_SIZE = 2000
IGNORE_INDEX = -100
BUCKET_WINDOW = 16


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines the trained weights; the defaults are the committed model."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    vocab_size: int = 384
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4


@dataclass(frozen=True)
class EvalSettings:
    """How ``training.json``'s accuracies are measured: greedy, and ``samples`` draws at ``temperature``."""

    samples: int = 8
    temperature: float = 0.7
    batch_size: int = 50
    max_new_tokens: int = 64
    seed: int = 0


def build_tokenizer(vocab_size: int = TrainSettings.vocab_size) -> PreTrainedTokenizerFast:
    """Byte-level BPE with single-digit tokens, trained on arith problems and solutions."""
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} cannot hold the 256 bytes and {len(SPECIAL_TOKENS)} special tokens")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = []
    for row in arith.train_rows(TOKENIZER_CORPUS_SIZE, TOKENIZER_CORPUS_SEED):
        corpus += [f"{row['problem']}\n{DEFAULT_INSTRUCTION}", row["solution"]]
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=END_TOKEN,
        extra_special_tokens=[f"<|{role}|>" for role in ROLES],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def build_model(tokenizer: PreTrainedTokenizerFast, settings: TrainSettings) -> LlamaForCausalLM:
    """A freshly initialised float32 Llama; call after seeding."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.num_layers,
        num_attention_heads=settings.num_heads,
        num_key_value_heads=settings.num_heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        do_sample=False,
        max_new_tokens=EvalSettings.max_new_tokens,
    )
    return model


def encode_example(tokenizer: PreTrainedTokenizerFast, row: dict[str, str]) -> tuple[list[int], list[int]]:
    """Input ids and labels: the rendered prompt (masked) then the solution and eos (learned)."""
    prompt_ids = tokenizer(render_prompt(tokenizer, row["problem"]), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(row["solution"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding is masked out of attention and loss."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for index, (ids, targets) in enumerate(examples):
        input_ids[index, : len(ids)] = torch.tensor(ids)
        labels[index, : len(ids)] = torch.tensor(targets)
        attention_mask[index, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def length_bucketed_batches(
    examples: list[tuple[list[int], list[int]]], batch_size: int, seed: int
) -> list[list[tuple[list[int], list[int]]]]:
    """Consecutive batches of similar-length examples, to spend little compute on padding.

    The stream is cut into windows of ``BUCKET_WINDOW`` batches; each window is sorted by
    length, split into batches, and the batches' order inside the window shuffled.
    """
    rng = random.Random(seed)
    window_size = batch_size * BUCKET_WINDOW
    batches = []
    for start in range(0, len(examples), window_size):
        window = sorted(examples[start : start + window_size], key=lambda example: len(example[0]))
        window_batches = [window[index : index + batch_size] for index in range(0, len(window), batch_size)]
        rng.shuffle(window_batches)
        batches += window_batches
    return batches


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(settings: TrainSettings, log_every: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast, list[float]]:
    """Train from scratch; returns the model, its tokenizer and the per-step losses.

    Bitwise reproducible for fixed settings and thread count (the caller pins threads).
    """
    if settings.steps < 1 or settings.batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {settings.steps} and {settings.batch_size}")
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(settings, log_every)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)


def _train(settings: TrainSettings, log_every: int) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast, list[float]]:
    seed_everything(settings.seed)
    tokenizer = build_tokenizer(settings.vocab_size)
    rows = arith.train_rows(settings.steps * settings.batch_size, settings.seed)
    examples = [encode_example(tokenizer, row) for row in rows]
    batches = length_bucketed_batches(examples, settings.batch_size, settings.seed)
    model = build_model(tokenizer, settings)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, betas=(0.9, 0.98), weight_decay=settings.weight_decay
    )
    losses: list[float] = []
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        batch = collate(batches[step], tokenizer.pad_token_id)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = losses[-log_every:]
            print(f"step {step + 1:5d}  loss {sum(recent) / len(recent):.4f}", flush=True)
    model.eval()
    return model, tokenizer, losses


BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def boxed_integer(text: str) -> int | None:
    """The integer in the last ``\\boxed{...}`` of ``text``, or None."""
    matches = BOXED.findall(text)
    if not matches:
        return None
    try:
        return int(matches[-1].strip())
    except ValueError:
        return None


def load_grader() -> tuple[str, Callable[[list[str], list[str]], list[bool]]]:
    """The project's grader (``eglr.grading``) when importable, else a last-boxed-integer check."""
    try:
        from eglr.grading import GRADER_VERSION, grade_many
    except ImportError:
        def boxed_grader(completions: list[str], answers: list[str]) -> list[bool]:
            return [boxed_integer(text) == int(answer) for text, answer in zip(completions, answers)]

        return "boxed-integer", boxed_grader

    def project_grader(completions: list[str], answers: list[str]) -> list[bool]:
        return [result.correct for result in grade_many(completions, answers, "arith")]

    return f"eglr.grading {GRADER_VERSION}", project_grader


@torch.no_grad()
def complete(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    problems: list[str],
    generation: GenerationConfig,
) -> list[str]:
    """Decoded completions, ``generation.num_return_sequences`` per problem, in order."""
    tokenizer.padding_side = "left"
    prompts = [render_prompt(tokenizer, problem) for problem in problems]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    output = model.generate(**batch, generation_config=generation)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def evaluate(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    rows: list[dict[str, str]],
    settings: EvalSettings = EvalSettings(),
) -> dict[str, float | str]:
    """Greedy accuracy, pass@k and mean per-sample accuracy at the sampling temperature."""
    common = dict(
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    greedy = GenerationConfig(do_sample=False, **common)
    sampled = GenerationConfig(
        do_sample=True,
        temperature=settings.temperature,
        top_k=0,
        top_p=1.0,
        num_return_sequences=settings.samples,
        **common,
    )
    grader_name, grader = load_grader()
    torch.manual_seed(settings.seed)
    greedy_hits, pass_hits, sample_hits = 0, 0, 0
    for start in range(0, len(rows), settings.batch_size):
        chunk = rows[start : start + settings.batch_size]
        problems = [row["problem"] for row in chunk]
        answers = [row["answer"] for row in chunk]
        greedy_hits += sum(grader(complete(model, tokenizer, problems, greedy), answers))
        sampled_hits = grader(
            complete(model, tokenizer, problems, sampled),
            [answer for answer in answers for _ in range(settings.samples)],
        )
        for index in range(len(chunk)):
            hits = sampled_hits[index * settings.samples : (index + 1) * settings.samples]
            pass_hits += any(hits)
            sample_hits += sum(hits)
    total = len(rows)
    return {
        "grader": grader_name,
        "greedy_accuracy": greedy_hits / total,
        f"pass_at_{settings.samples}": pass_hits / total,
        "sample_accuracy": sample_hits / (total * settings.samples),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "eglr/assets/tiny-math")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    parser.add_argument("--hidden-size", type=int, default=defaults.hidden_size)
    parser.add_argument("--intermediate-size", type=int, default=defaults.intermediate_size)
    parser.add_argument("--num-layers", type=int, default=defaults.num_layers)
    parser.add_argument("--num-heads", type=int, default=defaults.num_heads)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-eval", action="store_true", help="save the checkpoint without measuring accuracy")
    return parser.parse_args(argv)


def command_line(out: Path, settings: TrainSettings, threads: int) -> str:
    """The explicit command that reproduces a run, for ``training.json``."""
    out = out.resolve()
    shown_out = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    options = [f"--{name.replace('_', '-')} {value}" for name, value in asdict(settings).items()]
    return " ".join(["python scripts/train_tiny_model.py", f"--out {shown_out}", *options, f"--threads {threads}"])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    settings = TrainSettings(
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
    )
    started = time.perf_counter()
    model, tokenizer, losses = train(settings, log_every=100)
    train_seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out, save_jinja_files=False)
    tail = losses[-100:]
    record = {
        "command": command_line(args.out, settings, args.threads),
        "settings": asdict(settings),
        "threads": args.threads,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(tail) / len(tail),
        "final_loss_window": len(tail),
        "train_seconds": round(train_seconds, 1),
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    if not args.skip_eval:
        started = time.perf_counter()
        eval_settings = EvalSettings()
        record["eval"] = {**asdict(eval_settings), "benchmark": "arith", "n_problems": arith.TEST_SIZE}
        record.update(evaluate(model, tokenizer, arith.test_rows(), eval_settings))
        record["eval_seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
