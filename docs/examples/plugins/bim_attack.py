"""An attack of one's own: BIM, the basic iterative method (Kurakin, Goodfellow & Bengio, 2017).

``steps`` signed-gradient steps of ε/steps each from the clean image (no random start), every
step projected onto the ε-ball and clipped to [0, 1]. It composes the validated PGD loop of
:mod:`advmeta.attacks`, so it meets the attack contract (bound, range, ε = 0, input untouched,
bad arguments refused) the way the built-in attacks do.

Use: ``ADVMETA_PLUGINS=docs/examples/plugins/bim_attack.py advmeta tune maml --attacks pgd,bim``.
"""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks import ModelFn, pgd_attack, register_attack
from advmeta.eps import Eps, parse_eps


# iterative: a budget's attack_steps sets ``steps``; test_params: what it runs with at meta-test.
@register_attack("bim", iterative=True, test_params=(("steps", 10),))
def bim(model_fn: ModelFn, x: Tensor, y: Tensor | None, *, eps: Eps, steps: int = 10, norm: str = "linf",
        loss: str = "ce", generator: object = None) -> Tensor:
    """BIM: ``steps`` steps of ε/steps from x.

    Args:
        model_fn: logits function, (..., C, H, W) -> (..., K).
        x: clean images in [0, 1]; never modified.
        y: labels (...).
        eps: budget, ``"8/255"`` or a float.
        steps: number of steps (>= 1).
        norm: ``"linf"`` or ``"l2"``.
        loss: the objective (``"ce"``, ``"margin"``, …).
        generator: unused (BIM draws no random numbers).

    Shape:
        x (..., C, H, W), y (...) -> (..., C, H, W).
    """
    e = parse_eps(eps)
    return pgd_attack(model_fn, x, y, eps=e, steps=steps, step_size=e / max(int(steps), 1) if e > 0 else None,
                      norm=norm, loss=loss, random_start=False, generator=None)
