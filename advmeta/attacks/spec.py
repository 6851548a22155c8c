"""A named attack with its settings, as learners and the evaluator use it.

The attack functions live beside it in :mod:`advmeta.attacks`; this only binds a name, ε and settings
so that a learner's hyper-parameters or an evaluation protocol can describe an attack, run it
on a logits callable, and record it (``attack_params`` JSON of the result rows).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import get_attack
from advmeta.eps import Eps, format_eps, parse_eps


def auto_step_size(eps: float) -> str:
    """The test step size that follows ε: max(2/255, ε/4), as ``k/255``.

    2/255 at the papers' ε (AQ's PGD-20 at 8/255, R-MAML's PGD-10 at 2/255) and ε/4 above
    8/255 (AQ's Omniglot setting: steps of 4/255 at 16/255), so that the iterative attacks
    reach the boundary of a large ε-ball within their steps [choice].
    """
    return format_eps(max(2.0 / 255.0, eps / 4.0))


@dataclass(frozen=True)
class AttackSpec:
    """An attack of :mod:`advmeta.attacks` with its budget and settings.

    Args:
        name: registered attack name (``pgd``, ``fgsm-rs``, ``mifgsm``, ``cw-linf``, ``apgd-ce``, …).
        eps: ε (``"8/255"`` or a float on the [0, 1] scale).
        params: further keyword settings (``steps``, ``step_size``, ``random_start``, ``norm``, ``loss``…);
            settings the attack does not accept are dropped (and not recorded).
    """

    name: str
    eps: Eps
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def eps_float(self) -> float:
        return parse_eps(self.eps)

    @property
    def eps_str(self) -> str:
        return format_eps(self.eps)

    def _fn(self) -> Callable[..., Tensor]:
        return get_attack(self.name)

    def accepted(self) -> dict[str, Any]:
        """The settings the attack function accepts (what is run and recorded).

        A ``step_size`` of ``"auto"`` becomes :func:`auto_step_size` of ε, so the recorded
        settings name the step that ran.
        """
        sig = inspect.signature(self._fn())
        params = dict(self.params)
        if params.get("step_size") == "auto":
            params["step_size"] = auto_step_size(self.eps_float)
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return params
        return {k: v for k, v in params.items() if k in sig.parameters}

    def params_json(self) -> str:
        """JSON of the settings, ε excluded (it has its own columns)."""
        return json.dumps({k: (format_eps(v) if k == "step_size" and isinstance(v, (int, float)) else v)
                           for k, v in self.accepted().items()}, sort_keys=True, default=str)

    def __call__(self, model_fn: ModelFn, x: Tensor, y: Tensor, generator: Gen = None) -> Tensor:
        """The adversarial version of ``x`` (detached). Shape: x (..., C, H, W), y (...)."""
        if self.eps_float == 0.0 or self.name == "none":
            return x.detach()
        fn = self._fn()
        kwargs = self.accepted()
        if "generator" in inspect.signature(fn).parameters:
            kwargs["generator"] = generator
        with torch.enable_grad():
            return fn(model_fn, x.detach(), y, eps=self.eps, **kwargs).detach()
