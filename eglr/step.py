"""The EGLR step: the gate, the re-application loop, the convergence test and the KV policy.

This module is the whole procedure at one decoding position; the decoding loop
(:func:`eglr.engine.generate`) calls :func:`eglr_step` once per step, after the
model's normal forward pass. Per row, with ``h_0`` the last decoder layer's
output (pre-norm) and ``z_0`` the model's own next-token logits::

    p_0 = softmax(z_0)
    if H(p_0) > tau:                                # the gate (nats, temperature 1)
        for k = 1 .. k_max:                         # re-applications
            x   = h_{k-1}                           # reinject = raw
                  (or h_{k-1} * |a| / |h_{k-1}|,    # reinject = norm_matched, a = the top block's
                                                    #   input at this position in the normal pass)
            h_k = top L decoder layers (x)          # same position, attending to the KV cache
            p_k = softmax(head(h_k))                # final norm + lm_head (+ soft-capping ...)
            if KL(p_k || p_{k-1}) < eps: break      # criterion = kl   (argmax: top token unchanged)
        z = z_k
    token = greedy(z) or sample(z / T)              # chosen by the caller

The KV policy decides which keys/values the top L layers' cache keeps for this
position once the row has moved on: ``overwrite`` keeps the last
re-application's (each re-application writes the position's slot again),
``keep_first`` puts the normal pass's back, so re-applications change only this
step's token and never what later positions attend to.

Only the rows that are gated and not yet converged are re-applied: each
re-application runs the top layers and the head on those rows alone
(:meth:`eglr.top_layers.TopLayers.reapply`). The pure functions below
(:func:`entropy`, :func:`kl_divergence`, :func:`is_gated`, :func:`has_converged`,
:func:`norm_matched`) are the one definition of EGLR's arithmetic, shared by
every engine (the vLLM one included).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # this module needs torch only, so that other engines (vLLM) can import it
    from eglr.logits import OutputHead
    from eglr.top_layers import TopLayers

CRITERIA = ("kl", "argmax")
KV_POLICIES = ("overwrite", "keep_first")
REINJECTIONS = ("raw", "norm_matched")


@dataclass(frozen=True)
class EGLRConfig:
    """How (and whether) EGLR re-applies the top layers at uncertain steps.

    - ``layer_span`` (L): number of top decoder layers re-applied; 0 disables EGLR.
    - ``tau`` = 1.0 nats: entropy above which a step is gated. An entropy of 1 nat
      is that of a uniform choice among e ~ 2.7 tokens. ``+inf`` never gates,
      ``-inf`` gates every step. (The runner can set it from a quantile of the
      model's own entropies instead: ``eglr.tau_quantile``.)
    - ``k_max`` = 4: at most this many re-applications per gated step, which bounds
      the cost of a gated step to 4 x (L layers + head) on top of a full forward.
    - ``eps`` = 1e-3 nats: KL below which two successive distributions count as
      converged. By Pinsker's inequality their total-variation distance is then
      below sqrt(eps / 2) ~ 0.022, i.e. sampling from either is practically the same.
    - ``criterion``: ``"kl"`` (KL(p_k || p_{k-1}) < eps) or ``"argmax"`` (unchanged top token).
    - ``kv_policy``: ``"overwrite"`` or ``"keep_first"`` (see the module docstring).
    - ``reinject``: the input of a re-application: ``"raw"``, the last layer's output
      as it is, or ``"norm_matched"``, rescaled to the norm the re-applied block's
      input had at this position (each pass adds to the residual stream, so the raw
      state's norm grows from one re-application to the next).
    """

    layer_span: int = 0
    tau: float = 1.0
    k_max: int = 4
    eps: float = 1e-3
    criterion: str = "kl"
    kv_policy: str = "overwrite"
    reinject: str = "raw"

    def __post_init__(self) -> None:
        for name in ("layer_span", "k_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or math.isnan(self.tau):
            raise ValueError(f"tau must be a number (inf allowed, not NaN), got {self.tau!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not self.eps >= 0:
            raise ValueError(f"eps must be a number >= 0, got {self.eps!r}")
        for name, allowed in (("criterion", CRITERIA), ("kv_policy", KV_POLICIES), ("reinject", REINJECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def can_gate(self) -> bool:
        """Whether any step can be re-applied at all (L > 0 and k_max > 0)."""
        return self.layer_span > 0 and self.k_max > 0

    def validate_for_model(self, num_layers: int) -> None:
        """Raise ``ValueError`` if ``layer_span`` exceeds a model's ``num_layers`` decoder layers."""
        if self.layer_span > num_layers:
            raise ValueError(f"layer_span={self.layer_span} exceeds the model's {num_layers} decoder layers")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# --- the arithmetic -------------------------------------------------------------------------------
# Log-probabilities come in float32: entropies and KL divergences from bf16 over a 150k vocabulary
# would be too coarse to compare with thresholds like 1e-3.

def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row of ``log_probs`` (zero-probability entries contribute nothing)."""
    # Clamping -inf to the lowest finite value makes 0 * log 0 a plain 0 (twice as fast as torch.special.entr).
    return -(log_probs.exp() * log_probs.clamp(min=torch.finfo(log_probs.dtype).min)).sum(-1)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats per row, from log-probabilities (entries where p = 0 contribute nothing)."""
    lowest = torch.finfo(log_p.dtype).min
    return (log_p.exp() * (log_p.clamp(min=lowest) - log_q.clamp(min=lowest))).sum(-1)


def is_gated(log_probs: torch.Tensor, tau: float) -> torch.Tensor:
    """Per row: is the next-token entropy above ``tau``?"""
    return entropy(log_probs) > tau


def has_converged(new_log_probs: torch.Tensor, log_probs: torch.Tensor, criterion: str, eps: float,
                  kl: torch.Tensor | None = None) -> torch.Tensor:
    """Per row: has the distribution stopped changing between two successive iterates?

    ``kl``, if given, is KL(new || previous) already computed for these rows.
    """
    if criterion == "kl":
        return (kl_divergence(new_log_probs, log_probs) if kl is None else kl) < eps
    return new_log_probs.argmax(-1) == log_probs.argmax(-1)


def norm_matched(hidden: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``hidden`` rescaled per row to the L2 norm (over the hidden dimension) of ``reference``."""
    hidden_norm = hidden.float().norm(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny)
    scale = reference.float().norm(dim=-1, keepdim=True) / hidden_norm
    return (hidden.float() * scale).to(hidden.dtype)


# --- the step -------------------------------------------------------------------------------------

@dataclass
class StepResult:
    """One decoding position after EGLR, per row of the batch.

    ``logits``/``log_probs`` are the final iterate's (the normal pass's where a
    row was not gated); ``reapplications`` counts the row's re-applications at
    this step; ``converged`` says whether its convergence test passed within
    ``k_max``; ``stop_kl`` is KL(p_k || p_{k-1}) at its last re-application (NaN
    where the row was not gated). ``passes`` counts the re-applications run,
    each on the rows still running.
    """

    logits: torch.Tensor
    log_probs: torch.Tensor
    gated: torch.Tensor
    reapplications: torch.Tensor
    converged: torch.Tensor
    stop_kl: torch.Tensor
    passes: int


def eglr_step(config: EGLRConfig, top: TopLayers, head: OutputHead, logits: torch.Tensor,
              log_probs: torch.Tensor, active: torch.Tensor | None = None) -> StepResult:
    """Gate this position per row, re-apply the top layers to the gated rows until they converge.

    ``logits``/``log_probs`` are the normal pass's [batch, vocab]; the rows that
    are re-applied get their final iterate's written into them in place.
    ``active`` (default: every row) marks the rows that may be gated. Calls
    ``top.end_step()``, so the next forward pass may follow.
    """
    batch_size = logits.shape[0]
    gated = is_gated(log_probs, config.tau)
    if active is not None:
        gated &= active
    reapplications = torch.zeros(batch_size, dtype=torch.long, device=logits.device)
    converged = torch.zeros(batch_size, dtype=torch.bool, device=logits.device)
    stop_kl = torch.full((batch_size,), math.nan, dtype=torch.float32, device=logits.device)
    rows = gated.nonzero().squeeze(1)
    passes = 0
    if rows.numel():
        if config.kv_policy == "keep_first":
            top.keep_first_pass(rows)
        hidden, reference, row_log_probs = top.hidden[rows], top.block_input[rows], log_probs[rows]
        for passes in range(1, config.k_max + 1):
            # 1. the input of the re-application
            layer_input = norm_matched(hidden, reference) if config.reinject == "norm_matched" else hidden
            # 2. the top L layers (on these rows only) and the head
            hidden = top.reapply(layer_input, None if len(rows) == batch_size else rows)
            new_logits = head(hidden)[:, -1]
            new_log_probs = torch.log_softmax(new_logits.float(), dim=-1)
            # 3. the convergence test against the previous iterate
            kl = kl_divergence(new_log_probs, row_log_probs)
            done = has_converged(new_log_probs, row_log_probs, config.criterion, config.eps, kl=kl)
            logits.index_copy_(0, rows, new_logits)
            log_probs.index_copy_(0, rows, new_log_probs)
            reapplications.index_add_(0, rows, torch.ones_like(rows))
            converged.index_copy_(0, rows, done)
            stop_kl.index_copy_(0, rows, kl)
            # 4. rows that converged stop; the k_max-th re-application stops every row
            running = ~done
            if passes == config.k_max or not bool(running.any()):
                break
            rows, hidden, reference = rows[running], hidden[running], reference[running]
            row_log_probs = new_log_probs[running]
        # 5. the KV policy
        if config.kv_policy == "keep_first":
            top.restore_first_pass()
    top.end_step()
    return StepResult(logits, log_probs, gated, reapplications, converged, stop_kl, passes)
