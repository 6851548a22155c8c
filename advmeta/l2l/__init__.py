"""L2L: adversarial training against a learned attacker network, with its baselines (docs/methods.md#l2l).

Trainers (``L2LConfig.method``): ``plain`` (clean training), ``pgm`` (Madry PGD-10), ``naive-l2l``,
``grad-l2l`` and ``2step-l2l``, the last three with a ``wide`` or ``slim`` attacker g_φ::

    from advmeta.l2l import L2LConfig, train_l2l, evaluate_l2l, L2LEvalProtocol, blackbox_table
    ckpt, metrics = train_l2l(L2LConfig(method="grad-l2l", dataset="cifar10"), "runs/grad")
    rows = evaluate_l2l(ckpt, L2LEvalProtocol(seeds=(0, 1, 2, 3, 4)))

References:
    Jiang, Chen, Zhao & Wang, "Learning to Defense by Learning to Attack", AISTATS 2021.
"""

from __future__ import annotations

from advmeta.l2l.blackbox import blackbox_matrix, blackbox_table
from advmeta.l2l.config import ATTACKER_KINDS, METHOD_NAMES, L2LConfig, Method
from advmeta.l2l.data import L2LData, load_l2l_data
from advmeta.l2l.evaluate import L2LEvalProtocol, attack_spec, binomial_ci95, evaluate_l2l
from advmeta.l2l.networks import L2LCheckpoint, load_checkpoint
from advmeta.l2l.perturb import learned_perturbation, normalised_input_gradient, project
from advmeta.l2l.step import StepResult, alternating_step, attacker_step, make_perturbation
from advmeta.l2l.train import train_l2l

__all__ = [
    "ATTACKER_KINDS",
    "METHOD_NAMES",
    "L2LData",
    "L2LCheckpoint",
    "L2LConfig",
    "L2LEvalProtocol",
    "Method",
    "StepResult",
    "alternating_step",
    "attack_spec",
    "attacker_step",
    "binomial_ci95",
    "blackbox_matrix",
    "blackbox_table",
    "evaluate_l2l",
    "learned_perturbation",
    "load_checkpoint",
    "load_l2l_data",
    "make_perturbation",
    "normalised_input_gradient",
    "project",
    "train_l2l",
]
