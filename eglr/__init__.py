"""Entropy-Gated Latent Recursion (EGLR).

The decoding engine is imported lazily so that light users of the package
(grading, metrics, analysis) do not pay for importing torch and transformers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "EGLRConfig": "eglr.engine",
    "GenerationOutput": "eglr.engine",
    "generate": "eglr.engine",
}

if TYPE_CHECKING:
    from eglr.engine import EGLRConfig, GenerationOutput, generate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eglr' has no attribute {name!r}")


__all__ = ["EGLRConfig", "GenerationOutput", "generate", "__version__"]
