"""AQ — Adversarial Querying on MAML (docs/methods.md#aq)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from advmeta.attacks import AttackSpec, configured
from advmeta.eps import Eps, EpsStep
from advmeta.learners._base import accuracy
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import Params, ce

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class AQConfig(MAMLConfig):
    """AQ-MAML's hyper-parameters: MAML's plus the training attack on the query."""

    first_order: bool = hp(True, "drop second derivatives; AQ's public code is first order", choices=(False, True))
    train_attack: str = hp("pgd", "training attack on the query at the adapted weights")
    train_eps: Eps = hp("8/255", "ε of the training attack (AQ: 8/255; 16/255 on Omniglot)")
    train_attack_steps: int = hp(1, "steps of the training attack (AQ-MAML: 1)", low=1, high=10)
    train_step_size: EpsStep = hp("eps", "step size of the training attack; `eps`: equal to train_eps (AQ-MAML's one step of ε)")
    train_random_start: bool = hp(True, "random start of the training attack", choices=(False, True))

    # AQ's Omniglot training attack (docs/methods.md#aq): one PGD step of ε = 16/255 (its step size follows ε).
    DATASET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"omniglot": {"train_eps": "16/255"}}


@functools.lru_cache(maxsize=64)
def train_attack_spec(cfg: Any, **more: Any) -> AttackSpec:
    """The training attack a config describes (the settings its attack takes, and ``more``; one it
    does not take, set away from its default, is an error). Made once per config (configs are
    frozen, and so is the spec), not at every meta-step: its ε is parsed once."""
    return AttackSpec(cfg.train_attack, cfg.train_eps, training_attack_settings(cfg, **more))


def training_attack_settings(cfg: Any, **more: Any) -> dict[str, Any]:
    """The training attack's settings from those of a config's ``train_attack_steps``,
    ``train_step_size`` (``eps``: equal to ``train_eps``) and ``train_random_start`` it declares
    (:func:`advmeta.attacks.configured`; R-MAML's declare none: the attack's own defaults)."""
    from advmeta.hparams import typed_fields

    fields = typed_fields(type(cfg))
    bundle = {"steps": "train_attack_steps", "step_size": "train_step_size", "random_start": "train_random_start"}
    settings = {k: (f, getattr(cfg, f), fields[f].default) for k, f in bundle.items() if f in fields}
    out = configured(cfg.train_attack, settings)
    if out.get("step_size") == "eps":
        out["step_size"] = cfg.train_eps
    return {**out, **more}


@register_learner("aq")
class AQ(MAMLBase):
    """MAML whose meta-loss is CE on the query attacked at the adapted weights θ′.

    The support stays clean. The query is attacked once, at the inner step whose loss is used
    (the public AQ code attacks at every inner step and discards all but the last).

    References:
        Goldblum, Fowl & Goldstein, "Adversarially Robust Few-Shot Learning: A Meta-Learning
        Approach", NeurIPS 2020.
    """

    Config = AQConfig

    def adversarial_query(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> Tensor:
        """The query attacked at the (detached) adapted weights."""
        return self.attack(train_attack_spec(self.cfg), fast, episodes.query_x, episodes.query_y, generator)

    def outer_loss(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        x_adv = self.adversarial_query(fast, episodes, generator)
        out = self.logits(fast, x_adv)
        return ce(out, episodes.query_y), {"acc_adv": accuracy(out, episodes.query_y)}
