"""AQ-L2L — Adversarial Querying with a learned attacker generating the query perturbation.

Our extension joining docs/methods.md#aq and docs/methods.md#l2l: AQ-MAML whose query attack is not PGD but an
attacker network g_φ (L2L's naive, gradient or 2-step form), trained alternately with the
meta-learner — each meta-update is followed by one Adam step of g_φ maximising the same loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from advmeta.eps import Eps, parse_eps
from advmeta.learners._base import accuracy
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import hp, hparams, register_learner
from advmeta.learners.inner_loop import Params, ce

if TYPE_CHECKING:
    from advmeta.data import Episodes

ATTACKER_PREFIX = "attacker."


@hparams
class AQL2LConfig(MAMLConfig):
    """AQ-L2L's hyper-parameters: MAML's plus the learned query attacker's."""

    first_order: bool = hp(True, "drop second derivatives, as AQ's public code", choices=(False, True))
    train_eps: Eps = hp("8/255", "ℓ∞ budget of the learned query perturbation (AQ: 8/255)")
    l2l_method: str = hp("grad-l2l", "form of g_φ's input: naive-l2l, grad-l2l or 2step-l2l",
                         choices=("naive-l2l", "grad-l2l", "2step-l2l"))
    attacker_kind: str = hp("slim", "attacker network: wide (the L2L paper's) or slim [choice: cheaper]",
                            choices=("wide", "slim"))
    attacker_lr: float = hp(1e-3, "Adam learning rate of g_φ (L2L: 1e-3)", low=1e-5, high=1e-2, log=True)


class WithAttacker(nn.Module):
    """The meta-learned backbone and the attacker in one module (so checkpoints hold both).

    ``forward`` is the backbone's; the attacker is reached as ``.attacker``.
    """

    def __init__(self, backbone: nn.Module, attacker: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.attacker = attacker

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.backbone(x)
        return out


def _image_channels(backbone: nn.Module) -> int:
    first = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


@register_learner("aq-l2l")
class AQL2L(MAMLBase):
    """MAML scored on the query perturbed by g_φ at the adapted weights; g_φ trained to maximise it.

    One update per meta-batch:

    1. θ′ ← inner loop on the clean support (as AQ);
    2. δ ← g_φ(query [, ∇ CE at θ′ normalised per task]), ‖δ‖∞ ≤ ε, query + δ ∈ [0, 1];
    3. meta step on CE(f_θ′(query + δ)) with δ a constant (θ only, Adam at ``meta_lr``);
    4. attacker step: Adam on φ *maximising* CE(f_θ′(query + δ)) at the same, detached θ′
       [choice: the pre-update θ′, so no second inner loop is needed]. Because θ′ is the
       pre-update one, both gradients come from one backward pass (see :meth:`meta_loss`).
       Batch norm runs in the learner's own mode (transductive batch statistics by default),
       as every attack on it does.

    References:
        Goldblum et al., NeurIPS 2020 (AQ); Jiang et al., "Learning to Defense by Learning to
        Attack", AISTATS 2021 (the attacker network and the alternating update).
    """

    Config = AQL2LConfig
    task_separable = False  # g_φ's batch norm sees every task's query together

    @classmethod
    def wrap_model(cls, config: Any, backbone: nn.Module) -> nn.Module:
        from advmeta.l2l.config import Method
        from advmeta.models import build_model

        attacker = build_model("l2l-attacker", kind=config.attacker_kind, eps=parse_eps(config.train_eps),
                               image_channels=_image_channels(backbone),
                               use_grad=Method(config.l2l_method).uses_gradient)
        return WithAttacker(backbone, attacker)

    def _attacker(self) -> nn.Module:
        """g_φ: the ``attacker`` of the :class:`WithAttacker` net built by :meth:`wrap_model`."""
        attacker = self.net.attacker
        assert isinstance(attacker, nn.Module), "the net is a WithAttacker, whose attacker is a module"
        return attacker

    def params(self) -> Params:
        """θ: the backbone's parameters only (the attacker is not meta-learned or adapted)."""
        return {k: v for k, v in self.net.named_parameters() if not k.startswith(ATTACKER_PREFIX)}

    def optimizers(self, meta_lr: float) -> list[torch.optim.Optimizer]:
        """Adam on θ (meta_lr), then Adam on φ (``attacker_lr``)."""
        return [torch.optim.Adam(list(self.params().values()), lr=meta_lr),
                torch.optim.Adam(self._attacker().parameters(), lr=self.cfg.attacker_lr)]

    def query_perturbation(self, fast: Params, episodes: Episodes) -> Tensor:
        """δ on every task's query at the adapted weights, differentiable through g_φ only.

        Shape:
            query_x (T, B, C, H, W) → δ of the same shape.
        """
        from advmeta.l2l.config import Method
        from advmeta.l2l.perturb import learned_perturbation

        attacker = self._attacker()
        attacker.train()
        return learned_perturbation(Method(self.cfg.l2l_method), attacker, self.logits_fn(fast),
                                    episodes.query_x, episodes.query_y, parse_eps(self.cfg.train_eps))

    def meta_loss(self, episodes: Episodes, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """Both halves' objectives in one scalar whose value is the meta-loss.

        ``L = CE(f_θ′(q + sg(δ))) − A + sg(A)`` with ``A = CE(f_{sg(θ′)}(q + δ))`` and sg the
        stop-gradient: θ receives exactly the AQ meta-gradient (δ a constant), φ receives −∇_φ A,
        so a descent step of φ's optimiser is the attacker's ascent step on the same loss at the
        same (detached) θ′. One backward pass thus computes both halves' gradients, and
        :meth:`Learner.update` (zero, backward, step each optimiser) is the alternating update.
        """
        y = episodes.query_y
        fast = self.adapt(self.params(), episodes.support_x, episodes.support_y)
        delta = self.query_perturbation(fast, episodes)
        out = self.logits(fast, episodes.query_x + delta.detach())
        loss = ce(out, y)
        frozen = {k: v.detach() for k, v in fast.items()}
        adv = ce(self.logits(frozen, episodes.query_x + delta), y)
        total = loss - adv + adv.detach()
        return total, {"acc_adv": accuracy(out, y), "attacker_loss": float(adv.detach())}
