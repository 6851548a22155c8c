"""Prototypical Networks (AQ's main learner; a baseline of docs/methods.md#metric-learners)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.learners._metric import MetricBase
from advmeta.learners._registry import hp, hparams, register_learner


class PrototypeHead(nn.Module):
    """An embedding and the prototype classifier −‖f(x) − c‖² (÷ D) × scale.

    Shape:
        support_x (S, C, H, W), support_y (S,), query_x (Q, C, H, W) → logits (Q, N).
    """

    def __init__(self, encoder: nn.Module, learnable_scale: bool, normalize_by_dim: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize_by_dim = normalize_by_dim
        if learnable_scale:
            self.scale = nn.Parameter(torch.tensor(1.0))
        else:
            self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int | None = None) -> Tensor:
        n_way = int(support_y.max()) + 1 if n_way is None else n_way
        # One pass: in batch-statistics mode the episode shares its statistics.
        z = self.encoder(torch.cat([support_x, query_x])).flatten(1)
        zs, zq = z[: support_x.shape[0]], z[support_x.shape[0]:]
        onehot = F.one_hot(support_y, n_way).to(z.dtype)
        protos = (onehot.T @ zs) / onehot.sum(0)[:, None]
        d = torch.cdist(zq, protos).pow(2) if zq.dtype != torch.float64 else ((zq[:, None] - protos[None]) ** 2).sum(-1)
        if self.normalize_by_dim:
            d = d / z.shape[1]
        return -d * self.scale


@hparams
class ProtoNetConfig:
    """ProtoNet's hyper-parameters."""

    learnable_scale: bool = hp(False, "multiply the logits by a learnable scale (AQ's head)", choices=(False, True))
    normalize_by_dim: bool = hp(False, "divide squared distances by the embedding dimension (AQ's head)",
                                choices=(False, True))


@register_learner("protonet")
class ProtoNet(MetricBase):
    """Prototypical Networks: class means of the support embeddings, squared-Euclidean logits.

    References:
        Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    """

    Config = ProtoNetConfig
    default_backbone = "protonet"

    @classmethod
    def wrap_model(cls, config: Any, backbone: nn.Module) -> nn.Module:
        return PrototypeHead(backbone, config.learnable_scale, config.normalize_by_dim)
