"""The shared MAML machinery: every MAML-family learner adapts and scores through this class.

Adversarial variants only override :meth:`MAMLBase.outer_loss` (what the adapted weights are
scored on) or add a step around :meth:`MAMLBase.adapt`; there is one inner loop
(:func:`advmeta.learners.inner_loop.inner_loop`), run per task or vectorised over tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from advmeta.attacks import AttackSpec, ModelFn
from advmeta.learners._base import Learner, accuracy
from advmeta.learners._registry import hp, hparams
from advmeta.learners.inner_loop import Params, ce, forward, head_names, inner_loop, map_tasks

if TYPE_CHECKING:
    from advmeta.data import Episodes


@hparams
class MAMLConfig:
    """MAML's hyper-parameters (docs/methods.md#maml)."""

    inner_lr: float = hp(0.01, "inner SGD learning rate α (paper: 0.01; 0.4 on Omniglot)", low=1e-3, high=1.0, log=True)
    inner_steps: int = hp(5, "inner steps at meta-training", low=1, high=10)
    test_inner_steps: int = hp(10, "fine-tune steps at meta-test", low=1, high=20)
    first_order: bool = hp(False, "drop second derivatives (FOMAML); MAML's definition is second order",
                           choices=(False, True))

    # The defaults above are mini-ImageNet's (docs/methods.md#maml). On Omniglot the MAML paper adapts with one
    # inner step of α = 0.4 and fine-tunes three steps at test (docs/methods.md#maml). At α = 0.4 the
    # meta-gradient is second order (MAML's definition) for every MAML-family learner [choice]: first
    # order drops a large Hessian term there, and the adversarially trained learners then stop learning
    # clean accuracy (measured, AQ at 32/255, 600 iterations: 48 % clean first order, 87.8 % second
    # order). Subclasses add theirs; the sweeps apply them under the grid's and the user's own values.
    DATASET_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "omniglot": {"inner_lr": 0.4, "inner_steps": 1, "test_inner_steps": 3, "first_order": False}}


class MAMLBase(Learner):
    """MAML: inner SGD on the clean support, meta-loss = CE on the clean query at θ′.

    References:
        Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
        Networks", ICML 2017. The functional form follows the torch.func MAML example.
    """

    maml_family = True

    # -- parameters ------------------------------------------------------------------------------
    def params(self) -> Params:
        return dict(self.net.named_parameters())

    def buffers(self) -> Params:
        return dict(self.net.named_buffers())

    def _support_loss(self, buffers: Params, x: Tensor, y: Tensor) -> Callable[[Params], Tensor]:
        return lambda p: ce(forward(self.net, p, buffers, x), y)

    # -- the shared inner loop ---------------------------------------------------------------------
    def adapt(self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None,
              lr: float | None = None, first_order: bool | None = None, batched_start: bool = False,
              keep_all: bool = False, trainable: Sequence[str] | None = None) -> Any:
        """Fast weights of every task after ``steps`` inner steps.

        Args:
            params: θ (shared by the tasks) or, with ``batched_start``, per-task fast weights (T, ...).
            support_x: (T, N*K, C, H, W) images to adapt on; support_y: (T, N*K).
            steps, lr, first_order: default to the config's training values.
            keep_all: return the list of fast weights after each step (index 0 = start).
            trainable: adapted parameter names (all when None).

        Returns:
            A dict of (T, ...) tensors (or a list of them with ``keep_all``).
        """
        cfg = self.cfg
        steps = cfg.inner_steps if steps is None else steps
        lr = cfg.inner_lr if lr is None else lr
        fo = cfg.first_order if first_order is None else first_order
        buffers = self.buffers()

        def task(p: Params, x: Tensor, y: Tensor) -> Any:
            return inner_loop(self._support_loss(buffers, x, y), p, steps, lr, fo, trainable=trainable,
                              functional=self.vectorize, keep_all=keep_all)

        if batched_start:
            return map_tasks(task, (params, support_x, support_y), vectorize=self.vectorize)
        return map_tasks(task, (support_x, support_y), shared=(params,), vectorize=self.vectorize)

    def logits(self, fast: Params, x: Tensor, *, shared: bool = False) -> Tensor:
        """Per-task logits at per-task weights ``fast`` (or at shared weights θ with ``shared``).

        Shape:
            x: (T, B, C, H, W) → (T, B, N).
        """
        buffers = self.buffers()

        def task(p: Params, xt: Tensor) -> Tensor:
            return forward(self.net, p, buffers, xt)

        if shared:
            out: Tensor = map_tasks(task, (x,), shared=(fast,), vectorize=self.vectorize)
            return out
        result: Tensor = map_tasks(task, (fast, x), vectorize=self.vectorize)
        return result

    def logits_fn(self, fast: Params, *, shared: bool = False) -> ModelFn:
        """A logits callable at the given weights, detached: attacks never reach θ through it."""
        frozen = {k: v.detach() for k, v in fast.items()}

        def fn(x: Tensor) -> Tensor:
            return self.logits(frozen, x, shared=shared)

        def one(t: int, xt: Tensor) -> Tensor:
            # Task t alone (what map_tasks computes for it): an attack that works task by task
            # (autoattack, the gradient helper) then costs one task's forward, not T tasks'.
            return forward(self.net, frozen if shared else {k: v[t] for k, v in frozen.items()}, self.buffers(), xt)

        fn.task_fn = one  # type: ignore[attr-defined]
        return fn

    def attack(self, spec: AttackSpec, fast: Params, x: Tensor, y: Tensor,
               generator: torch.Generator | None, *, shared: bool = False) -> Tensor:
        """``x`` attacked at the given weights; a constant for the outer update."""
        return spec(self.logits_fn(fast, shared=shared), x, y, generator)

    # -- training ------------------------------------------------------------------------------------
    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        fast = self.adapt(self.params(), episodes.support_x, episodes.support_y)
        return self.outer_loss(fast, episodes, generator)

    def outer_loss(self, fast: Params, episodes: Episodes, generator: torch.Generator | None) -> tuple[Tensor, dict[str, float]]:
        """The meta-loss given the adapted weights: CE on the clean query."""
        out = self.logits(fast, episodes.query_x)
        return ce(out, episodes.query_y), {"acc": accuracy(out, episodes.query_y)}

    # -- meta-test -------------------------------------------------------------------------------------
    def eval_trainable(self) -> list[str] | None:
        """Parameters fine-tuned at meta-test: the head only with ``light_finetune``, else all."""
        return head_names(self.net) if getattr(self.cfg, "light_finetune", False) else None

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        theta = {k: v.detach().requires_grad_(True) for k, v in self.params().items()}
        with torch.enable_grad():
            traj = self.adapt(theta, support_x, support_y, steps=steps, first_order=True, keep_all=True,
                              trainable=self.eval_trainable())
        fns: list[ModelFn] = [self.logits_fn(theta, shared=True)]
        fns += [self.logits_fn(f) for f in traj[1:]]
        return fns

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        theta = {k: v.detach().requires_grad_(True) for k, v in self.params().items()}
        trainable = self.eval_trainable()

        def fn(support_x: Tensor, query_x: Tensor) -> Tensor:
            if steps == 0:
                return self.logits(theta, query_x, shared=True)
            with torch.enable_grad():
                # Second order: the fine-tuned weights are a function of the support images.
                fast = self.adapt(theta, support_x, support_y, steps=steps, first_order=False, trainable=trainable)
                return self.logits(fast, query_x)

        return fn
