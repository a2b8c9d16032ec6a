"""Text in, text out: EGLR generation for prompts given as strings or chat messages.

Prompts are rendered with the tokenizer's chat template (a plain string becomes
a single user message), tokenized, sorted by length so that each batch needs
little padding, left-padded and decoded with :func:`eglr.engine.generate`.
Results come back in the order of the prompts. With an int ``seed``, prompt ``i``
is sampled with seed ``seed + i`` whatever the batch size or sorting, because
the engine makes every row independent of its batch.
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
    eos_token_id = model.generation_config.eos_token_id
    if eos_token_id is None:
        eos_token_id = tokenizer.eos_token_id
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.generation_config.pad_token_id

    order = sorted(range(len(token_ids)), key=lambda index: len(token_ids[index]), reverse=True)
    results: list[TextGeneration | None] = [None] * len(token_ids)
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        input_ids, attention_mask = left_padded([token_ids[i] for i in indices], pad_token_id or 0)
        output = generate(
            model,
            input_ids,
            attention_mask,
            eglr=eglr,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=None if seed is None else [seed + i for i in indices],
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        for row, index in enumerate(indices):
            tokens = output.sequences[row, :output.num_tokens[row]].tolist()
            results[index] = TextGeneration(
                text=tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens),
                num_tokens=output.num_tokens[row],
                num_gated=output.num_gated[row],
                num_reapplications=output.num_reapplications[row],
                finish_reason=output.finish_reasons[row],
                sum_logprob=output.sum_logprob[row],
            )
    return results
