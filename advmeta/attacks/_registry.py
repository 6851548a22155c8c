"""The attack registry and each attack's metadata.

An attack is a function ``attack(model_fn, x, y, *, eps, ..., generator=None) -> x_adv``
registered with :func:`register_attack`, which also records what the contract tests and the
evaluation code need to know about it (:class:`AttackInfo`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from advmeta.registry import Registry

Attack = Callable[..., Tensor]
ATTACKS: Registry[Attack] = Registry("attack", "advmeta.attacks")


@dataclass(frozen=True)
class AttackInfo:
    """What an attack guarantees and needs.

    Attributes:
        name: registered name.
        norms: values its ``norm`` argument accepts; the first is the default.
        bounded: ``‖x_adv − x‖_norm ≤ eps`` holds for every ``eps`` it is given and the
            budget is mandatory. ``False`` for C&W-ℓ2, a minimal-perturbation attack whose
            ``eps`` is an optional ℓ2 cap (unbounded by default).
        stochastic: draws random numbers (from ``generator``).
        min_classes: fewest classes the attack works with (DLR needs 3).
        identity: returns its input unchanged (``none``): no attack strength to check.
        requires: keyword arguments the caller must supply besides model_fn, x, y, eps
            (``transfer`` needs ``surrogate_fn``).
        skips_misclassified: returns the inputs the model already misclassifies unchanged
            (``autoattack``, as AutoAttack does: they need no perturbation).
        gradient_free: its result is not white-box gradient evidence — it never reads the
            model's gradient (``none``, ``square``; ``transfer`` reads a surrogate's) or only in
            part (``autoattack`` ends with Square). The masking checks compare the black box
            against the others.
        iterative: its strength is a number of ``steps`` (a budget's ``attack_steps`` sets it).
        test_params: its settings at meta-test unless an evaluation overrides them (the papers':
            PGD-20 with step max(2/255, ε/4), MI-FGSM 10 steps, C&W and APGD 100 iterations,
            Square 1000 queries; docs/attacks.md#at-meta-test), as ``(name, value)`` pairs.
    """

    name: str
    norms: tuple[str, ...] = ("linf", "l2")
    bounded: bool = True
    stochastic: bool = False
    min_classes: int = 2
    identity: bool = False
    requires: tuple[str, ...] = ()
    skips_misclassified: bool = False
    gradient_free: bool = False
    iterative: bool = False
    test_params: tuple[tuple[str, Any], ...] = ()


def register_attack(name: str, **info: Any) -> Callable[[Attack], Attack]:
    """Decorator registering an attack under ``name`` with :class:`AttackInfo` fields ``info``."""

    def deco(fn: Attack) -> Attack:
        fn.info = AttackInfo(name=name, **info)  # type: ignore[attr-defined]
        return ATTACKS.register(name)(fn)

    return deco


def get_attack(name: str) -> Attack:
    """The attack registered as ``name``; :class:`ConfigError` listing the known ones if none."""
    return ATTACKS.get(name)


def attack_names() -> list[str]:
    """Sorted names of every registered attack."""
    return ATTACKS.names()


def attack_info(name: str) -> AttackInfo:
    """The :class:`AttackInfo` of attack ``name``."""
    return ATTACKS.get(name).info  # type: ignore[attr-defined,no-any-return]
