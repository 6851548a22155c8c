"""Adversarial attacks as functions of a logits callable.

Every attack has the form ``attack(model_fn, x, y, *, eps, ..., generator=None) -> x_adv``:
``model_fn`` maps images (..., C, H, W) to logits (..., K), so the same attack runs on a
module, on adapted fast weights (``lambda x: functional_call(net, fast, (x,))``), on a whole
episode (ProtoNet's prototype head) or on a batch of tasks (x of shape (T, B, C, H, W) with
:func:`task_model_fn` or :func:`per_task`). Outputs are detached, in [0, 1], within ε of x
(for bounded attacks); x is never modified; ε = 0 returns a copy of x.

Randomness: a single ``torch.Generator`` makes an attack deterministic. To make a (T, B, …)
call equal per-task calls, pass ``generator=task_generators(seed, T)`` (one generator per task;
task t's noise comes from its own generator) and attack task t alone with
``generator=task_generator(seed, t)``.

Example::

    adv = get_attack("pgd")(model_fn, x, y, eps="8/255", steps=20, step_size="2/255")

An attack of one's own composes :func:`pgd_attack` (the validated PGD loop every signed-gradient
attack here is built on) and registers with :func:`register_attack` (docs/plugins.md).
"""

from __future__ import annotations

from advmeta.attacks._core import ModelFn, Norm
from advmeta.attacks._losses import cross_entropy, kl_to_clean
from advmeta.attacks._registry import ATTACKS, AttackInfo, attack_info, attack_names, get_attack, register_attack
from advmeta.attacks._tasks import flatten_tasks, per_task, task_generator, task_generators, task_model_fn
from advmeta.attacks.pgd import pgd_attack
from advmeta.attacks.spec import AttackSpec, auto_step_size, configured, settings_of

__all__ = [
    "ATTACKS",
    "AttackInfo",
    "AttackSpec",
    "ModelFn",
    "Norm",
    "attack_info",
    "attack_names",
    "auto_step_size",
    "configured",
    "cross_entropy",
    "flatten_tasks",
    "get_attack",
    "kl_to_clean",
    "per_task",
    "pgd_attack",
    "register_attack",
    "settings_of",
    "task_generator",
    "task_generators",
    "task_model_fn",
]
