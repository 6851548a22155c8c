"""Transfer attack: any registered attack computed on a fixed surrogate, applied to the target.

References:
    ADML (Yin et al., 2018): FGSM images from a fixed pretrained surrogate, placed in the
    support and/or query of the learner under test (docs/protocols.md#the-adml-tables).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import attack_info, get_attack, register_attack
from advmeta.eps import Eps
from advmeta.errors import ConfigError


@register_attack("transfer", stochastic=True, requires=("surrogate_fn",), gradient_free=True)
def transfer(
    model_fn: ModelFn | None,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    surrogate_fn: ModelFn | None = None,
    attack: str = "fgsm",
    generator: Gen = None,
    **attack_kwargs: Any,
) -> Tensor:
    """``get_attack(attack)(surrogate_fn, x, y, eps=eps, **attack_kwargs)``; ``model_fn`` (the
    attacked learner) is never queried — the images depend on the surrogate alone.

    Args:
        surrogate_fn: logits function of the fixed surrogate, (..., C, H, W) -> (..., K);
            wrap a per-sample network with :func:`advmeta.attacks.flatten_tasks` for (T, B, …) x.
        attack: name of the attack run on the surrogate (default ``"fgsm"``, as ADML).
        attack_kwargs: further arguments of that attack (steps, step_size, norm, loss, …).
    """
    if surrogate_fn is None:
        raise ConfigError("the transfer attack needs surrogate_fn, the fixed surrogate's logits function")
    if attack.lower() == "transfer":
        raise ConfigError("transfer cannot wrap itself; name the attack run on the surrogate")
    inner = get_attack(attack)
    if attack_info(attack).stochastic:
        attack_kwargs["generator"] = generator
    return inner(surrogate_fn, x, y, eps=eps, **attack_kwargs)
