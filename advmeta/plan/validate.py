"""Grids are validated whole before anything runs: methods, attacks, scenarios, ε, shots and the
type and range of every hyper-parameter value. A bad grid is one :class:`ConfigError` naming the
table and the value (exit 2), never a trial that fails an hour later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from advmeta.errors import ConfigError
from advmeta.eps import check_eps_value

SUPPORTS = ("clean", "adv40", "adv")
QUERIES = ("clean", "adv")
SPLITS = ("train", "val", "test")
_POSITIVE_INTS = ("episodes", "attack_steps", "q_query", "n_test")


def _where(table: str, what: str) -> str:
    return f"table {table!r}: {what}"


def _positive_int(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number >= 1, got {value!r}")


def check_eval(ev: Mapping[str, Any], table: str) -> None:
    """One ``[[tables.evals]]`` entry.

    Raises:
        ConfigError: an unknown scenario, attack, support or query, a malformed ε, or a
            non-positive count.
    """
    from advmeta.families import scenario_owners

    owners = scenario_owners()
    scenario = str(ev.get("scenario", "whitebox"))
    if scenario not in owners:
        raise ConfigError(_where(table, f"unknown scenario {scenario!r}; use one of {', '.join(owners)}"))
    attacks = ev.get("attacks", [])
    for a in attacks if isinstance(attacks, list) else [attacks]:
        try:
            owners[scenario].check_attack(scenario, str(a))
        except ConfigError as err:
            raise ConfigError(_where(table, str(err))) from None
    eps = ev.get("eps", [])
    for e in eps if isinstance(eps, list) else [eps]:
        check_eps_value(e, _where(table, "eps"))
    for key, allowed in (("support", SUPPORTS), ("query", QUERIES)):
        vals = ev.get(key, [])
        for v in vals if isinstance(vals, list) else [vals]:
            if v not in allowed:
                raise ConfigError(_where(table, f"unknown {key} {v!r}; use {', '.join(allowed)}"))
    if "split" in ev and ev["split"] not in SPLITS:
        raise ConfigError(_where(table, f"unknown split {ev['split']!r}; use {', '.join(SPLITS)}"))
    if "checks" in ev:
        _check_checks(ev["checks"], _where(table, "checks"))
    if "attack_params" in ev:
        _check_attack_params(ev["attack_params"], attacks, _where(table, "attack_params"))
    for key in _POSITIVE_INTS:
        if key in ev and ev[key] is not None:
            _positive_int(ev[key], _where(table, key))


def _check_attack_params(value: Any, attacks: list[Any], where: str) -> None:
    """``attack_params = { autoattack = { components = [...] } }``: settings of the eval's own
    attacks, each a keyword of that attack, its values tried on a toy input up front."""
    from advmeta.attacks import settings_of

    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a table of attack = {{ setting = value }}")
    for attack, settings in value.items():
        if attack not in attacks:
            raise ConfigError(f"{where}: {attack!r} is not one of this eval's attacks ({', '.join(map(str, attacks))})")
        if not isinstance(settings, Mapping):
            raise ConfigError(f"{where}.{attack}: must be a table of setting = value")
        known = settings_of(attack)
        bad = sorted(set(settings) - set(known))
        if bad:
            raise ConfigError(f"{where}.{attack}: unknown setting(s) {bad}; known: {', '.join(known)}")
        _try_attack(attack, dict(settings), f"{where}.{attack}")


def _try_attack(attack: str, settings: dict[str, Any], where: str) -> None:
    """Run ``attack`` with ``settings`` once on a 4×4 toy (milliseconds), so a bad value is an
    error now rather than after a trial has trained."""
    import torch

    from advmeta.attacks import get_attack

    x = torch.full((2, 1, 4, 4), 0.5)
    weight = torch.linspace(-1, 1, 16 * 3).reshape(16, 3)
    try:
        get_attack(attack)(lambda z: z.flatten(-3) @ weight, x, torch.tensor([0, 1]), eps=8 / 255, **settings)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {settings} rejected ({err})") from None


def check_axes(axes: Mapping[str, list[Any]], table: str) -> None:
    """The training axes: ``k_shot`` ≥ 1, ``n_way`` ≥ 2, ``q_query`` ≥ 1 (whole numbers)."""
    for k in axes.get("k_shot", []):
        _positive_int(k, _where(table, "k_shot"))
    for n in axes.get("n_way", []):
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(_where(table, f"n_way must be a whole number >= 2, got {n!r}"))
    for q in axes.get("q_query", []):
        _positive_int(q, _where(table, "q_query"))


def _check_checks(value: Any, where: str) -> None:
    """An eval's ``checks``: ``false`` or a table of :class:`advmeta.checks.CheckSettings` fields."""

    from advmeta.checks import CheckSettings

    if value is False:
        return
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: use false or a table of settings ({', '.join(f.name for f in dataclasses.fields(CheckSettings))})")
    try:
        CheckSettings(**dict(value))
    except ConfigError as err:  # a bad value
        raise ConfigError(f"{where}: {str(err).removeprefix('checks: ')}") from None
    except TypeError:
        known = [f.name for f in dataclasses.fields(CheckSettings)]
        bad = sorted(set(value) - set(known))
        raise ConfigError(f"{where}: unknown setting(s) {bad}; known: {', '.join(known)}") from None


def check_episode_shapes(specs: Sequence[Any], data_root: str | None) -> None:
    """Every few-shot trial's episodes can be drawn from its dataset: N-way needs N classes in each
    split it samples (train, val and its evaluations'), K + Q images per class in the evaluated splits.

    Checked in the driver before Ray starts (a trial would fail only after the cluster is up); each
    dataset is opened once (its array cache is memory-mapped). A dataset that cannot be opened
    without downloading is left to the trial, which downloads it and reports what is missing.

    Raises:
        ConfigError: naming the trial (method and settings), the split and what it holds.
    """
    from advmeta.data import load_fewshot
    from advmeta.errors import AdvmetaError

    opened: dict[tuple[Any, ...], Any] = {}
    for spec in specs:
        t = spec.train
        if "n_way" not in t or "dataset" not in t:  # not a few-shot trial (L2L, GAIL)
            continue
        key = (t["dataset"], t.get("image_size"), t.get("split_scheme"))
        if key not in opened:
            try:
                opened[key] = load_fewshot(key[0], data_root=data_root, image_size=key[1], split_scheme=key[2],
                                           download=False)
            except (AdvmetaError, OSError):
                opened[key] = None
        ds = opened[key]
        if ds is None:
            continue
        n_way, k_shot = int(t["n_way"]), int(t.get("k_shot", 1))
        evaluated = {str(ev.get("split", "test")): int(ev.get("q_query") or t.get("q_query", 15)) for ev in spec.evals}
        for split in dict.fromkeys(["train", "val", *evaluated]):
            if split not in ds.split_names:
                continue
            classes = ds.split(split).num_classes
            if n_way > classes:
                raise ConfigError(f"{spec.label} on {key[0]}: {n_way}-way episodes, but its {split} split has "
                                  f"{classes} classes (--n-way at most {classes})")
            if split in evaluated:
                fewest = int(ds.split(split).counts().min())
                if k_shot + evaluated[split] > fewest:
                    raise ConfigError(f"{spec.label} on {key[0]}: {k_shot} shots + {evaluated[split]} queries per class, "
                                      f"but a class of its {split} split has only {fewest} images")
