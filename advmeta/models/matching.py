"""Matching Networks: cosine attention over the support set, optional full-context embeddings.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016. The query's
    attention LSTM feeds ``h + r`` as its hidden state (one D-sized state) rather than the
    concatenation [h, r] of the paper [choice: the common re-implementation].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.models._registry import MODELS
from advmeta.models.conv4 import Conv4


class MatchingNet(nn.Module):
    """Conv4-64 embedding + cosine-attention classifier over the support set.

    Args:
        in_channels: image channels.
        width: embedding filters.
        image_size: input H (=W) or (H, W).
        fce: use the full-context embeddings (support bi-LSTM, query attention LSTM).
        fce_steps: processing steps of the query attention LSTM.
        bn_mode, bn_impl: batch norm of the embedding (default ``"running"``).
        mean, std: optional input normalisation.

    Shape:
        support_x (S, C, H, W), support_y (S,) in [0, n_way), query_x (Q, C, H, W)
        -> log-probabilities (Q, n_way) (usable as logits: log-softmax leaves them unchanged).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        image_size: int | Sequence[int] = 84,
        fce: bool = False,
        fce_steps: int = 5,
        bn_mode: str = "running",
        bn_impl: str = "torch",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.embedding = Conv4(
            in_channels=in_channels, n_classes=None, width=width, image_size=image_size,
            bn_mode=bn_mode, bn_impl=bn_impl, mean=mean, std=std,
        )
        d = self.embedding.feature_dim
        self.fce = fce
        self.fce_steps = fce_steps
        if fce:
            self.support_lstm = nn.LSTM(d, d, batch_first=True, bidirectional=True)
            self.query_cell = nn.LSTMCell(d, d)

    def features(self, x: Tensor) -> Tensor:
        """Embedding without context, (B, C, H, W) -> (B, D)."""
        out: Tensor = self.embedding(x)
        return out

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int | None = None) -> Tensor:
        n_way = int(support_y.max()) + 1 if n_way is None else n_way
        # One pass over support and query: in batch-statistics mode both share the episode's stats.
        z = self.embedding(torch.cat([support_x, query_x]))
        g, f = z[: support_x.shape[0]], z[support_x.shape[0]:]
        if self.fce:
            g = self._context_support(g)
            f = self._context_query(f, g)
        att = F.softmax(F.normalize(f, dim=-1) @ F.normalize(g, dim=-1).T, dim=-1)
        probs = att @ F.one_hot(support_y, n_way).to(att.dtype)
        return torch.log(probs.clamp_min(1e-12))

    def _context_support(self, g: Tensor) -> Tensor:
        out, _ = self.support_lstm(g.unsqueeze(0))
        d = g.shape[-1]
        result: Tensor = g + out[0, :, :d] + out[0, :, d:]
        return result

    def _context_query(self, f: Tensor, g: Tensor) -> Tensor:
        h, c = f, torch.zeros_like(f)
        r = torch.zeros_like(f)
        for _ in range(self.fce_steps):
            h_hat, c = self.query_cell(f, (h + r, c))
            h = h_hat + f
            r = F.softmax(h @ g.T, dim=-1) @ g
        return h


@MODELS.register("matching")
def matching(**kwargs: object) -> MatchingNet:
    """Matching Networks; keyword arguments of :class:`MatchingNet`."""
    return MatchingNet(**kwargs)  # type: ignore[arg-type]
