"""A plain PyTorch few-shot model, as a user would bring one to `advmeta evaluate`.

It imports nothing from advmeta (a test checks that): factories return modules that take images
in [0, 1], shape (N, 1, 28, 28). Some factories are broken on purpose, for the bad-input tests.
"""

from __future__ import annotations

import torch
from torch import nn


def features() -> nn.Module:
    """A small conv feature extractor (ProtoNet-style): (N, 1, 28, 28) -> (N, 16 * 7 * 7)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten())


def logits3() -> nn.Module:
    """The features and a 3-way linear head (MAML-style, fine-tuned on each episode's support)."""
    return nn.Sequential(features(), nn.Linear(16 * 7 * 7, 3))


class EpisodeNet(nn.Module):
    """Classifies an episode itself: forward(support_x, support_y, query_x) -> query logits."""

    def __init__(self) -> None:
        super().__init__()
        self.f = features()

    def forward(self, support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        fs, fq = self.f(support_x), self.f(query_x)
        protos = torch.stack([fs[support_y == c].mean(0) for c in range(int(support_y.max()) + 1)])
        return -((fq[:, None, :] - protos[None]) ** 2).sum(-1)


def episode() -> nn.Module:
    return EpisodeNet()


class _Scalar(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum()


def wrong_shape() -> nn.Module:
    """Returns one number for a batch."""
    return _Scalar()


class _NaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(28 * 28, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)) * float("nan")


def nan_logits() -> nn.Module:
    """Returns NaN logits."""
    return _NaN()


def not_a_module() -> object:
    """Returns something else than a module."""
    return {"weights": 1}


def raises() -> nn.Module:
    """Fails when called."""
    raise RuntimeError("no GPU here")
