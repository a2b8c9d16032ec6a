"""The EGLR subclasses of vLLM's causal LMs: vLLM's own modules and weights, EGLR's forward.

Each class puts :class:`eglr_vllm.recursion.EGLRMixin` in front of the vLLM model of its family,
so weights, attention (sliding windows, Gemma-2's attention soft-capping) and the head (Gemma-2's
final-logit soft-capping, in vLLM's ``LogitsProcessor``) are vLLM's; the mixin adds the gate and
the re-applications.
"""
from __future__ import annotations

from typing import Any

from vllm.model_executor.models.gemma2 import Gemma2ForCausalLM
from vllm.model_executor.models.llama import LlamaForCausalLM
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

from eglr_vllm.recursion import EGLRMixin


class EGLRQwen2ForCausalLM(EGLRMixin, Qwen2ForCausalLM):
    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._eglr_setup(vllm_config)


class EGLRLlamaForCausalLM(EGLRMixin, LlamaForCausalLM):
    def __init__(self, *, vllm_config: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
        self._eglr_setup(vllm_config)


class EGLRGemma2ForCausalLM(EGLRMixin, Gemma2ForCausalLM):
    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self._eglr_setup(vllm_config)
