"""Relation Networks (a baseline in ADML's tables, docs/methods.md#metric-learners)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advmeta.learners._metric import MetricBase
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import ce


@hparams
class RelationConfig:
    """Relation Networks' hyper-parameters."""

    loss: str = hp("mse", "'mse' of sigmoid relation scores to one-hot (the paper) or 'ce'", choices=("mse", "ce"))


@register_learner("relation")
class Relation(MetricBase):
    """A learned relation module scores (query, class) pairs; MSE to the one-hot label.

    References:
        Sung et al., "Learning to Compare: Relation Network for Few-Shot Learning", CVPR 2018.
    """

    Config = RelationConfig
    default_backbone = "relation"

    def task_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.cfg.loss == "ce":
            return ce(logits, y)
        return F.mse_loss(torch.sigmoid(logits), F.one_hot(y, logits.shape[-1]).to(logits.dtype))
