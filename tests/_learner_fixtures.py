"""Tiny float64 models and episodes for the learner tests (no data, no real backbone)."""

from __future__ import annotations

import torch
from torch import nn

from advmeta.data import Episodes


class TinyNet(nn.Module):
    """conv 3×3 → tanh → mean-pool → linear: smooth, so second derivatives are non-trivial."""

    def __init__(self, n_classes: int = 3, channels: int = 1, hidden: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)
        self.head = nn.Linear(hidden * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.tanh(self.conv(x))
        z = nn.functional.adaptive_avg_pool2d(z, 2).flatten(1)
        return self.head(z)


class TinyEmbed(nn.Module):
    """An embedding (for ProtoNet)."""

    def __init__(self, channels: int = 1, hidden: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1)


def episodes(t: int = 3, n: int = 3, k: int = 2, q: int = 2, size: int = 6, seed: int = 0,
             dtype: torch.dtype = torch.float64) -> Episodes:
    g = torch.Generator().manual_seed(seed)

    def labels(per: int) -> torch.Tensor:
        return torch.arange(n).repeat_interleave(per).repeat(t, 1)

    return Episodes(
        support_x=torch.rand(t, n * k, 1, size, size, generator=g, dtype=dtype),
        support_y=labels(k),
        query_x=torch.rand(t, n * q, 1, size, size, generator=g, dtype=dtype),
        query_y=labels(q),
        classes=torch.stack([torch.randperm(10, generator=g)[:n] for _ in range(t)]),
        index=torch.arange(t),
        unlabeled_x=None,
    )


def make(name: str, net: nn.Module | None = None, vectorize: bool = False, surrogate=None, **hp):  # noqa: ANN001, ANN201
    from advmeta.learners import get_learner

    cls = get_learner(name)
    cfg = cls.Config(**hp)
    if net is None:
        torch.manual_seed(0)
        net = TinyNet() if cls.maml_family else TinyEmbed()
        net = cls.wrap_model(cfg, net)
    return cls(cfg, net.double(), vectorize=vectorize, surrogate=surrogate)


def fake_surrogate(x: torch.Tensor, labels: torch.Tensor | None, eps: float) -> torch.Tensor:
    """A deterministic stand-in for the surrogate FGSM: a fixed sign pattern of size ε."""
    pattern = torch.sign(torch.sin(torch.arange(x[0, 0].numel(), dtype=x.dtype) * 1.7)).view_as(x[0, 0])
    return (x + eps * pattern).clamp(0, 1)
