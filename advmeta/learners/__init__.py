"""Meta-learners: MAML and its adversarial variants, ProtoNet, Matching and Relation Networks.

Each learner is one module registering a :class:`Learner` subclass with a frozen hyper-parameter
dataclass ``Config`` (a file of one's own does the same through ``ADVMETA_PLUGINS``: docs/plugins.md)::

    from advmeta.learners import get_learner
    cls = get_learner("tafl"); cfg = cls.Config(gamma=2.0, k=1.0)
"""

from __future__ import annotations

from advmeta.attacks import AttackSpec, ModelFn
from advmeta.learners._base import Learner, accuracy
from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import LEARNERS, get_learner, hp, hparams, learner_names, register_learner
from advmeta.learners.inner_loop import Params, ce, forward, inner_loop

# What a learner of one's own needs (docs/plugins.md): the base classes and their config, the
# field declaration, the registry, and the loss, accuracy and functional helpers the built-in
# learners use (``ce``: mean cross-entropy over any leading task/batch dimensions).
__all__ = [
    "LEARNERS",
    "AttackSpec",
    "Learner",
    "MAMLBase",
    "MAMLConfig",
    "ModelFn",
    "Params",
    "accuracy",
    "ce",
    "forward",
    "get_learner",
    "hp",
    "hparams",
    "inner_loop",
    "learner_names",
    "register_learner",
]
