"""Registration of the EGLR architectures with vLLM's ModelRegistry.

Each EGLR class is registered under ``EGLR<architecture>`` and selected per engine with
``hf_overrides={"architectures": [name], "eglr": {...}}`` (:func:`eglr_vllm.engine.build_llm`
does it). Registration is lazy (``module:Class`` strings), so importing this module imports no
model code; vLLM calls :func:`register` in every process through the ``vllm.general_plugins``
entry point of this package.
"""
from __future__ import annotations

# vLLM's architecture name (the checkpoint's config.json `architectures`) -> the EGLR class.
EGLR_CLASSES = {
    "Qwen2ForCausalLM": "EGLRQwen2ForCausalLM",
    "LlamaForCausalLM": "EGLRLlamaForCausalLM",
    "Gemma2ForCausalLM": "EGLRGemma2ForCausalLM",
}


def eglr_architecture(architecture: str) -> str:
    """The registered EGLR architecture for a checkpoint's ``architecture``; ValueError if unsupported."""
    if architecture not in EGLR_CLASSES:
        raise ValueError(f"eglr_vllm has no EGLR model for architecture {architecture!r}; supported: "
                         f"{sorted(EGLR_CLASSES)}")
    return EGLR_CLASSES[architecture]


def register() -> None:
    """Register every EGLR class with vLLM (idempotent)."""
    from vllm import ModelRegistry

    for name in EGLR_CLASSES.values():
        if name not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(name, f"eglr_vllm.models:{name}")
