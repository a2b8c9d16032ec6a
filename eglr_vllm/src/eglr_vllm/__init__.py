"""EGLR inside vLLM.

The decoding-time procedure of :mod:`eglr.step` (gate on the next-token entropy, re-apply the top L
decoder layers to the last hidden state until the next-token distribution converges) as vLLM
out-of-tree models: subclasses of vLLM's own Qwen2, Llama and Gemma-2 causal LMs
(:mod:`eglr_vllm.models`, the procedure itself in :mod:`eglr_vllm.recursion`), registered with
vLLM's ``ModelRegistry`` (:mod:`eglr_vllm.registry`, also a ``vllm.general_plugins`` entry point),
built behind guards that refuse the engine features EGLR cannot run under
(:mod:`eglr_vllm.engine`), and a generator for the study runner, ``engine=vllm``
(:mod:`eglr_vllm.generator`).
"""
