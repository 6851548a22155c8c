"""MAML, first and second order (docs/methods.md#maml)."""

from __future__ import annotations

from advmeta.learners._maml import MAMLBase, MAMLConfig
from advmeta.learners._registry import register_learner


@register_learner("maml")
class MAML(MAMLBase):
    """MAML (Finn et al., ICML 2017): clean inner loop, clean query meta-loss, Adam meta-update.

    ``first_order=True`` is FOMAML, which is what the public AQ and R-MAML code ran.
    """

    Config = MAMLConfig
