"""From a last-layer hidden state to next-token logits, exactly as the model itself does it.

EGLR recomputes the logits from every re-applied hidden state, so it must
reproduce the model's head: the final norm, the output projection and any
family-specific post-processing (Gemma-2/3 soft-cap the final logits, Cohere
multiplies them by ``logit_scale``, Granite divides them by ``logits_scaling``).
:func:`check_head_matches` compares the result with the model's own logits once
per generation, so a family with some other post-processing fails loudly
instead of silently decoding from a different distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The decoder layer modules of a causal LM, bottom to top."""
    decoder = model.get_decoder()
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__}: cannot find the decoder layers (expected `get_decoder().layers`)")
    return layers


def final_norm(model: PreTrainedModel) -> nn.Module:
    """The norm a causal LM applies to its last decoder layer's output."""
    norm = getattr(model.get_decoder(), "norm", None)
    if not isinstance(norm, nn.Module):
        raise ValueError(f"{type(model).__name__}: cannot find the final norm (expected `get_decoder().norm`)")
    return norm


@dataclass(frozen=True)
class OutputHead:
    """A model's final norm, output projection and final-logit post-processing.

    Resolved once per generation (looking the modules and config fields up costs
    more Python time than the head itself on a tiny model).
    """

    norm: nn.Module
    projection: nn.Module
    softcap: float | None = None
    logit_scale: float | None = None
    logits_scaling: float | None = None

    @classmethod
    def of(cls, model: PreTrainedModel) -> OutputHead:
        config = model.config
        return cls(
            norm=final_norm(model),
            projection=model.get_output_embeddings(),
            softcap=getattr(config, "final_logit_softcapping", None) or None,
            logit_scale=getattr(config, "logit_scale", None),
            logits_scaling=getattr(config, "logits_scaling", None),
        )

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits for last-decoder-layer outputs ``hidden`` (before the final norm)."""
        return self.postprocess(self.projection(self.norm(hidden)))

    def postprocess(self, logits: torch.Tensor) -> torch.Tensor:
        """The family's final-logit post-processing of projected logits."""
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        if self.logits_scaling is not None:
            logits = logits / self.logits_scaling
        return logits


def head_logits(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    """Next-token logits for last-decoder-layer outputs ``hidden``, as ``model`` computes them."""
    return OutputHead.of(model)(hidden)


def check_head_matches(head: OutputHead, hidden: torch.Tensor, model_logits: torch.Tensor) -> None:
    """Raise if ``head(hidden)`` differs from the logits the model returned for ``hidden``."""
    ours = head(hidden).float().reshape(model_logits.shape)
    theirs = model_logits.float()
    tolerance = 1e-4 if model_logits.dtype == torch.float32 else 2e-2
    scale = theirs.abs().amax().clamp(min=1.0)
    error = (ours - theirs).abs().amax()
    if error > tolerance * scale:
        raise RuntimeError(
            f"logits recomputed from the last hidden state differ from the model's own (max abs error "
            f"{error.item():.3g}); the model's final-logit post-processing is not handled by eglr.logits.OutputHead"
        )

