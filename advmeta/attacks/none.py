"""The null attack: returns a copy of the clean input (clean evaluation through the same path)."""

from __future__ import annotations

from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn, check_inputs, parse_norm
from advmeta.attacks._registry import register_attack
from advmeta.eps import Eps, parse_eps


@register_attack("none", identity=True, gradient_free=True)
def none(
    model_fn: ModelFn, x: Tensor, y: Tensor | None, *, eps: Eps = 0.0, norm: str = "linf", generator: Gen = None
) -> Tensor:
    """``x`` detached and cloned; ``eps`` and ``norm`` are validated and otherwise ignored."""
    parse_eps(eps)
    parse_norm(norm)
    check_inputs(x, y)
    return x.detach().clone()
