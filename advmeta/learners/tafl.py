"""TAFL — Task-based Adversarial Focal Loss (docs/methods.md#tafl)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from advmeta.attacks import cross_entropy
from advmeta.learners._base import accuracy
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import Params
from advmeta.learners.aq import AQ, AQConfig

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class TAFLConfig(AQConfig):
    """TAFL's hyper-parameters: AQ's plus the focal task weight (γ, k, δ are [choice] defaults)."""

    gamma: float = hp(2.0, "focusing exponent γ of M = (1 − exp(−k·L_AR))^γ [choice]", low=0.0, high=5.0)
    k: float = hp(1.0, "scale k inside the focal weight [choice]", low=0.1, high=10.0, log=True)
    delta: float = hp(1e-3, "floor δ of L_AR = max{CE(adv) − CE(clean), δ} [choice]", low=1e-6, high=1e-1, log=True)


def l_ar(ce_adv_sum: Tensor, ce_clean_sum: Tensor, delta: float) -> Tensor:
    """TAFL's L_AR(τ) = max{CE(θ_τ, A(x_q)) − CE(θ_τ, x_q), δ}, losses summed over a task's queries."""
    return torch.clamp(ce_adv_sum - ce_clean_sum, min=delta)


def task_weights(lar: Tensor, gamma: float, k: float) -> Tensor:
    """Detached focal weights M(τ) = (1 − exp(−k·L_AR))^γ normalised to mean 1 over the batch."""
    m = (1.0 - torch.exp(-k * lar.detach())) ** gamma
    return (m / m.mean().clamp_min(1e-12)).detach()


@register_learner("tafl")
class TAFL(AQ):
    """AQ with a per-task weight: loss = mean_τ w_τ · CE(θ_τ, A(x_q)).

    The weights are detached (not a function of θ) and normalised linearly within the
    meta-batch so that they average 1 [choice: the paper does not give the normalisation].

    References:
        Hou et al., "Task-based Focal Loss for Adversarially Robust Meta-Learning", ICPR 2020.
    """

    Config = TAFLConfig
    task_separable = False  # the weights are normalised over the meta-batch

    def outer_loss(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        y = episodes.query_y
        x_adv = self.adversarial_query(fast, episodes, generator)
        out = self.logits(fast, x_adv)
        ce_adv = cross_entropy(out, y)
        with torch.no_grad():
            clean = self.logits({k: v.detach() for k, v in fast.items()}, episodes.query_x)
            ce_clean = cross_entropy(clean, y)
            lar = l_ar(ce_adv.detach().sum(1), ce_clean.sum(1), self.cfg.delta)
        w = task_weights(lar, self.cfg.gamma, self.cfg.k)
        loss = (w * ce_adv.mean(1)).mean()
        return loss, {"acc_adv": accuracy(out, y), "l_ar": float(lar.mean()), "w_max": float(w.max())}
