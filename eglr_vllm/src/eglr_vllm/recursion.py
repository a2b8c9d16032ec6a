"""EGLR at every decoding step of a vLLM forward pass: gate, re-apply the top layers, converge.

:class:`EGLRMixin` goes in front of one of vLLM's causal LMs (:mod:`eglr_vllm.models`). Its
``forward`` runs the model as vLLM does and keeps, through hooks, the final norm's input (the last
decoder layer's pre-norm output ``h_0``, as the sum vLLM's fused add-norm forms) and, for
``reinject=norm_matched``, the first re-applied layer's input. Then, at the rows vLLM samples from
(with chunked prefill off every scheduled request samples at its last scheduled token:
``query_start_loc[1:] - 1``, the last prompt position and decode steps alike), it follows
:func:`eglr.step.eglr_step` with the shared arithmetic of :mod:`eglr.step`: the gate, and for the
gated rows still running up to ``k_max`` re-applications of the top L decoder layers (the same
modules), each followed by the convergence test.

A re-application runs the top layers on the running rows alone: each is one query token (its
request's sampled position) attending to its request's cache, so together they form a
decode-shaped sub-batch, whose attention metadata the backend's own metadata builder (the V1
runner's) builds from the step's sequence lengths and block tables. Their attention layers write
those positions' keys/values again, in place, which is the ``overwrite`` KV policy; no other slot is
written. Where the metadata cannot be rebuilt, the layers run on the step's whole token batch
instead, every other token given slot -1 in a copy of the forward context's slot mapping (the cache
write kernels skip -1), and only the running rows' results are kept.

The final hidden state of each gated row replaces the normal pass's at its sampled position in the
returned tensor, so vLLM's own ``compute_logits`` and sampler choose the token from the final
iterate. Per-request statistics are keyed by ``SamplingParams.extra_args["eglr_id"]`` (else the
engine's request id) and read back with :meth:`EGLRMixin.eglr_pop_statistics`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from eglr.step import EGLRConfig, has_converged, is_gated, kl_divergence, norm_matched

from eglr_vllm.settings import from_override


@dataclass
class RequestStatistics:
    """What EGLR did over one request (the per-row fields of :class:`eglr.engine.GenerationOutput`).

    ``steps`` counts the forward passes that sampled a token for the request; ``recomputed`` is
    set when vLLM re-ran a prefill over tokens it had already generated (a preemption), whose
    keys/values are then the normal pass's, not EGLR's: such a request is not a faithful EGLR run.
    """

    k_max: int
    steps: int = 0
    gated: int = 0
    reapplications: int = 0
    converged: int = 0
    stop_kl_sum: float = 0.0
    histogram: list[int] = field(default_factory=list)
    recomputed: bool = False

    def __post_init__(self) -> None:
        if not self.histogram:
            self.histogram = [0] * max(self.k_max, 1)

    @property
    def mean_stop_kl(self) -> float | None:
        return self.stop_kl_sum / self.gated if self.gated else None


@dataclass
class _Captured:
    """What the hooks keep from one forward pass."""

    state: torch.Tensor | None = None  # the final norm's input: the last layer's output, pre-norm
    normed: torch.Tensor | None = None  # the final norm's output
    block_input: torch.Tensor | None = None  # the first re-applied layer's input


def _fused(hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    return hidden if residual is None else hidden + residual


class EGLRMixin(nn.Module):
    """EGLR for a vLLM causal LM whose ``model`` has ``layers`` (decoder layers called as
    ``layer(positions, hidden, residual) -> (hidden, residual)``) and a fused add-norm ``norm``."""

    def _eglr_setup(self, vllm_config: Any) -> None:
        _refuse_engine_features(vllm_config)
        self.eglr_runner: Any = None
        self._builders: dict[str, Any] = {}
        self.eglr_statistics: dict[str, RequestStatistics] = {}
        # forward passes with EGLR, those among them that mixed prefill and decode rows, and the
        # re-applications run on the running rows alone or on the step's whole token batch
        self.eglr_step_counts = {"steps": 0, "mixed": 0, "sub_batch_passes": 0, "full_batch_passes": 0}
        self._captured = _Captured()
        self._capturing = False
        self._step_layouts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.model.norm.register_forward_hook(self._keep_final_norm)
        self.eglr_configure(from_override(getattr(vllm_config.model_config.hf_config, "eglr", None)))

    # --- configuration --------------------------------------------------------------------------

    def eglr_configure(self, config: EGLRConfig) -> None:
        """Use ``config`` from the next forward pass on (the engine must be idle)."""
        layers = self.model.layers
        config.validate_for_model(len(layers))
        self.eglr = from_override(vars(config))
        if getattr(self, "_block_hook", None) is not None:
            self._block_hook.remove()
            self._block_hook = None
        self._top = list(layers)[len(layers) - config.layer_span:] if config.layer_span else []
        if config.can_gate and config.reinject == "norm_matched":
            self._block_hook = self._top[0].register_forward_pre_hook(self._keep_block_input)
        self._attention_names = [module.layer_name for layer in self._top for module in layer.modules()
                                 if hasattr(module, "layer_name") and hasattr(module, "impl")]

    def eglr_bind(self, runner: Any) -> None:
        """Let forward passes map batch rows to requests: ``runner`` is vLLM's (V1) model runner."""
        if not (hasattr(runner, "input_batch") and hasattr(runner, "requests")):
            raise RuntimeError(f"EGLR needs vLLM's V1 model runner (with input_batch and requests), got "
                               f"{type(runner).__name__}; set VLLM_USE_V2_MODEL_RUNNER=0")
        self.eglr_runner = runner
        self._builders = {name: group.get_metadata_builder() for groups in getattr(runner, "attn_groups", [])
                          for group in groups if group.metadata_builders for name in group.layer_names}

    def eglr_pop_statistics(self, keys: list[str]) -> dict[str, RequestStatistics]:
        """The statistics of the requests ``keys`` (forgotten here once returned)."""
        return {key: self.eglr_statistics.pop(key, RequestStatistics(self.eglr.k_max)) for key in keys}

    # --- hooks -----------------------------------------------------------------------------------

    def _keep_final_norm(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._capturing:
            hidden, residual = args[0], args[1] if len(args) > 1 else None
            normed, state = output if isinstance(output, tuple) else (output, _fused(hidden, residual))
            self._captured.normed, self._captured.state = normed, state

    def _keep_block_input(self, module: nn.Module, args: tuple) -> None:
        if self._capturing:
            self._captured.block_input = _fused(args[1], args[2] if len(args) > 2 else None)

    # --- the forward pass ------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor,
                intermediate_tensors: Any = None, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        from vllm.forward_context import get_forward_context, is_forward_context_available

        config = self.eglr
        metadata = None
        if config.can_gate and self.eglr_runner is not None and is_forward_context_available():
            context = get_forward_context()
            metadata = _first_metadata(context.attn_metadata, self._attention_names)
        if metadata is None:  # warm-up and profiling runs, or L = 0
            return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)
        self._capturing = True
        try:
            super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)
        finally:
            self._capturing = False
        captured, self._captured = self._captured, _Captured()
        # The batch's layout comes from the model runner, never from a backend's metadata: some
        # backends keep no query_start_loc (FlashInfer), others a buffer of max_num_seqs + 1 (FlexAttention).
        num_requests = int(self.eglr_runner.input_batch.num_reqs)
        query_start = self.eglr_runner.query_start_loc.cpu[: num_requests + 1].to(torch.long)
        self._step_layouts = {}
        query_lengths = query_start[1:] - query_start[:-1]
        requests = torch.nonzero(query_lengths > 0).squeeze(1)  # a padded request (length 0) never samples
        samples = (query_start[1:] - 1)[requests].to(captured.state.device)
        output = captured.normed.clone()
        result = self._recur(config, positions, captured, samples, requests, output)
        self._record(result, requests, query_lengths, num_requests)
        return output

    def _recur(self, config: EGLRConfig, positions: torch.Tensor, captured: _Captured, samples: torch.Tensor,
               requests: torch.Tensor, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`eglr.step.eglr_step` at the sampled positions ``samples`` (of the batch's requests
        ``requests``); writes the final iterate's normed state into ``output``."""
        count = samples.numel()
        device = output.device
        log_probs = torch.log_softmax(self.compute_logits(captured.normed[samples]).float(), dim=-1)
        gated = is_gated(log_probs, config.tau)
        reapplications = torch.zeros(count, dtype=torch.long, device=device)
        converged = torch.zeros(count, dtype=torch.bool, device=device)
        stop_kl = torch.full((count,), math.nan, dtype=torch.float32, device=device)
        rows = gated.nonzero().squeeze(1)
        if rows.numel():
            state = captured.state
            hidden = state[samples[rows]]
            reference = captured.block_input[samples[rows]] if config.reinject == "norm_matched" else None
            row_log_probs = log_probs[rows]
            for passes in range(1, config.k_max + 1):
                layer_input = norm_matched(hidden, reference) if reference is not None else hidden
                tokens = samples[rows]
                new_normed, hidden = self._reapply(positions, state, tokens, requests[rows.cpu()], layer_input)
                new_log_probs = torch.log_softmax(self.compute_logits(new_normed).float(), dim=-1)
                kl = kl_divergence(new_log_probs, row_log_probs)
                done = has_converged(new_log_probs, row_log_probs, config.criterion, config.eps, kl=kl)
                output[tokens] = new_normed
                reapplications[rows] += 1
                converged[rows] = done
                stop_kl[rows] = kl
                running = ~done
                if passes == config.k_max or not bool(running.any()):
                    break
                rows, hidden, row_log_probs = rows[running], hidden[running], new_log_probs[running]
                reference = reference[running] if reference is not None else None
        return {"gated": gated, "reapplications": reapplications, "converged": converged, "stop_kl": stop_kl}

    def _reapply(self, positions: torch.Tensor, state: torch.Tensor, tokens: torch.Tensor, requests: torch.Tensor,
                 layer_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The top layers and the final norm once more at the sampled positions ``tokens`` (of the
        batch's requests ``requests``), fed ``layer_input``; returns their (normed, pre-norm) states.

        Each row is one query token attending to its request's cache, so the rows form a
        decode-shaped sub-batch: with the attention backend's metadata builders (those of the V1
        runner) the layers run on these rows alone. Otherwise the layers run on the step's whole
        token batch, every other token given slot -1 so that it writes nothing, and only these
        rows' results are kept.
        """
        sub_batch = self._sub_batch(tokens, requests)
        self.eglr_step_counts["sub_batch_passes" if sub_batch is not None else "full_batch_passes"] += 1
        if sub_batch is not None:
            metadata, slot_mapping = sub_batch
            hidden, residual, layer_positions = layer_input.to(state.dtype), None, positions[tokens]
            with self._forward_context(metadata, slot_mapping):
                for layer in self._top:
                    hidden, residual = layer(layer_positions, hidden, residual)
            return self.model.norm(hidden, residual)
        hidden = state.index_copy(0, tokens, layer_input.to(state.dtype))
        residual = None
        with self._forward_context(None, self._masked_slots(tokens)):
            for layer in self._top:
                hidden, residual = layer(positions, hidden, residual)
        normed, summed = self.model.norm(hidden, residual)
        return normed[tokens], summed[tokens]

    def _sub_batch(self, tokens: torch.Tensor, requests: torch.Tensor) -> tuple[dict, dict] | None:
        """Attention metadata and slot mappings for the top layers over ``tokens`` alone (one query
        token per request ``requests``), or None where the backend's metadata cannot be rebuilt."""
        from vllm.forward_context import get_forward_context
        from vllm.v1.attention.backend import CommonAttentionMetadata

        context = get_forward_context()
        if not isinstance(context.attn_metadata, dict) or any(name not in self._builders for name in self._attention_names):
            return None
        count = tokens.numel()
        metadata, slot_mapping, built = {}, {}, {}
        for name in self._attention_names:
            original = context.attn_metadata[name]
            layout = self._step_layout(original)
            slots = context.slot_mapping.get(name)
            if layout is None or slots is None:
                return None
            seq_lens, block_table = layout
            key = (id(original), id(self._builders[name]))
            if key not in built:
                index = requests.to(seq_lens.device)
                sub_seq_lens = seq_lens[index]
                starts = torch.arange(count + 1, dtype=torch.int32)
                common = CommonAttentionMetadata(
                    query_start_loc=starts.to(seq_lens.device), query_start_loc_cpu=starts, seq_lens=sub_seq_lens,
                    num_reqs=count, num_actual_tokens=count, max_query_len=1,
                    max_seq_len=int(sub_seq_lens.max()), block_table_tensor=block_table[index],
                    slot_mapping=slots[tokens.to(slots.device)], causal=True)
                built[key] = (self._builders[name].build(0, common), common.slot_mapping)
            metadata[name], slot_mapping[name] = built[key]
        return metadata, slot_mapping

    def _step_layout(self, original: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The step's sequence lengths and block table of the requests, as ``original`` (a layer's
        metadata) holds them before any re-application: copied once per step, because a builder may
        write the sub-batch's values into buffers the step's metadata shares (FlexAttention does)."""
        layout = self._step_layouts.get(id(original))
        if layout is None:
            seq_lens, block_table = getattr(original, "seq_lens", None), getattr(original, "block_table", None)
            if seq_lens is None or block_table is None:
                return None
            count = int(self.eglr_runner.input_batch.num_reqs)
            layout = self._step_layouts[id(original)] = (seq_lens[:count].clone(), block_table[:count].clone())
        return layout

    def _masked_slots(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """The top layers' slot mappings with slot -1 (no cache write) for every token but ``tokens``."""
        from vllm.forward_context import get_forward_context

        original = get_forward_context().slot_mapping
        masked: dict[int, torch.Tensor] = {}
        mapping = {}
        for name in self._attention_names:
            slots = original.get(name)
            if slots is None:
                continue
            if id(slots) not in masked:
                keep = torch.full_like(slots, -1)
                index = tokens.to(slots.device)
                keep[index] = slots[index]
                masked[id(slots)] = keep
            mapping[name] = masked[id(slots)]
        return mapping

    @contextmanager
    def _forward_context(self, metadata: dict | None, slot_mapping: dict):
        """The forward context with the top layers' attention metadata and slot mappings replaced."""
        from vllm.forward_context import get_forward_context

        context = get_forward_context()
        original_metadata, original_slots = context.attn_metadata, context.slot_mapping
        if metadata is not None:
            context.attn_metadata = {**original_metadata, **metadata}
        context.slot_mapping = {**original_slots, **slot_mapping}
        try:
            yield
        finally:
            context.attn_metadata, context.slot_mapping = original_metadata, original_slots

    # --- per-request statistics ------------------------------------------------------------------

    def _record(self, result: dict[str, torch.Tensor], requests: torch.Tensor, query_lengths: torch.Tensor,
                num_requests: int) -> None:
        runner = self.eglr_runner
        request_ids = list(runner.input_batch.req_ids[:num_requests])
        if len(request_ids) != num_requests:
            raise RuntimeError(f"EGLR: the batch has {num_requests} requests but the model runner lists "
                               f"{len(request_ids)}; cannot attribute statistics")
        gated = result["gated"].tolist()
        reapplications = result["reapplications"].tolist()
        converged = result["converged"].tolist()
        stop_kl = result["stop_kl"].tolist()
        lengths = query_lengths.tolist()
        k_max = self.eglr.k_max
        self.eglr_step_counts["steps"] += 1
        if max(lengths, default=0) > 1 and min(lengths, default=0) == 1:
            self.eglr_step_counts["mixed"] += 1
        for row, index in enumerate(requests.tolist()):
            state = runner.requests[request_ids[index]]
            extra = getattr(state.sampling_params, "extra_args", None) or {}
            key = str(extra.get("eglr_id", request_ids[index]))
            stats = self.eglr_statistics.get(key)
            if stats is None:
                stats = self.eglr_statistics[key] = RequestStatistics(k_max)
            stats.steps += 1
            if lengths[index] > 1 and state.output_token_ids:
                stats.recomputed = True
            if gated[row]:
                stats.gated += 1
                stats.reapplications += reapplications[row]
                stats.converged += int(converged[row])
                stats.histogram[reapplications[row] - 1] += 1
                stats.stop_kl_sum += stop_kl[row]


def _first_metadata(attn_metadata: Any, names: list[str]) -> Any:
    """The attention metadata of the first re-applied layer (None outside a real forward pass)."""
    if isinstance(attn_metadata, list):
        raise RuntimeError("EGLR cannot run with micro-batched (DBO) or speculative attention metadata")
    if not attn_metadata or not names:
        return None
    return attn_metadata.get(names[0]) if isinstance(attn_metadata, dict) else attn_metadata


def _refuse_engine_features(vllm_config: Any) -> None:
    """Refuse, naming it, every engine feature under which EGLR would silently be wrong."""
    problems = []
    scheduler, cache, parallel = vllm_config.scheduler_config, vllm_config.cache_config, vllm_config.parallel_config
    if getattr(scheduler, "enable_chunked_prefill", False):
        problems.append("chunked prefill (a partial prefill samples no token, so the sampled row of a request "
                        "is not its last scheduled token): pass enable_chunked_prefill=False")
    if getattr(cache, "enable_prefix_caching", False):
        problems.append("prefix caching (re-applications overwrite the last prompt position's keys/values, which "
                        "would corrupt a shared prefix block): pass enable_prefix_caching=False")
    if getattr(vllm_config, "speculative_config", None) is not None:
        problems.append("speculative decoding (several sampled positions per request and step)")
    if getattr(parallel, "pipeline_parallel_size", 1) > 1:
        problems.append("pipeline parallelism (the gate needs the last layer's state and the head on one rank)")
    if getattr(parallel, "tensor_parallel_size", 1) > 1:
        problems.append("tensor parallelism (the gate reads the full logits, which only rank 0 gathers)")
    compilation = vllm_config.compilation_config
    if int(getattr(compilation, "mode", 0) or 0) != 0:
        problems.append(f"torch.compile (compilation mode {compilation.mode}: the hooks and the data-dependent "
                        "early exit need eager execution): pass compilation_config={'mode': 0}")
    if getattr(scheduler, "async_scheduling", False):
        problems.append("async scheduling (the next step is scheduled before this one's token is known, so a "
                        "request stopped by a stop token gets one more forward pass, counted as an EGLR step): "
                        "pass async_scheduling=False")
    if not vllm_config.model_config.enforce_eager:
        problems.append("CUDA graphs (an early exit synchronises with the host): pass enforce_eager=True")
    if problems:
        raise ValueError("EGLR cannot run under " + "; ".join(problems))
