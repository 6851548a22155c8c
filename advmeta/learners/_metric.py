"""Shared machinery of the metric learners (ProtoNet, Matching and Relation Networks).

Their networks map a whole episode, ``net(support_x, support_y, query_x) -> (Q, N)`` logits, so
an attack on the query goes through the whole episode (the prototypes or attention are
recomputed from the clean support at every attack step). There is no fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from advmeta.attacks import ModelFn
from advmeta.learners._base import Learner, accuracy
from advmeta.learners.inner_loop import ce

if TYPE_CHECKING:
    from advmeta.data import Episodes


class MetricBase(Learner):
    """A learner classifying the query from the support in one forward pass."""

    def episode_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Per-task logits. Shape: (T, S, C, H, W), (T, S), (T, B, C, H, W) → (T, B, N)."""
        n_way = int(support_y.max()) + 1
        return torch.stack([self.net(support_x[t], support_y[t], query_x[t], n_way)
                            for t in range(support_x.shape[0])])

    def task_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """The training loss of the query logits (cross-entropy)."""
        return ce(logits, y)

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        out = self.episode_logits(episodes.support_x, episodes.support_y, episodes.query_x)
        return self.task_loss(out, episodes.query_y), {"acc": accuracy(out, episodes.query_y)}

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        sx, sy = support_x.detach(), support_y
        n_way = int(sy.max()) + 1

        def fn(x: Tensor) -> Tensor:
            return self.episode_logits(sx, sy, x)

        # Task t alone: attacks that work task by task cost one task's forward, not T tasks'.
        fn.task_fn = lambda t, xt: self.net(sx[t], sy[t], xt, n_way)  # type: ignore[attr-defined]
        return [fn]

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda support_x, query_x: self.episode_logits(support_x, support_y, query_x)
