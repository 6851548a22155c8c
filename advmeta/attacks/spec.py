"""A named attack with its settings, as learners and the evaluator use it.

The attack functions live beside it in :mod:`advmeta.attacks`; this only binds a name, ε and settings
so that a learner's hyper-parameters or an evaluation protocol can describe an attack, run it
on a logits callable, and record it (``attack_params`` JSON of the result rows).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn
from advmeta.attacks._registry import get_attack
from advmeta.eps import Eps, Epsilon, format_eps, parse_eps
from advmeta.errors import ConfigError


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
        eps: ε (``"8/255"``, a float on the [0, 1] scale, or an :class:`~advmeta.eps.Epsilon`: it
            becomes one, which the attack function receives).
        params: further keyword settings (``steps``, ``step_size``, ``random_start``, ``norm``, ``loss``…),
            each one the attack takes: a setting it does not take is an error naming it, never
            silently dropped (a configured bundle of settings goes through :func:`configured`).

    Raises:
        ConfigError: an unknown attack, or a setting the attack does not take.
    """

    name: str
    eps: Eps
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", Epsilon(self.eps))  # parsed once; the attack gets this Epsilon
        if _takes_any(self.name):
            return
        known = settings_of(self.name)
        bad = sorted(set(self.params) - set(known))
        if bad:
            raise ConfigError(f"attack {self.name} does not take {', '.join(bad)}; its settings: "
                              f"{', '.join(known) or 'none'}")

    @property
    def eps_float(self) -> float:
        return cast(Epsilon, self.eps)

    @property
    def eps_str(self) -> str:
        return cast(Epsilon, self.eps).text

    def _fn(self) -> Callable[..., Tensor]:
        return get_attack(self.name)

    def accepted(self) -> dict[str, Any]:
        """The settings the attack function accepts (what is run and recorded).

        A ``step_size`` of ``"auto"`` becomes :func:`auto_step_size` of ε, so the recorded
        settings name the step that ran.
        """
        params = dict(self.params)  # each one the attack takes (checked when the spec was made)
        if params.get("step_size") == "auto":
            params["step_size"] = auto_step_size(self.eps_float)
        return params

    def params_json(self) -> str:
        """JSON of the settings, ε excluded (it has its own columns)."""
        return json.dumps({k: (format_eps(v) if k == "step_size" and isinstance(v, (int, float)) else v)
                           for k, v in self.accepted().items()}, sort_keys=True, default=str)

    @functools.cached_property
    def _run_settings(self) -> dict[str, Any]:
        """:meth:`accepted` as the attack function is called with it: a step size written as text
        (``"2/255"``, or ``"auto"`` made ``k/255``) made its float once per spec, not at every call."""
        kwargs = self.accepted()
        if isinstance(kwargs.get("step_size"), str):
            kwargs["step_size"] = parse_eps(kwargs["step_size"])
        return kwargs

    def __call__(self, model_fn: ModelFn, x: Tensor, y: Tensor, generator: Gen = None) -> Tensor:
        """The adversarial version of ``x`` (detached). Shape: x (..., C, H, W), y (...)."""
        if self.eps_float == 0.0 or self.name == "none":
            return x.detach()
        fn = self._fn()
        kwargs = dict(self._run_settings)
        if "generator" in inspect.signature(fn).parameters:
            kwargs["generator"] = generator
        with torch.enable_grad():
            return fn(model_fn, x.detach(), y, eps=self.eps, **kwargs).detach()


_NOT_SETTINGS = ("model_fn", "x", "y", "eps", "generator")


def settings_of(name: str) -> list[str]:
    """The settings (keyword arguments) the attack ``name`` takes, ε and the generator aside.

    Raises:
        ConfigError: an unknown attack.
    """
    sig = inspect.signature(get_attack(name))
    return [p for p, v in sig.parameters.items() if p not in _NOT_SETTINGS and v.kind is not v.VAR_KEYWORD]


def _takes_any(name: str) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(get_attack(name)).parameters.values())


def _away(value: Any, default: Any) -> bool:
    """Whether a setting is away from its default; an ε by its value (an Epsilon and the text that
    names it are one setting)."""
    if isinstance(value, Epsilon) and not isinstance(default, Epsilon):
        try:
            return bool(value != Epsilon(default))
        except ConfigError:  # a default that is no ε ("eps": tied to the training ε)
            return True
    return bool(value != default)


def configured(name: str, settings: Mapping[str, tuple[str, Any, Any]]) -> dict[str, Any]:
    """The settings of a configured bundle that the attack ``name`` takes.

    A learner's training attack is configured by several fields (steps, step size, random start)
    whatever attack is chosen; those the chosen attack does not take are left out — unless one was
    set away from its default, which would change nothing: an error naming it.

    Args:
        settings: setting → (the config field that sets it, its value, the field's default).

    Raises:
        ConfigError: a setting the attack does not take, set away from its default.
    """
    if _takes_any(name):
        return {k: v for k, (_, v, _) in settings.items()}
    takes = set(settings_of(name))
    ignored = [f"{k} ({field} = {str(v)!r})" if isinstance(v, Epsilon) else f"{k} ({field} = {v!r})"
               for k, (field, v, default) in settings.items() if k not in takes and _away(v, default)]
    if ignored:
        raise ConfigError(f"the training attack {name} does not take {', '.join(ignored)}: leave it at its default or "
                          f"choose an attack that takes it (its settings: {', '.join(sorted(takes)) or 'none'})")
    return {k: v for k, (_, v, _) in settings.items() if k in takes}
