"""A learner of one's own: Adversarial Querying with a clean-query term ("aq-mix").

MAML's inner loop on the clean support; the meta-loss is CE on the query attacked at the adapted
weights (as AQ's) plus ``clean_weight`` × CE on the clean query, which trades some robustness
for clean accuracy. Everything it uses is a public name of :mod:`advmeta.learners`.

Use: ``ADVMETA_PLUGINS=docs/examples/plugins/aq_mix_learner.py advmeta tune aq-mix --clean-weight 0,0.5,1``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from advmeta.data import Episodes
from advmeta.eps import Eps
from advmeta.learners import AttackSpec, MAMLBase, MAMLConfig, Params, accuracy, ce, hp, hparams, register_learner


@hparams
class AQMixConfig(MAMLConfig):
    """AQ-mix's hyper-parameters: MAML's (inner loop, fine-tuning) plus the attack and the mix."""

    train_eps: Eps = hp("8/255", "ε of the training attack on the query")
    train_steps: int = hp(1, "PGD steps of the training attack (step size ε/steps·2.5)", low=1, high=10)
    clean_weight: float = hp(0.5, "weight of the clean-query CE added to the adversarial one", low=0.0, high=2.0)

    # Values that differ on a dataset; every run on it (the CLI's and TrainConfig's) starts from them.
    DATASET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {"omniglot": {"train_eps": "16/255"}}


@register_learner("aq-mix")
class AQMix(MAMLBase):
    """MAML whose meta-loss is CE(attacked query) + clean_weight · CE(clean query) at θ′."""

    Config = AQMixConfig

    def outer_loss(self, fast: Params, episodes: Episodes,
                   generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        spec = AttackSpec("pgd", cfg.train_eps, {"steps": cfg.train_steps, "random_start": True})
        x_adv = self.attack(spec, fast, episodes.query_x, episodes.query_y, generator)  # a constant for θ
        adv_logits = self.logits(fast, x_adv)
        clean_logits = self.logits(fast, episodes.query_x)
        loss = ce(adv_logits, episodes.query_y) + cfg.clean_weight * ce(clean_logits, episodes.query_y)
        return loss, {"acc_adv": accuracy(adv_logits, episodes.query_y),
                      "acc": accuracy(clean_logits, episodes.query_y)}
