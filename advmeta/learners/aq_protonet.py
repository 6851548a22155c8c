"""AQ on ProtoNet, with its TRADES option (docs/methods.md#aq)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.attacks import kl_to_clean
from advmeta.eps import Eps, EpsStep
from advmeta.learners._base import accuracy
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.aq import train_attack_spec
from advmeta.learners.inner_loop import ce
from advmeta.learners.protonet import ProtoNet, ProtoNetConfig

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class AQProtoNetConfig(ProtoNetConfig):
    """AQ-ProtoNet's hyper-parameters."""

    learnable_scale: bool = hp(True, "multiply the logits by a learnable scale (AQ's head)", choices=(False, True))
    normalize_by_dim: bool = hp(True, "divide squared distances by the embedding dimension (AQ's head)",
                                choices=(False, True))
    train_attack: str = hp("pgd", "training attack on the query pixels, through the whole episode")
    train_eps: Eps = hp("8/255", "ε of the training attack")
    train_attack_steps: int = hp(7, "steps of the training attack", low=1, high=20)
    train_step_size: EpsStep = hp("2/255", "step size of the training attack")
    train_random_start: bool = hp(True, "random start of the training attack", choices=(False, True))
    loss: str = hp("adv", "'adv': CE on the attacked query; 'trades': CE(clean) + β·KL(adv ‖ clean)",
                   choices=("adv", "trades"))
    trades_beta: float = hp(6.0, "β of the TRADES option [choice: TRADES' default]", low=0.0, high=10.0)


@register_learner("aq-protonet")
class AQProtoNet(ProtoNet):
    """ProtoNet trained on queries attacked through the episode (prototypes from the clean support).

    References:
        Goldblum, Fowl & Goldstein, NeurIPS 2020 (AQ).
    """

    Config = AQProtoNetConfig

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        sx, sy, qx, qy = episodes.support_x, episodes.support_y, episodes.query_x, episodes.query_y
        trades = cfg.loss == "trades"
        spec = train_attack_spec(cfg, **({"loss": "kl"} if trades else {}))
        sxd = sx.detach()
        x_adv = spec(lambda x: self.episode_logits(sxd, sy, x), qx, qy, generator)
        adv = self.episode_logits(sx, sy, x_adv)
        if not trades:
            return ce(adv, qy), {"acc_adv": accuracy(adv, qy)}
        clean = self.episode_logits(sx, sy, qx)
        kl = kl_to_clean(adv, F.log_softmax(clean, -1)).mean()
        return ce(clean, qy) + cfg.trades_beta * kl, {"acc": accuracy(clean, qy), "acc_adv": accuracy(adv, qy)}
