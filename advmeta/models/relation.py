"""Relation Network: an embedding and a learned relation module scoring (query, class) pairs.

References:
    Sung et al., "Learning to Compare: Relation Network for Few-Shot Learning", CVPR 2018.
    Encoder: two unpadded conv blocks with pooling, two padded blocks without; relation module:
    two padded conv blocks with pooling and a 2-layer MLP. Class features are summed over shots.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.errors import ConfigError
from advmeta.models._registry import MODELS
from advmeta.models.layers import ConvBlock, image_hw, maybe_normalize, out_size


class _BNOptions(TypedDict):
    """The batch-norm keywords every :class:`ConvBlock` of the network shares."""

    bn_mode: str
    bn_impl: str


class RelationNet(nn.Module):
    """Embedding + relation module.

    Args:
        in_channels: image channels.
        width: filters of every conv layer (64).
        hidden: hidden units of the relation MLP (8).
        image_size: input H (=W) or (H, W).
        bn_mode, bn_impl: batch norm (default ``"running"``).
        mean, std: optional input normalisation.

    Shape:
        support_x (S, C, H, W), support_y (S,), query_x (Q, C, H, W) -> relation logits (Q, n_way);
        ``torch.sigmoid`` of them are the paper's relation scores (trained with MSE to one-hot).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        hidden: int = 8,
        image_size: int | Sequence[int] = 84,
        bn_mode: str = "running",
        bn_impl: str = "torch",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        bn: _BNOptions = {"bn_mode": bn_mode, "bn_impl": bn_impl}
        self.normalize = maybe_normalize(mean, std)
        self.encoder = nn.Sequential(
            ConvBlock(in_channels, width, padding=0, pool=True, **bn),
            ConvBlock(width, width, padding=0, pool=True, **bn),
            ConvBlock(width, width, padding=1, pool=False, **bn),
            ConvBlock(width, width, padding=1, pool=False, **bn),
        )
        h, w = image_hw(image_size)
        for pad, pool in ((0, True), (0, True), (1, False), (1, False), (1, True), (1, True)):
            h, w = out_size(h, pad, pool), out_size(w, pad, pool)
        if h < 1 or w < 1:
            raise ConfigError(f"image_size {image_size} is too small for the relation network")
        self.relation = nn.Sequential(
            ConvBlock(2 * width, width, padding=1, pool=True, **bn),
            ConvBlock(width, width, padding=1, pool=True, **bn),
        )
        self.fc1 = nn.Linear(width * h * w, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def features(self, x: Tensor) -> Tensor:
        """Flattened embedding, (B, C, H, W) -> (B, D)."""
        out: Tensor = self.encoder(self.normalize(x)).flatten(1)
        return out

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int | None = None) -> Tensor:
        n_way = int(support_y.max()) + 1 if n_way is None else n_way
        n_s, n_q = support_x.shape[0], query_x.shape[0]
        z = self.encoder(self.normalize(torch.cat([support_x, query_x])))
        zs, zq = z[:n_s], z[n_s:]
        shape = zs.shape[1:]
        onehot = F.one_hot(support_y, n_way).to(zs.dtype)
        classes = (onehot.T @ zs.flatten(1)).view(n_way, *shape)   # sum over shots
        pairs = torch.cat(
            [classes.unsqueeze(0).expand(n_q, -1, -1, -1, -1), zq.unsqueeze(1).expand(-1, n_way, -1, -1, -1)],
            dim=2,
        ).flatten(0, 1)
        r = self.relation(pairs).flatten(1)
        out: Tensor = self.fc2(F.relu(self.fc1(r))).view(n_q, n_way)
        return out


@MODELS.register("relation")
def relation(**kwargs: object) -> RelationNet:
    """Relation Network; keyword arguments of :class:`RelationNet`."""
    return RelationNet(**kwargs)  # type: ignore[arg-type]
