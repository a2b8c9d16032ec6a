"""Which problems each axis solves: the layer axis, temperature, both, or neither.

A problem is solved by an axis when the axis' pool (by default layer-only,
i.e. temperature 0 at every layer span, and temperature-only, i.e. layer span 0
at every temperature) has a correct rollout for it. Both pools contain the
greedy rollout, so a problem greedy solves counts as ``both``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from eglr.metrics.io import PROBLEM_KEY
from eglr.metrics.pools import LAYER_ONLY, TEMPERATURE_ONLY, Pool, pool_counts

CATEGORIES = ("both", "only_layer", "only_temperature", "neither")


def complementarity(
    rollouts: pd.DataFrame, layer_pool: Pool = LAYER_ONLY, temperature_pool: Pool = TEMPERATURE_ONLY
) -> pd.DataFrame:
    """Per problem: ``solved_by_layer``, ``solved_by_temperature`` and its
    ``category`` (one of :data:`CATEGORIES`)."""
    layer = pool_counts(rollouts, layer_pool)
    temperature = pool_counts(rollouts, temperature_pool)
    result = layer[PROBLEM_KEY].copy()
    by_layer = layer["c"].to_numpy() > 0
    by_temperature = temperature["c"].to_numpy() > 0
    result["solved_by_layer"] = by_layer
    result["solved_by_temperature"] = by_temperature
    category = np.select(
        [by_layer & by_temperature, by_layer, by_temperature], list(CATEGORIES[:3]), CATEGORIES[3]
    )
    result["category"] = pd.Categorical(category, categories=CATEGORIES)
    return result
