"""Text in, text out: EGLR generation for prompts given as strings or chat messages.

:func:`generate_batch` is the one batch path: token-id prompts are left-padded,
decoded with :func:`eglr.engine.generate` and turned back into text with their
statistics. The runner calls it for every batch it plans; :func:`generate_text`
calls it after rendering prompts with the tokenizer's chat template (a plain
string becomes a single user message) and sorting them by length so that each
batch needs little padding. Results come back in the order of the prompts. With
an int ``seed``, prompt ``i`` is sampled with seed ``seed + i`` whatever the
batch size or sorting, because the engine makes every row independent of its
batch.

Stop and pad tokens come from the model's generation config, which
:func:`eglr.models.load_model` resolves once when it loads a model
(:func:`eglr.models.resolve_special_tokens`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from eglr.engine import EGLRConfig, generate

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TextGeneration:
    """One prompt's completion and its decoding statistics (see :class:`eglr.engine.GenerationOutput`)."""

    text: str
    num_tokens: int
    num_gated: int
    num_reapplications: int
    num_converged: int
    reapplication_histogram: tuple[int, ...]
    mean_stop_kl: float | None
    finish_reason: str
    sum_logprob: float


def render_prompts(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str | Messages], chat_template: bool = True
) -> list[list[int]]:
    """Token ids for each prompt, through the chat template unless ``chat_template`` is False."""
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of prompts, got a single string")
    token_ids = []
    for prompt in prompts:
        if chat_template:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        elif isinstance(prompt, str):
            ids = tokenizer(prompt)["input_ids"]
        else:
            raise ValueError(f"chat messages need chat_template=True, got {prompt!r}")
        if not ids:
            raise ValueError(f"prompt {prompt!r} has no tokens")
        token_ids.append(ids)
    return token_ids


def left_padded(rows: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded [batch, width] input ids and attention mask for token id rows of different lengths."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        input_ids[index, width - len(row):] = torch.tensor(row)
        attention_mask[index, width - len(row):] = 1
    return input_ids, attention_mask


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    *,
    eglr: EGLRConfig,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seeds: Sequence[int] | None = None,
    skip_special_tokens: bool = True,
) -> list[TextGeneration]:
    """Decode one batch of token-id prompts (one seed per prompt when sampling) into texts and statistics."""
    pad_token_id = model.generation_config.pad_token_id
    input_ids, attention_mask = left_padded([list(ids) for ids in prompt_ids], pad_token_id or 0)
    output = generate(
        model,
        input_ids.to(model.device),
        attention_mask.to(model.device),
        eglr=eglr,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=None if seeds is None else list(seeds),
    )
    sequences = output.sequences.cpu()
    return [
        TextGeneration(
            text=tokenizer.decode(sequences[row, :count], skip_special_tokens=skip_special_tokens),
            num_tokens=count,
            num_gated=output.num_gated[row],
            num_reapplications=output.num_reapplications[row],
            num_converged=output.num_converged[row],
            reapplication_histogram=tuple(output.reapplication_histogram[row]),
            mean_stop_kl=output.mean_stop_kl[row],
            finish_reason=output.finish_reasons[row],
            sum_logprob=output.sum_logprob[row],
        )
        for row, count in enumerate(output.num_tokens)
    ]


def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str | Messages],
    *,
    eglr: EGLRConfig = EGLRConfig(),
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 8,
    chat_template: bool = True,
    skip_special_tokens: bool = True,
) -> list[TextGeneration]:
    """Generate a completion for every prompt with EGLR, ``batch_size`` prompts at a time."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    token_ids = render_prompts(tokenizer, prompts, chat_template)
    order = sorted(range(len(token_ids)), key=lambda index: len(token_ids[index]), reverse=True)
    results: list[TextGeneration | None] = [None] * len(token_ids)
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = generate_batch(
            model, tokenizer, [token_ids[i] for i in indices], eglr=eglr, max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, seeds=None if seed is None else [seed + i for i in indices],
            skip_special_tokens=skip_special_tokens,
        )
        for index, result in zip(indices, batch):
            results[index] = result
    return results
