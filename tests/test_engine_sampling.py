"""Token choice: greedy, temperature and nucleus sampling by inverse CDF, per-row generators."""
from __future__ import annotations

import math

import pytest
import torch

from eglr.step import entropy, kl_divergence
from eglr.sampling import choose_tokens, draw_uniforms, row_generators, row_seeds, validate_sampling

PROBS = torch.tensor([0.5, 0.3, 0.2])
GRID = 1000


def grid_counts(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Token counts when the uniforms sweep a regular grid over [0, 1): the exact distribution, up to 1/GRID."""
    uniforms = (torch.arange(GRID) + 0.5) / GRID
    tokens = choose_tokens(logits.expand(GRID, -1), temperature, top_p, uniforms)
    return torch.bincount(tokens, minlength=logits.shape[-1])


def test_greedy_is_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 2.9, 0.0]])
    assert choose_tokens(logits, 0.0, 1.0, None).tolist() == [1, 0]


def test_inverse_cdf_by_hand():
    logits = PROBS.log()[None].expand(4, -1)
    uniforms = torch.tensor([0.1, 0.49, 0.51, 0.95])
    # CDF 0.5, 0.8, 1.0
    assert choose_tokens(logits, 1.0, 1.0, uniforms).tolist() == [0, 0, 1, 2]
    # top_p = 0.6 keeps {0, 1} (mass before token 2 is 0.8 >= 0.6); targets u * 0.8 = .08 .39 .41 .76 on CDF .5 .8
    assert choose_tokens(logits, 1.0, 0.6, uniforms).tolist() == [0, 0, 0, 1]
    # top_p = 0.45 keeps only the most likely token
    assert choose_tokens(logits, 1.0, 0.45, uniforms).tolist() == [0, 0, 0, 0]


def test_sampling_frequencies_follow_temperature_and_nucleus():
    logits = PROBS.log()[None]
    assert grid_counts(logits, 1.0, 1.0).tolist() == [500, 300, 200]
    sharpened = PROBS**2 / (PROBS**2).sum()  # temperature 0.5 squares the probabilities
    assert torch.allclose(grid_counts(logits, 0.5, 1.0).float(), sharpened * GRID, atol=1.0)
    assert grid_counts(logits, 1.0, 0.7).tolist() == [625, 375, 0]


def test_zero_probability_tokens_are_never_drawn():
    logits = torch.tensor([[0.0, -math.inf, 0.0, -math.inf]])
    uniforms = torch.tensor([0.0, 0.4999, 0.5, 1.0 - 1e-7, 1.0])  # 1.0: the end of the CDF, as rounding can give
    tokens = choose_tokens(logits.expand(5, -1), 1.0, 1.0, uniforms)
    assert tokens.tolist() == [0, 0, 2, 2, 2]


def test_row_seeds():
    assert row_seeds(10, 3) == [10, 11, 12]
    assert row_seeds([5, 1], 2) == [5, 1]
    torch.manual_seed(0)
    first = row_seeds(None, 2)
    torch.manual_seed(0)
    assert row_seeds(None, 2) == first and first[1] == first[0] + 1
    for bad in ([1, 2, 3], [1.0, 2], True):
        with pytest.raises(ValueError, match="seed"):
            row_seeds(bad, 2)


def test_a_rows_draws_depend_only_on_its_seed():
    device = torch.device("cpu")
    alone = row_generators([7], device)
    batched = row_generators([3, 7, 9], device)
    for _ in range(3):
        assert draw_uniforms(alone, device)[0] == draw_uniforms(batched, device)[1]


def test_entropy_and_kl():
    uniform = torch.full((1, 4), 0.25).log()
    assert entropy(uniform).item() == pytest.approx(math.log(4))
    one_hot = torch.tensor([[0.0, -math.inf, -math.inf]])
    assert entropy(one_hot).item() == 0.0
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(p.log(), q.log()).item() == pytest.approx(expected, rel=1e-6)
    assert kl_divergence(one_hot, torch.tensor([[-0.1, -3.0, -3.0]])).item() == pytest.approx(0.1)


@pytest.mark.parametrize(("temperature", "top_p"), [(-1.0, 1.0), (math.nan, 1.0), (math.inf, 1.0),
                                                    (1.0, 0.0), (1.0, 1.01), (1.0, math.nan)])
def test_validate_sampling(temperature, top_p):
    with pytest.raises(ValueError, match="temperature" if temperature != 1.0 else "top_p"):
        validate_sampling(temperature, top_p)
