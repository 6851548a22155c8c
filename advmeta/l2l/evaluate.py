"""Evaluating L2L-family classifiers: the paper's attack table, worst over attack seeds, curves.

Protocol (docs/protocols.md#the-l2l-table): clean, FGSM, PGD-20 and PGD-100 with step 0.003 at ε = 8/255
(scaled with ε elsewhere), C&W (ℓ∞: PGD on the margin loss) and APGD-CE; each randomised attack
is run with several seeds and the *worst* seed's accuracy is reported (the paper reports the
worst of 5); the row ``worst`` is the per-image minimum over every attack and seed. Curves:
PGD-20 accuracy against ε, and against the number of PGD steps.

The 95% interval of an accuracy p over n test images is the project's one interval
(advmeta.stats: Student t) of the images' 0/100 scores — test images, not episodes, are the
independent draws here. Accordingly
the rows' ``n_episodes`` column holds the number of test images, ``bn_mode`` is ``running``
(a standard classifier in eval mode) and ``train_iterations`` counts epochs.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.env import provenance, resolve_device
from advmeta.converge import NOT_APPLICABLE, Escalation, escalate, worst_of
from advmeta.eps import Eps, format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.l2l.data import L2LData, to_float

AttackSpec = tuple[str, dict[str, Any]] | None
PAPER_STEP = 0.003
"""The paper's PGD step at ε = 8/255; scaled proportionally at other ε."""


def attack_spec(name: str, eps: float) -> AttackSpec:
    """The :mod:`advmeta.attacks` call behind a protocol attack name.

    Names: ``none``, ``fgsm``, ``pgd-<steps>`` (step 0.003·ε/(8/255)), ``cw-linf`` (100 steps of
    PGD on the C&W margin, the ℓ∞ C&W of the L2L paper's table; ``cw-linf-<steps>`` with other
    step counts), ``apgd-ce``, ``apgd-dlr`` (100 iterations). (C&W-ℓ2 is a minimal-perturbation attack with no ℓ∞ budget, so it has no
    accuracy at ε and is not offered here.)
    """
    step = PAPER_STEP * eps / (8 / 255)
    if name == "none":
        return None
    if name == "fgsm":
        return "fgsm", {"eps": eps}
    if name.startswith("pgd-") and name[4:].isdigit():
        return "pgd", {"eps": eps, "steps": int(name[4:]), "step_size": step}
    if name == "cw-linf" or name.startswith("cw-linf-"):
        steps = _steps_of(name, "cw-linf", 100)
        return "cw-linf", {"eps": eps, "steps": steps, "step_size": step}
    if name in ("apgd-ce", "apgd-dlr"):
        return name, {"eps": eps, "steps": 100}
    raise ConfigError(f"unknown L2L evaluation attack {name!r}; use none, fgsm, pgd-<steps>, cw-linf[-<steps>], "
                      "apgd-ce, apgd-dlr")


def _steps_of(name: str, stem: str, default: int) -> int:
    """The step count in ``<stem>-<steps>`` (``default`` for the bare stem)."""
    tail = name[len(stem) + 1:] if name != stem else str(default)
    if not tail.isdigit() or int(tail) < 1:
        raise ConfigError(f"unknown L2L evaluation attack {name!r}: {stem}-<steps> needs a positive step count")
    return int(tail)


@dataclass(frozen=True)
class L2LEvalProtocol:
    """What :func:`evaluate_l2l` measures."""

    attacks: tuple[str, ...] = ("none", "fgsm", "pgd-20", "pgd-100", "cw-linf", "apgd-ce")
    """Protocol attack names (see :func:`attack_spec`)."""
    eps: Eps = "8/255"
    """ℓ∞ budget of the table's attacks."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds of the randomised attacks; the worst seed's accuracy is reported."""
    n_test: int | None = None
    """Evaluate on the first this-many held-out images (None: all)."""
    batch_size: int = 256
    """Images per attack batch."""
    eps_curve: tuple[Eps, ...] = ()
    """ε values of the robust-accuracy-against-ε curve (PGD-20 at each)."""
    steps_curve: tuple[int, ...] = ()
    """PGD step counts of the robust-accuracy-against-steps curve (at ``eps``)."""
    worst_row: bool = True
    """Add the row ``worst``: the per-image minimum over every attack and seed of the table."""
    converge_tol: float = 1.0
    """Points a round of escalation may take for an iterative attack to count as converged
    (:mod:`advmeta.converge`: twice the steps from a new seed, per-image worst case)."""
    converge_cap: int = 8
    """The largest multiple of an attack's own steps escalation may reach (below 2: none)."""


def accuracy(
    classifier: nn.Module | Any, x: Tensor, y: Tensor, spec: AttackSpec, batch_size: int,
    device: torch.device, generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """Per-image correctness of ``classifier`` (eval mode) on x, attacked by ``spec`` (None: clean).

    Returns:
        correct (N,) bool on the CPU, and the mean cross-entropy.

    Shape:
        x: (N, C, H, W) uint8 or float in [0, 1]; y: (N,).
    """
    from advmeta.attacks import get_attack

    was_training = classifier.training
    classifier.eval()
    out, loss_sum = [], 0.0
    try:
        for start in range(0, len(y), batch_size):
            xb = x[start : start + batch_size]
            xb = to_float(xb, device) if xb.dtype == torch.uint8 else xb.to(device)
            yb = y[start : start + batch_size].to(device)
            if spec is not None:
                name, kwargs = spec
                xb = get_attack(name)(classifier, xb, yb, generator=generator, **kwargs)
            with torch.no_grad():
                logits = classifier(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            out.append((logits.argmax(1) == yb).cpu())
    finally:
        classifier.train(was_training)
    return torch.cat(out), loss_sum / max(len(y), 1)


def binomial_ci95(p: float, n: int) -> float:
    """Half-width (in %) of the 95% interval of an accuracy ``p`` (in %) over ``n`` images: the
    project's one interval (:func:`advmeta.stats.mean_ci95`) of the images' 0/100 scores."""
    from advmeta.stats import proportion_ci95

    return proportion_ci95(p, n)


def base_row(ck: Any, n_test: int, device: torch.device) -> dict[str, Any]:
    """The columns every L2L result row of checkpoint ``ck`` shares (see advmeta.results)."""
    from advmeta.results import hparam_columns

    cfg = ck.cfg
    hp = cfg.hparams()
    if not cfg.method_enum.learned:
        hp["attacker"] = None
    train_eps = 0.0 if cfg.method == "plain" else cfg.eps_value
    return {
        "status": "ok", "error": "", "method": cfg.method, **hparam_columns(hp), "dataset": ck.dataset,
        "split": "test", "image_size": ck.image_shape[1], "n_episodes": n_test, "seed": cfg.seed,
        "bn_mode": "running", "train_iterations": ck.epoch, "train_eps": train_eps,
        "train_eps_str": format_eps(train_eps), "scenario": "l2l", "finetune_step": 0,
        "train_seconds": ck.train_seconds, **provenance(str(device)),
    }


def _row(base: dict[str, Any], attack: str, spec: AttackSpec, eps: float, correct: Tensor, loss: float,
         seconds: float, extra: dict[str, Any] | None = None, effort: Escalation = NOT_APPLICABLE) -> dict[str, Any]:
    acc = 100 * correct.float().mean().item()
    params = dict(spec[1]) if spec is not None else {}
    params.pop("eps", None)
    params.update(extra or {})
    return {**base, "support": None, "query": "clean" if attack == "none" else "adv", "attack": attack,
            "attack_params": json.dumps(params, sort_keys=True), "eps": 0.0 if attack == "none" else eps,
            "eps_str": format_eps(0.0 if attack == "none" else eps), "acc": acc,
            "acc_ci95": binomial_ci95(acc, len(correct)), "loss": loss, "eval_seconds": seconds,
            "attack_iterations": effort.iterations, "attack_restarts": effort.restarts, "converged": effort.converged}


def _escalate(classifier: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, correct: Tensor,
              protocol: L2LEvalProtocol, device: torch.device) -> tuple[Tensor, Escalation]:
    """:func:`advmeta.converge.escalate` for a table attack with steps: each round runs it with
    twice the steps from a new seed on the images still classified correctly (independent
    images: each image is its own "episode" of one query), per-image worst case."""
    from advmeta.attacks import attack_info

    if spec is None or "steps" not in spec[1] or not attack_info(spec[0]).iterative:
        return correct, NOT_APPLICABLE
    name, kwargs = spec

    def run(steps: int, r: int, live: Tensor) -> Tensor:
        gen = torch.Generator(device=device).manual_seed(10_000 + r)
        ok, _ = accuracy(classifier, x[live], y[live], (name, {**kwargs, "steps": steps}), protocol.batch_size,
                         device, generator=gen)
        return ok[:, None]

    ok, effort = escalate(run, int(kwargs["steps"]), attack_info(name).stochastic, correct[:, None],
                          protocol.converge_tol, protocol.converge_cap)
    return ok[:, 0], effort


def _stochastic(spec: AttackSpec) -> bool:
    from advmeta.attacks import attack_info

    return spec is not None and attack_info(spec[0]).stochastic


def _worst_over_seeds(classifier: nn.Module, x: Tensor, y: Tensor, spec: AttackSpec, name: str,
                      seeds: tuple[int, ...], batch_size: int, device: torch.device) -> tuple[Tensor, Tensor, float]:
    """(correct of the worst seed, per-image AND over seeds, that seed's loss)."""
    runs = []
    for seed in seeds if _stochastic(spec) else seeds[:1]:
        gen = torch.Generator(device=device).manual_seed(seed)
        runs.append(accuracy(classifier, x, y, spec, batch_size, device, generator=gen))
    worst = min(runs, key=lambda r: r[0].float().mean().item())
    every = torch.stack([r[0] for r in runs]).all(0)
    return worst[0], every, worst[1]


def resolve_source(source: Any, device: torch.device) -> Any:
    """An :class:`~advmeta.l2l.networks.L2LCheckpoint` from a path, or the checkpoint itself."""
    from advmeta.l2l.networks import L2LCheckpoint, load_checkpoint

    if isinstance(source, L2LCheckpoint):
        source.classifier.to(device)
        return source
    if isinstance(source, (str, Path)):
        return load_checkpoint(source, device)
    raise ConfigError(f"expected an L2L checkpoint path or L2LCheckpoint, got {type(source).__name__}")


def held_out(ck: Any, data: L2LData | None, n_test: int | None) -> tuple[Tensor, Tensor]:
    """The held-out images of ``ck``'s dataset (loaded from its config unless ``data`` is given)."""
    if data is None:
        from advmeta.l2l.data import load_l2l_data

        c = ck.cfg
        data = load_l2l_data(c.dataset, c.data_root, c.image_size, c.num_classes, c.train_per_class, c.test_per_class)
    n = len(data.test_y) if n_test is None else min(n_test, len(data.test_y))
    return data.test_x[:n], data.test_y[:n]


def evaluate_l2l(
    source: Any,
    protocol: L2LEvalProtocol | None = None,
    *,
    data: L2LData | None = None,
    device: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Attack a trained L2L-family classifier with the protocol's attacks; one row per (attack, ε).

    Args:
        source: checkpoint path / run folder, or a loaded ``L2LCheckpoint``.
        protocol: what to measure (default: the paper's table at 8/255 with 5 seeds).
        data: the classification data if already loaded (else from the checkpoint's config).
        device: where to attack.
        progress: one line per row on stderr.

    Returns:
        Rows of the ``summary`` schema of :mod:`advmeta.results` (scenario ``l2l``).
    """
    protocol = protocol or L2LEvalProtocol()
    dev = resolve_device(device)
    ck = resolve_source(source, dev)
    x, y = held_out(ck, data, protocol.n_test)
    base = base_row(ck, len(y), dev)
    eps = parse_eps(protocol.eps)
    rows, everything, efforts = [], [], []
    jobs: list[tuple[str, float, dict[str, str]]] = [(name, eps, {}) for name in protocol.attacks]
    jobs += [("pgd-20", parse_eps(e), {"curve": "eps"}) for e in protocol.eps_curve]
    jobs += [(f"pgd-{k}", eps, {"curve": "steps"}) for k in protocol.steps_curve]
    for name, e, extra in jobs:
        spec = attack_spec(name, e)
        t0 = time.perf_counter()
        correct, every, loss = _worst_over_seeds(ck.classifier, x, y, spec, name, protocol.seeds, protocol.batch_size, dev)
        effort = NOT_APPLICABLE
        if not extra:  # the table's rows, not the curves': escalated to convergence
            correct, effort = _escalate(ck.classifier, x, y, spec, correct, protocol, dev)
            every = every & correct
        row = _row(base, name, spec, e, correct, loss, time.perf_counter() - t0,
                   {**extra, "seeds": len(protocol.seeds) if _stochastic(spec) else 1}, effort)
        efforts.append(effort)
        rows.append(row)
        if not extra:
            everything.append(every)
        if progress:
            print(f"[{ck.name}] {name} eps={row['eps_str']}: {row['acc']:.2f} ± {row['acc_ci95']:.2f}", file=sys.stderr)
    if protocol.worst_row and len(everything) > 1:
        worst = torch.stack(everything).all(0)
        rows.append(_row(base, "worst", None, eps, worst, math.nan, 0.0,
                         {"over": [a for a in protocol.attacks if a != "none"]}, worst_of(efforts)))
        rows[-1]["query"] = "adv"
    return rows
