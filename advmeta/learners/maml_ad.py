"""MAML-AD, ADML's baseline (docs/methods.md#maml-ad)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from advmeta.eps import Eps
from advmeta.learners._base import accuracy
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import ce
from advmeta.learners.adml import surrogate_halves

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class MAMLADConfig(MAMLConfig):
    """MAML-AD's hyper-parameters: MAML's plus the surrogate ε."""

    train_eps: Eps = hp("2/255", "ε of the surrogate FGSM at meta-training (as ADML)")


@register_learner("maml-ad")
class MAMLAD(MAMLBase):
    """Plain MAML whose inner and meta-update sets are half clean, half surrogate-FGSM images.

    The split is 50/50 [choice: as ADML's own K clean + K adversarial]: each class has K clean
    images and the FGSM of K other images, in the support and in the query.

    References:
        Yin et al., "Adversarial Meta-Learning", arXiv:1806.03316 (the MAML-AD baseline).
    """

    Config = MAMLADConfig
    needs_surrogate = True

    def train_shots(self, k_shot: int, q_query: int, n_unlabeled: int) -> tuple[int, int, int]:
        return 2 * k_shot, 2 * q_query, n_unlabeled

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        n_way = int(episodes.classes.shape[1])
        h = surrogate_halves(self, episodes, episodes.support_y.shape[1] // n_way // 2,
                             episodes.query_y.shape[1] // n_way // 2)
        sx, sy = torch.cat([h["sc_x"], h["sa_x"]], 1), torch.cat([h["sc_y"], h["sa_y"]], 1)
        qx, qy = torch.cat([h["qc_x"], h["qa_x"]], 1), torch.cat([h["qc_y"], h["qa_y"]], 1)
        fast = self.adapt(self.params(), sx, sy)
        out = self.logits(fast, qx)
        return ce(out, qy), {"acc": accuracy(out, qy)}
