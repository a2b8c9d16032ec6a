"""EGLR settings as they travel to a vLLM engine (the ``eglr`` entry of ``hf_overrides``).

vLLM gives a model its Hugging Face config and nothing per request, so the settings of an
engine are fixed when it is built (or changed between submissions, :func:`eglr_vllm.engine.
EGLREngine.configure`): one :class:`eglr.step.EGLRConfig` per engine. This module turns the config
into a plain dict and back, and refuses the options the vLLM model does not implement.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from eglr.step import EGLRConfig

# kv_policy=keep_first would need the first pass's keys/values saved and restored per slot, which is
# backend-specific (each attention backend lays out its paged cache differently): not implemented.
SUPPORTED = {"kv_policy": ("overwrite",), "reinject": ("raw", "norm_matched"), "criterion": ("kl", "argmax")}


def check_supported(config: EGLRConfig) -> None:
    """Raise ValueError naming any option of ``config`` the vLLM model does not implement."""
    for name, allowed in SUPPORTED.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"eglr_vllm does not support {name}={value!r} (supported: {allowed}); "
                             "use engine=hf for it")


def to_override(config: EGLRConfig) -> dict[str, Any]:
    """``config`` as JSON-safe values (an infinite tau as the strings "inf"/"-inf")."""
    check_supported(config)
    values = dataclasses.asdict(config)
    if math.isinf(values["tau"]):
        values["tau"] = "inf" if values["tau"] > 0 else "-inf"
    return values


def from_override(values: Any) -> EGLRConfig:
    """The EGLRConfig of an ``eglr`` override (a dict, or an object with those attributes); L = 0 if none."""
    if values is None:
        return EGLRConfig()
    if not isinstance(values, dict):
        values = dict(vars(values))
    values = dict(values)
    if isinstance(values.get("tau"), str):
        values["tau"] = float(values["tau"])
    config = EGLRConfig(**values)
    check_supported(config)
    return config
