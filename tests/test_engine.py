"""End-to-end behaviour of eglr.generate on tiny random models of five architectures."""
from __future__ import annotations

import math

import pytest
import torch

from eglr import EGLRConfig, GenerationOutput, generate
from eglr.engine import num_decoder_layers
from eglr.step import entropy
from tiny_models import (
    ARCHITECTURES,
    NUM_LAYERS,
    PAD_TOKEN_ID,
    left_pad,
    random_prompts,
    tiny_model,
)

NEW_TOKENS = 16
NO_EOS = dict(eos_token_id=[], pad_token_id=PAD_TOKEN_ID)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    return tiny_model(request.param)


@pytest.fixture(scope="module")
def prompts():
    return random_prompts([12, 17, 9], seed=1)


def hf_greedy(model, input_ids, attention_mask, max_new_tokens=NEW_TOKENS, **kwargs) -> torch.Tensor:
    kwargs = {"eos_token_id": None, "pad_token_id": PAD_TOKEN_ID, **kwargs}
    output = model.generate(input_ids, attention_mask=attention_mask, do_sample=False,
                            max_new_tokens=max_new_tokens, **kwargs)
    return output[:, input_ids.shape[1]:]


def median_entropy(model, input_ids, attention_mask) -> float:
    """A threshold that gates roughly half of this model's steps on these prompts."""
    with torch.inference_mode():
        log_probs = model(input_ids, attention_mask=attention_mask).logits.float().log_softmax(-1)
    return entropy(log_probs)[attention_mask.bool()].median().item()


def run(model, input_ids, attention_mask=None, **kwargs) -> GenerationOutput:
    kwargs = {"max_new_tokens": NEW_TOKENS, **NO_EOS, **kwargs}
    return generate(model, input_ids, attention_mask, **kwargs)


# --- equivalence with transformers' greedy decoding ---------------------------------------------

@pytest.mark.parametrize("eglr", [EGLRConfig(layer_span=0), EGLRConfig(layer_span=2, k_max=0)], ids=["L0", "kmax0"])
def test_no_recursion_equals_hf_greedy(model, prompts, eglr):
    single = prompts[1][None]
    assert torch.equal(run(model, single, eglr=eglr).sequences, hf_greedy(model, single, None))
    input_ids, mask = left_pad(prompts)
    assert torch.equal(run(model, input_ids, mask, eglr=eglr).sequences, hf_greedy(model, input_ids, mask))


def test_infinite_tau_never_gates_and_equals_l0(model, prompts):
    input_ids, mask = left_pad(prompts)
    plain = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0))
    never = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=2, tau=math.inf))
    assert never.num_gated == [0, 0, 0] and never.num_reapplications == [0, 0, 0]
    assert torch.equal(never.sequences, plain.sequences)
    assert never.sum_logprob == pytest.approx(plain.sum_logprob, abs=1e-4)


def test_negative_infinite_tau_gates_every_step(model, prompts):
    input_ids, mask = left_pad(prompts)
    output = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=2, tau=-math.inf, k_max=3))
    assert output.num_gated == output.num_tokens == [NEW_TOKENS] * 3
    assert all(NEW_TOKENS <= n <= 3 * NEW_TOKENS for n in output.num_reapplications)
    plain = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0))
    assert not torch.equal(output.sequences, plain.sequences)


def test_eos_stops_rows_like_hf(model, prompts):
    input_ids, mask = left_pad(prompts)
    plain = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0))
    eos = int(plain.sequences[0, 4])
    output = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0), eos_token_id=[eos, 255], pad_token_id=3)
    expected = hf_greedy(model, input_ids, mask, eos_token_id=[eos, 255], pad_token_id=3)
    assert torch.equal(output.sequences, expected)
    for row, tokens in enumerate(plain.sequences.tolist()):
        stops = [i for i, token in enumerate(tokens) if token in (eos, 255)]
        assert output.num_tokens[row] == (stops[0] + 1 if stops else NEW_TOKENS)
        assert output.finish_reasons[row] == ("eos" if stops else "length")
        assert (output.sequences[row, output.num_tokens[row]:] == 3).all()


def test_sum_logprob_is_the_log_likelihood_of_the_tokens(model, prompts):
    input_ids, mask = left_pad(prompts)
    output = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0), temperature=0.8, seed=[1, 2, 3])
    full_ids = torch.cat([input_ids, output.sequences], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(output.sequences)], dim=1)
    positions = (full_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        log_probs = model(full_ids, attention_mask=full_mask, position_ids=positions).logits.float().log_softmax(-1)
    width = input_ids.shape[1]
    chosen = log_probs[:, width - 1:-1].gather(-1, output.sequences[..., None]).squeeze(-1)
    assert output.sum_logprob == pytest.approx(chosen.sum(-1).tolist(), abs=1e-3)


# --- gating statistics and convergence ----------------------------------------------------------

@pytest.mark.parametrize("criterion", ["kl", "argmax"])
def test_gating_statistics_are_bounded(model, prompts, criterion):
    input_ids, mask = left_pad(prompts)
    tau = median_entropy(model, input_ids, mask)
    output = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=2, tau=tau, k_max=3, criterion=criterion))
    assert 0 < sum(output.num_gated) < sum(output.num_tokens)
    for row, (tokens, gated, reapplications) in enumerate(
            zip(output.num_tokens, output.num_gated, output.num_reapplications)):
        assert gated <= tokens and gated <= reapplications <= 3 * gated
        histogram = output.reapplication_histogram[row]
        assert len(histogram) == 3 and sum(histogram) == gated
        assert sum(count * (index + 1) for index, count in enumerate(histogram)) == reapplications
        # A gated step that stopped before k_max did so because it converged.
        assert sum(histogram[:2]) <= output.num_converged[row] <= gated
        assert (output.mean_stop_kl[row] is None) == (gated == 0)
        if gated:
            assert output.mean_stop_kl[row] >= 0
    assert max(output.num_reapplications) <= output.reapplication_passes <= min(sum(output.num_reapplications), 3 * NEW_TOKENS)


def test_convergence_threshold_extremes(model, prompts):
    """eps = inf converges after one re-application, eps = 0 never converges (KL >= 0)."""
    input_ids, mask = left_pad(prompts)
    always = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=1, tau=-math.inf, k_max=3, eps=math.inf))
    assert always.num_reapplications == always.num_gated == always.num_converged == [NEW_TOKENS] * 3
    assert always.reapplication_histogram == [[NEW_TOKENS, 0, 0]] * 3
    never = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=1, tau=-math.inf, k_max=3, eps=0.0))
    assert never.num_reapplications == [3 * NEW_TOKENS] * 3
    assert never.num_converged == [0, 0, 0] and never.reapplication_histogram == [[0, 0, NEW_TOKENS]] * 3
    assert all(kl > 0 for kl in never.mean_stop_kl)


def test_full_span_and_keep_first_run(model, prompts):
    input_ids, mask = left_pad(prompts)
    for kv_policy in ("overwrite", "keep_first"):
        config = EGLRConfig(layer_span=NUM_LAYERS, tau=-math.inf, k_max=2, kv_policy=kv_policy)
        output = run(model, input_ids, mask, eglr=config)
        assert output.num_gated == [NEW_TOKENS] * 3


# --- batch invariance and determinism -----------------------------------------------------------

@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_each_row_of_a_batch_equals_the_row_alone(model, prompts, sampled):
    input_ids, mask = left_pad(prompts)
    tau = median_entropy(model, input_ids, mask)
    config = EGLRConfig(layer_span=2, tau=tau, k_max=3, criterion="argmax")
    seeds = [11, 12, 13]
    sampling = dict(temperature=0.9, top_p=0.9) if sampled else {}
    batched = run(model, input_ids, mask, eglr=config, seed=seeds, **sampling)
    assert 0 < sum(batched.num_gated) < sum(batched.num_tokens)
    for row, prompt in enumerate(prompts):
        alone = run(model, prompt[None], eglr=config, seed=[seeds[row]], **sampling)
        assert torch.equal(alone.sequences[0], batched.sequences[row])
        assert alone.num_gated[0] == batched.num_gated[row]
        assert alone.num_reapplications[0] == batched.num_reapplications[row] == alone.reapplication_passes


@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "sampled"])
def test_rows_that_end_leave_the_batch_without_changing_the_others(model, prompts, sampled):
    """Row 0 ends early (its EOS is a token it emits at step 3); the rows still decoding, now a smaller batch
    with fewer cache rows, produce exactly what each produces alone, gated steps and re-applications included."""
    input_ids, mask = left_pad(prompts)
    tau = median_entropy(model, input_ids, mask)
    config = EGLRConfig(layer_span=2, tau=tau, k_max=3)
    seeds = [21, 22, 23]
    sampling = dict(temperature=0.9) if sampled else {}
    free = run(model, input_ids, mask, eglr=config, seed=seeds, **sampling)
    eos = int(free.sequences[0, 3])
    batched = run(model, input_ids, mask, eglr=config, seed=seeds, eos_token_id=eos, **sampling)
    assert batched.num_tokens[0] <= 4 and max(batched.num_tokens) == NEW_TOKENS
    for row, prompt in enumerate(prompts):
        alone = run(model, prompt[None], eglr=config, seed=[seeds[row]], eos_token_id=eos, **sampling)
        count = alone.num_tokens[0]
        assert batched.num_tokens[row] == count
        assert torch.equal(alone.sequences[0, :count], batched.sequences[row, :count])
        assert (alone.num_gated[0], alone.num_reapplications[0], alone.reapplication_histogram[0]) == (
            batched.num_gated[row], batched.num_reapplications[row], batched.reapplication_histogram[row])
        assert alone.finish_reasons[0] == batched.finish_reasons[row]
        assert alone.sum_logprob[0] == pytest.approx(batched.sum_logprob[row], abs=1e-5)


def test_same_seed_same_tokens_and_different_seed_different_tokens(model, prompts):
    input_ids, mask = left_pad(prompts)
    config = EGLRConfig(layer_span=2, tau=median_entropy(model, input_ids, mask))
    first = run(model, input_ids, mask, eglr=config, temperature=1.0, seed=7)
    again = run(model, input_ids, mask, eglr=config, temperature=1.0, seed=7)
    other = run(model, input_ids, mask, eglr=config, temperature=1.0, seed=8)
    assert torch.equal(first.sequences, again.sequences)
    assert first.num_reapplications == again.num_reapplications
    assert not torch.equal(first.sequences, other.sequences)


# --- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("field", "value"),
    [("layer_span", -1), ("k_max", -2), ("criterion", "entropy"), ("kv_policy", "append"), ("reinject", "scaled"),
     ("tau", float("nan")), ("eps", -0.1), ("eps", float("nan")), ("layer_span", 1.5)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field) as error:
        EGLRConfig(**{field: value})
    assert str(value) in str(error.value)


def test_config_defaults_and_dict():
    config = EGLRConfig(layer_span=4)
    assert config.to_dict() == dict(layer_span=4, tau=1.0, k_max=4, eps=1e-3, criterion="kl", kv_policy="overwrite",
                                    reinject="raw")
    with pytest.raises(AttributeError):
        config.tau = 2.0


def test_span_larger_than_model_is_rejected():
    model = tiny_model("llama")
    assert num_decoder_layers(model) == NUM_LAYERS
    EGLRConfig(layer_span=NUM_LAYERS).validate_for_model(NUM_LAYERS)
    with pytest.raises(ValueError, match=f"layer_span={NUM_LAYERS + 1}"):
        EGLRConfig(layer_span=NUM_LAYERS + 1).validate_for_model(NUM_LAYERS)
    with pytest.raises(ValueError, match="layer_span"):
        run(model, random_prompts([5])[0][None], eglr=EGLRConfig(layer_span=NUM_LAYERS + 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(temperature=-0.5), "-0.5"), (dict(temperature=float("nan")), "nan"), (dict(top_p=0.0), "top_p"),
     (dict(top_p=1.5), "1.5"), (dict(max_new_tokens=0), "max_new_tokens"), (dict(seed=[1, 2]), "seed"),
     (dict(eos_token_id="eos"), "eos_token_id"), (dict(pad_token_id=[0]), "pad_token_id")],
)
def test_generate_rejects_bad_arguments(kwargs, message):
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=message):
        run(model, random_prompts([5])[0][None], eglr=EGLRConfig(), **kwargs)


def test_generate_rejects_bad_inputs():
    model = tiny_model("llama")
    input_ids, mask = left_pad(random_prompts([4, 6]))
    with pytest.raises(ValueError, match="left-padded"):
        run(model, input_ids, mask.flip(1), eglr=EGLRConfig())
    with pytest.raises(ValueError, match="shape"):
        run(model, input_ids, mask[:, 1:], eglr=EGLRConfig())
    with pytest.raises(ValueError, match="integer"):
        run(model, input_ids.float(), mask, eglr=EGLRConfig())
    with pytest.raises(ValueError, match="EGLRConfig"):
        run(model, input_ids, mask, eglr={"layer_span": 2})


# --- device and dtype -----------------------------------------------------------------------------

@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
def test_bfloat16_model_decodes_in_its_own_dtype(architecture):
    model = tiny_model(architecture, dtype=torch.bfloat16)
    input_ids, mask = left_pad(random_prompts([12, 17, 9], seed=1))
    assert torch.equal(run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0)).sequences,
                       hf_greedy(model, input_ids, mask))
    dtypes = []
    handle = model.model.norm.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    output = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=2, tau=-math.inf, k_max=2))
    handle.remove()
    assert output.num_gated == [NEW_TOKENS] * 3
    assert all(NEW_TOKENS <= n <= 2 * NEW_TOKENS for n in output.num_reapplications)
    assert set(dtypes) == {torch.bfloat16} and len(dtypes) >= 2 * NEW_TOKENS  # forwards and re-applications


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("architecture", ["qwen2", "gemma2"])
def test_cuda_bfloat16(architecture):
    model = tiny_model(architecture, dtype=torch.bfloat16).cuda()
    input_ids, mask = left_pad(random_prompts([12, 17, 9], seed=1))
    config = EGLRConfig(layer_span=2, tau=median_entropy(model, input_ids.cuda(), mask.cuda()), criterion="argmax")
    output = run(model, input_ids, mask, eglr=config, temperature=0.7, seed=[1, 2, 3])
    assert output.sequences.device.type == "cuda"
    assert 0 < sum(output.num_gated) < sum(output.num_tokens)
    plain = run(model, input_ids, mask, eglr=EGLRConfig(layer_span=0))
    assert torch.equal(plain.sequences, hf_greedy(model, input_ids.cuda(), mask.cuda()))
    again = run(model, input_ids, mask, eglr=config, temperature=0.7, seed=[1, 2, 3])
    assert torch.equal(output.sequences, again.sequences)
