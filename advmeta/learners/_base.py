"""The learner protocol shared by every meta-learner.

A learner owns its hyper-parameters (``Config``), the network it trains, and three operations:
``meta_loss`` (the training objective of a meta-batch), ``update`` (one meta-update with the
optimisers of :meth:`optimizers`) and ``adapted`` (meta-test: one logits function per fine-tune
step, which the evaluator attacks and scores).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from advmeta.errors import NonFiniteLossError
from advmeta.attacks import ModelFn
from advmeta.protocol import Bank

if TYPE_CHECKING:
    from advmeta.data import Episodes

# A surrogate attack: (images (T, B, C, H, W), split-level labels (T, B) or None, ε) -> images.
SurrogateFn = Callable[[Tensor, Tensor | None, float], Tensor]


class Learner:
    """Base class of the meta-learners.

    Args:
        config: the learner's ``Config`` instance (its hyper-parameters).
        net: the network (built by the trainer from the backbone and :meth:`wrap_model`).
        vectorize: run the tasks of a meta-batch with ``torch.func.vmap`` instead of a loop.
        surrogate: the fixed surrogate's FGSM, for learners that train on surrogate images.
        bank: precomputed (clean, surrogate-adversarial) training episodes by episode index
            and ε (:data:`advmeta.protocol.Bank`); when set, those learners read their
            adversarial images from it instead of calling ``surrogate``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    maml_family: ClassVar[bool] = False
    needs_surrogate: ClassVar[bool] = False
    # The meta-loss is the mean over tasks of independent per-task losses, so the loop path may
    # back-propagate task by task (less memory, docs/performance.md#loop-or-vmap); False where tasks interact (TAFL).
    task_separable: ClassVar[bool] = True
    default_backbone: ClassVar[str] = "conv4"

    def __init__(self, config: Any, net: nn.Module, *, vectorize: bool = False,
                 surrogate: SurrogateFn | None = None, bank: Bank | None = None) -> None:
        self.cfg = config
        self.net = net
        self.vectorize = vectorize
        self.surrogate = surrogate
        self.bank = bank
        if vectorize and self.maml_family and not getattr(config, "first_order", False):
            _exact_batch_norm_under_vmap(net)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def model_kwargs(cls, config: Any) -> dict[str, Any]:
        """Extra keyword arguments of ``build_model`` that the hyper-parameters set (e.g. FCE)."""
        return {}

    @classmethod
    def wrap_model(cls, config: Any, backbone: nn.Module) -> nn.Module:
        """The trained network around the backbone (e.g. ProtoNet's learnable scale)."""
        return backbone

    def train_shots(self, k_shot: int, q_query: int, n_unlabeled: int) -> tuple[int, int, int]:
        """Shots, queries and unlabeled images per class of a training episode."""
        return k_shot, q_query, n_unlabeled

    def optimizers(self, meta_lr: float) -> list[torch.optim.Optimizer]:
        """The meta-optimisers (Adam on every parameter)."""
        return [torch.optim.Adam(self.net.parameters(), lr=meta_lr)]

    # -- facts recorded in result rows ----------------------------------------------------------
    @property
    def first_order(self) -> bool | None:
        return getattr(self.cfg, "first_order", None)

    @property
    def train_eps(self) -> float:
        from advmeta.eps import parse_eps

        return parse_eps(getattr(self.cfg, "train_eps", 0.0))

    @property
    def test_steps(self) -> int:
        """Fine-tune steps at meta-test (0 for learners without fine-tuning)."""
        return int(getattr(self.cfg, "test_inner_steps", 0))

    # -- training -------------------------------------------------------------------------------
    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """The meta-training loss of a batch of episodes and statistics to log."""
        raise NotImplementedError

    def update(self, optimizers: list[torch.optim.Optimizer], episodes: Episodes,
               generator: torch.Generator | None = None) -> dict[str, float]:
        """One meta-update; raises NonFiniteLossError instead of stepping on a NaN/inf loss.

        On the loop path of a task-separable learner each task's loss is back-propagated as soon
        as it is computed (the same gradient as one backward of the mean, less memory).
        """
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        n = len(episodes)
        if self.task_separable and not self.vectorize and n > 1:
            total, per_task = 0.0, []
            for t in range(n):
                loss, stats = self.meta_loss(episodes.task(t), generator)
                check_finite(loss)
                (loss / n).backward()
                total += float(loss.detach()) / n
                per_task.append(stats)
            stats = {k: sum(s[k] for s in per_task) / n for k in per_task[0]}
            loss_value = total
        else:
            loss, stats = self.meta_loss(episodes, generator)
            check_finite(loss)
            loss.backward()
            loss_value = float(loss.detach())
        for opt in optimizers:
            opt.step()
        return {"loss": loss_value, **stats}

    # -- meta-test ------------------------------------------------------------------------------
    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        """Logits functions of the query after 0..``steps`` fine-tune steps on the support.

        Shape:
            support_x: (T, N*K, C, H, W); support_y: (T, N*K); each returned function maps
            (T, B, C, H, W) → (T, B, N). Learners without fine-tuning return one function.
        """
        raise NotImplementedError

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        """``(support_x, query_x) → query logits`` after ``steps`` fine-tune steps on the support,
        differentiable in both images — through the fine-tuning (MAML family), the prototypes or
        the episode head (metric learners). What an attack on the support differentiates; the
        weights θ are constants of it.

        Shape:
            support_x: (T, N*K, C, H, W); query_x: (T, B, C, H, W) → (T, B, N).
        """
        raise NotImplementedError


def check_finite(loss: Tensor) -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"non-finite meta-training loss ({value}); lower the learning rates or ε")


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Accuracy in % over all queries."""
    return float((logits.argmax(-1) == y).float().mean() * 100)


def _exact_batch_norm_under_vmap(net: nn.Module) -> None:
    """Make second-order meta-gradients under ``vmap`` exact, loudly, or refuse.

    torch's built-in batch norm under ``torch.func.vmap`` gives second-order MAML meta-gradients
    about 2 % wrong (measured 2.0e-2 on gradients of 0.58; docs/performance.md#batch-norm-under-vmap). advmeta's
    :class:`~advmeta.models.layers.BatchNorm2d` computes the same function with either
    implementation, so its layers are switched to the exact one with a warning; a network with
    torch's own ``nn.BatchNorm*`` layers is refused (use the loop, or first order).

    Raises:
        ConfigError: the network has torch batch-norm modules.
    """
    import warnings

    from advmeta.errors import ConfigError
    from advmeta.models.layers import BatchNorm2d, BNImpl

    switched = 0
    for name, module in net.named_modules():
        if isinstance(module, BatchNorm2d) and module.impl is BNImpl.TORCH:
            module.impl = BNImpl.MANUAL
            switched += 1
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ConfigError(f"second-order MAML under vmap with torch's batch norm ({name or 'the network'}: "
                              f"{type(module).__name__}) gives wrong meta-gradients; use vectorize loop, "
                              "first_order, or advmeta.models.layers.BatchNorm2d")
    if switched:
        warnings.warn(f"vmap with second-order meta-gradients: {switched} batch-norm layer(s) switched from "
                      "bn_impl 'torch' to the exact 'manual' implementation (the same function; torch's is "
                      "~2 % wrong under vmap)", UserWarning, stacklevel=3)

