"""R-MAML (Wang et al., ICLR 2021): robustify the meta-update (docs/methods.md#r-maml).

``rmaml-out`` attacks the query at θ′ (FGSM-RS) and adds λ·CE(adversarial query);
``rmaml-both`` also takes an adversarial inner step on the attacked support from the current
fast weights; ``rmaml-trades`` uses CE(clean query) + β·KL on support + query (+ unlabeled
images of the task's real classes). All three offer the auxiliary contrastive loss and light
(head-only) fine-tuning at meta-test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.attacks import AttackSpec, kl_to_clean
from advmeta.eps import Eps
from advmeta.learners._base import accuracy
from advmeta.learners._contrastive import contrastive_loss
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.aq import train_attack_spec
from advmeta.learners.inner_loop import Params, ce

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class RMAMLConfig(MAMLConfig):
    """Hyper-parameters shared by the R-MAML variants."""

    first_order: bool = hp(True, "drop second derivatives; R-MAML's public code is first order", choices=(False, True))
    train_attack: str = hp("fgsm-rs", "training attack (R-MAML: FGSM with random start)")
    train_eps: Eps = hp("2/255", "ε of the training attack (mini-ImageNet: 2/255)")
    contrastive_weight: float = hp(0.0, "weight of the auxiliary NT-Xent loss on two augmented views of the "
                                   "query; 0 = off, 0.1 when on [choice]", low=0.0, high=1.0)
    contrastive_tau: float = hp(0.5, "NT-Xent temperature [choice]", low=0.05, high=1.0)
    light_finetune: bool = hp(False, "fine-tune only the head at meta-test [choice]", choices=(False, True))


@hparams
class RMAMLOutConfig(RMAMLConfig):
    """R-MAML-out: adversarial query in the meta-loss only."""

    adv_weight: float = hp(0.2, "λ of CE(clean) + λ·CE(adversarial query) [choice: one Adam step]", low=0.0, high=5.0)


@hparams
class RMAMLBothConfig(RMAMLOutConfig):
    """R-MAML-both: R-MAML-out plus an adversarial inner step on the attacked support."""

    adv_inner_lr: float = hp(0.001, "learning rate of the adversarial inner step", low=1e-4, high=1e-1, log=True)


@hparams
class RMAMLTradesConfig(RMAMLConfig):
    """R-MAML-TRADES: CE(clean query) + β·KL regulariser."""

    beta: float = hp(3.0, "β of the KL term (3 at 2/255 mini-ImageNet, 2.5 CIFAR-FS, 5 Omniglot)", low=0.0, high=10.0)
    n_unlabeled: int = hp(0, "unlabeled images per class of the task's real classes entering the KL term only",
                          low=0, high=50)


class _RMAMLBase(MAMLBase):
    def attack_spec(self) -> AttackSpec:
        return train_attack_spec(self.cfg)

    def with_contrastive(self, loss: Tensor, fast: Params, episodes: Episodes, generator: torch.Generator | None,
                         stats: dict[str, float]) -> tuple[Tensor, dict[str, float]]:
        if self.cfg.contrastive_weight > 0:
            aux = contrastive_loss(self, fast, episodes.query_x, self.cfg.contrastive_tau, generator)
            loss = loss + self.cfg.contrastive_weight * aux
            stats["nt_xent"] = float(aux.detach())
        return loss, stats


@register_learner("rmaml-out")
class RMAMLOut(_RMAMLBase):
    """Clean inner loop; meta-loss CE(clean query, θ′) + λ·CE(FGSM-RS query at θ′, θ′).

    References:
        Wang et al., "On Fast Adversarial Robustness Adaptation in Model-Agnostic
        Meta-Learning", ICLR 2021. Their code uses two optimisers (1e-3 and 2e-4); we use one
        Adam step on the weighted sum [choice].
    """

    Config = RMAMLOutConfig

    def outer_loss(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        y = episodes.query_y
        x_adv = self.attack(self.attack_spec(), fast, episodes.query_x, y, generator)
        clean, adv = self.logits(fast, episodes.query_x), self.logits(fast, x_adv)
        loss = ce(clean, y) + self.cfg.adv_weight * ce(adv, y)
        return self.with_contrastive(loss, fast, episodes, generator,
                                     {"acc": accuracy(clean, y), "acc_adv": accuracy(adv, y)})


@register_learner("rmaml-both")
class RMAMLBoth(RMAMLOut):
    """R-MAML-out plus an adversarial inner step (lr 0.001) on the FGSM-RS support.

    The adversarial step starts from the current fast weights (the authors' code starts it
    from θ, which discards the clean adaptation — a bug we do not copy).
    """

    Config = RMAMLBothConfig

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        fast = self.adapt(self.params(), episodes.support_x, episodes.support_y)
        sx_adv = self.attack(self.attack_spec(), fast, episodes.support_x, episodes.support_y, generator)
        fast = self.adapt(fast, sx_adv, episodes.support_y, steps=1, lr=self.cfg.adv_inner_lr, batched_start=True)
        return self.outer_loss(fast, episodes, generator)


@register_learner("rmaml-trades")
class RMAMLTrades(_RMAMLBase):
    """Meta-loss CE(clean query, θ′) + β·R with R the mean KL between clean and FGSM-RS outputs.

    R = mean over support + query (+ unlabeled) images of KL(p_clean ‖ p_adv), the direction
    TRADES' and R-MAML's code compute (``kl_div(log_softmax(adv), softmax(clean))``); x_adv
    maximises the same KL. Unlabeled images come from the task's real classes (the authors
    index the pool by the task-relative label, a bug).
    """

    Config = RMAMLTradesConfig

    def train_shots(self, k_shot: int, q_query: int, n_unlabeled: int) -> tuple[int, int, int]:
        return k_shot, q_query, max(n_unlabeled, self.cfg.n_unlabeled)

    def outer_loss(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        y = episodes.query_y
        parts = [episodes.support_x, episodes.query_x]
        if episodes.unlabeled_x is not None and self.cfg.n_unlabeled > 0:
            parts.append(episodes.unlabeled_x)
        x_all = torch.cat(parts, dim=1)
        spec = train_attack_spec(self.cfg, loss="kl")
        x_adv = self.attack(spec, fast, x_all, None, generator)  # type: ignore[arg-type]
        clean_all, adv_all = self.logits(fast, x_all), self.logits(fast, x_adv)
        kl = kl_to_clean(adv_all, F.log_softmax(clean_all, -1)).mean()
        n_s = episodes.support_x.shape[1]
        clean_q = clean_all[:, n_s:n_s + episodes.query_x.shape[1]]
        loss = ce(clean_q, y) + self.cfg.beta * kl
        return self.with_contrastive(loss, fast, episodes, generator, {"acc": accuracy(clean_q, y), "kl": float(kl.detach())})
