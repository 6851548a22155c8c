"""Meta-learners: MAML and its adversarial variants, ProtoNet, Matching and Relation Networks.

Each learner is one module registering a :class:`~advmeta.learners._base.Learner` subclass with a
frozen hyper-parameter dataclass ``Config``::

    from advmeta.learners import get_learner
    cls = get_learner("tafl"); cfg = cls.Config(gamma=2.0, k=1.0)
"""

from __future__ import annotations

from advmeta.attacks import AttackSpec, ModelFn
from advmeta.learners._base import Learner
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import LEARNERS, config_dict, get_learner, hp, hparams, learner_names, register_learner

__all__ = [
    "LEARNERS",
    "AttackSpec",
    "Learner",
    "MAMLBase",
    "MAMLConfig",
    "ModelFn",
    "config_dict",
    "get_learner",
    "hp",
    "hparams",
    "learner_names",
    "register_learner",
]
