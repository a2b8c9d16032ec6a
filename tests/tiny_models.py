"""Tiny randomly initialised causal LMs built from the configs of real architectures.

They are small enough to run in milliseconds on a CPU, but keep every feature
of their family that the engine has to get right: grouped-query attention,
sliding windows smaller than the test sequences (Mistral, Gemma-2's alternating
sliding/global layers, Phi-3), Gemma-2's final logit soft-capping and scaled
embeddings, Qwen2's q/k/v biases.

The output projection is re-drawn with a large standard deviation (the final
norm makes the logit scale independent of the residual stream) so that the
next-token distributions are far from uniform: their entropies vary from step to
step (so a threshold can gate some steps and not others) and greedy decoding does
not sit on near-ties that float noise could flip. The decoder layers keep small
weights, which keeps hidden states O(1) so float32 comparisons at 1e-5 are fair.
"""
from __future__ import annotations

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB_SIZE = 256
NUM_LAYERS = 4
SLIDING_WINDOW = 8
HEAD_STD = 0.4
GEMMA2_SOFTCAP = 10.0
PAD_TOKEN_ID = 0
ARCHITECTURES = ("qwen2", "llama", "mistral", "gemma2", "phi3")

_COMMON = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=NUM_LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    initializer_range=0.05,
    pad_token_id=PAD_TOKEN_ID,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)


def _config(architecture: str):
    if architecture == "qwen2":
        return Qwen2ForCausalLM, Qwen2Config(**_COMMON)
    if architecture == "llama":
        return LlamaForCausalLM, LlamaConfig(**_COMMON)
    if architecture == "mistral":
        return MistralForCausalLM, MistralConfig(**_COMMON, sliding_window=SLIDING_WINDOW)
    if architecture == "gemma2":
        config = Gemma2Config(
            **_COMMON,
            head_dim=16,
            sliding_window=SLIDING_WINDOW,
            final_logit_softcapping=GEMMA2_SOFTCAP,
            attn_logit_softcapping=50.0,
            query_pre_attn_scalar=16,
        )
        return Gemma2ForCausalLM, config
    if architecture == "phi3":
        return Phi3ForCausalLM, Phi3Config(**_COMMON, sliding_window=SLIDING_WINDOW)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")


def tiny_model(architecture: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """A randomly initialised ``architecture`` model in eval mode, reproducible from ``seed``."""
    model_class, config = _config(architecture)
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, HEAD_STD)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = PAD_TOKEN_ID
    return model


def random_prompts(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    """Random token prompts of the given lengths that avoid the special ids 0..2."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB_SIZE, (length,), generator=generator) for length in lengths]


def left_pad(prompts: list[torch.Tensor], pad_token_id: int = PAD_TOKEN_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``input_ids`` and ``attention_mask`` for a batch of 1-D prompts."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = prompt
        attention_mask[row, width - len(prompt) :] = 1
    return input_ids, attention_mask


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token (pads get 0 too)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)
