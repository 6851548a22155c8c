"""Gradient-masking checks, run with every white-box evaluation.

A robust accuracy is only trusted once the evaluation has ruled out that its attacks were
fooled (Carlini et al., "On Evaluating Adversarial Robustness", 2019; AutoAttack's flags;
RobustBench's admission rules). Each check below tests the *evaluation* of one trial at the
table's ε, on the first episodes of its bank, and yields one row of ``checks.parquet``:

==============================  ====================================================================
``large-eps-chance``            at 4× ε (capped at 128/255) PGD leaves ≤ chance + 5 points
``iterative-beats-single-step``  PGD's accuracy is not above FGSM's (paired, beyond the 95 % CI)
``converged``                   every gradient attack of the evaluation converged: its last round of
                                escalation (twice the iterations from a new random start,
                                advmeta.converge) took less than ``converge_tol`` points, within
                                ``converge_cap`` times its own iterations — over *every* evaluated episode
``square-not-better``           Square (black box) is not below the white-box worst case (beyond the CI)
``transfer-not-better``         the surrogate's transfer attack is not below it either (when the
                                trial has a surrogate at this ε; otherwise the row says it did not run)
``gradients-exist``             < 1 % of the queries have an all-zero input gradient
``deterministic``               adapting and predicting twice gives the same logits
==============================  ====================================================================

``passed`` is ``False`` where the check fails and null where it could not run. Two diagnoses,
two remedies (:data:`DIAGNOSES`): a failed ``converged`` is **not converged** — the attack was still
gaining at the cap, so its number is an upper bound; give it more iterations — and any other
failure is **masking suspected** — the gradient attacks are being fooled; use another attack
(black box, transfer, adaptive). The paired checks compare per-episode differences, so their
intervals are those of the difference, not of either number.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advmeta.attacks import AttackSpec, ModelFn
from advmeta.converge import Escalation
from advmeta.eps import format_eps, parse_eps
from advmeta.stats import mean_ci95

Generators = Callable[[str], Any]  # tag -> generator(s) for the checked episodes

CHECKS: dict[str, str] = {
    "large-eps-chance": "at a large ε the strongest attack leaves at most chance + margin",
    "iterative-beats-single-step": "PGD's accuracy is not above FGSM's",
    "converged": "doubling every gradient attack's iterations (with a restart) changed its accuracy by less than the tolerance, within the cap",
    "square-not-better": "the black-box Square attack does not beat the white-box worst case",
    "transfer-not-better": "the surrogate's transfer attack does not beat the white-box worst case",
    "gradients-exist": "almost no query has an all-zero input gradient",
    "deterministic": "adapting and predicting twice gives the same logits",
}

NOT_CONVERGED, MASKING = "not converged", "masking suspected"
DIAGNOSES: dict[str, str] = {name: NOT_CONVERGED if name == "converged" else MASKING for name in CHECKS}
"""What a failed check diagnoses: ``not converged`` (remedy: more iterations) or ``masking
suspected`` (remedy: another attack)."""


@dataclass(frozen=True)
class CheckSettings:
    """How much the masking checks compute (a budget sets these; the defaults are the issue's).

    Attributes:
        episodes: the first this many episodes of the white-box bank are checked.
        eps_factor, eps_cap: the large ε is ``min(eps_factor · ε, eps_cap)``.
        chance_margin: points above chance (100 / n_way) the large-ε accuracy may keep.
        converge_tol: points a round of escalation (twice the iterations, a new random start) may
            take for an attack to count as converged (advmeta.converge) [choice: 1 point].
        converge_cap: the largest multiple of an attack's own iterations escalation may reach
            (PGD-10 with 8: 20, 40, 80); below 2, no escalation (``converged`` null: not checked).
        converge_scope: which attacks are escalated: ``all`` (every one the evaluation runs) or
            ``claims`` (only those whose rows a shipped claim reads for the trial's method:
            :func:`advmeta.claims.claimed_attacks`; the others' rows say ``converged`` null, not
            checked) [choice: all; quick: claims].
        zero_grad_pct: percent of queries with an all-zero input gradient tolerated.
        det_tol: largest relative logit difference of two identical adaptations.
        square_queries: Square's query budget (``None``: the evaluation's ``square`` setting).
    """

    episodes: int = 20
    eps_factor: float = 4.0
    eps_cap: str = "128/255"
    chance_margin: float = 5.0
    converge_tol: float = 1.0
    converge_cap: int = 8
    converge_scope: str = "all"
    zero_grad_pct: float = 1.0
    det_tol: float = 1e-4
    square_queries: int | None = None

    def __post_init__(self) -> None:
        from advmeta.errors import ConfigError

        for name in ("episodes", "converge_cap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"checks: {name} must be an integer >= 1, got {v!r}")
        if self.square_queries is not None and (isinstance(self.square_queries, bool)
                                                or not isinstance(self.square_queries, int) or self.square_queries < 1):
            raise ConfigError(f"checks: square_queries must be an integer >= 1, got {self.square_queries!r}")
        for name in ("eps_factor", "chance_margin", "converge_tol", "zero_grad_pct", "det_tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"checks: {name} must be a number >= 0, got {v!r}")
        if self.converge_scope not in ("all", "claims"):
            raise ConfigError(f"checks: converge_scope must be all or claims, got {self.converge_scope!r}")
        parse_eps(self.eps_cap)


def _acc(ok: Tensor) -> Tensor:
    """Per-episode accuracy (%) of per-query correctness (T, B) → (T,)."""
    return ok.double().mean(-1) * 100


def _correct(fn: ModelFn, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return fn(x).argmax(-1) == y


def zero_gradient_share(fn: ModelFn, x: Tensor, y: Tensor) -> Tensor:
    """Per-episode percent of queries whose cross-entropy has an all-zero gradient in the input.

    The loss is summed over the queries, so with a forward that couples them (transductive batch
    norm) a query's gradient also carries the others' — as the attacks see it.
    """
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = fn(xg)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="sum")
        (g,) = torch.autograd.grad(loss, xg)
    zero = g.flatten(x.dim() - 3).abs().amax(-1) == 0
    return zero.double().mean(-1) * 100


@dataclass
class _Series:
    values: list[float]
    seconds: float = 0.0
    note: str = ""


class MaskingChecks:
    """Accumulates the checks over the chunks of one evaluation, then yields their rows.

    Args:
        settings: how much to compute.
        n_way: classes per episode (chance is ``100 / n_way``).
        eps: the ε checked (the table's first).
        pgd: the evaluation's PGD settings (``AttackSpec.accepted()`` form: steps, step_size, …).
        square: the evaluation's Square settings.
        transductive: the forward uses the query batch's statistics (batch norm in ``batch``
            mode): a query's prediction depends on the other queries of its episode.
    """

    def __init__(self, settings: CheckSettings, n_way: int, eps: Any, pgd: Mapping[str, Any],
                 square: Mapping[str, Any], transductive: bool) -> None:
        self.settings = settings
        self.n_way = n_way
        self.eps = parse_eps(eps)
        self.eps_str = format_eps(eps)
        self.big = min(settings.eps_factor * self.eps, parse_eps(settings.eps_cap))
        self.pgd = dict(pgd)
        self.square = {**dict(square), **({"n_queries": settings.square_queries} if settings.square_queries else {})}
        self.transductive = transductive
        self.series: dict[str, _Series] = defaultdict(lambda: _Series([]))
        self.episodes = 0
        self.wb_attacks: tuple[str, ...] = ()
        self.escalations: dict[str, list[tuple[int, Escalation, int]]] = defaultdict(list)
        self.escalation_seconds = 0.0

    def escalated(self, attack: str, base: int, esc: Escalation, episodes: int, seconds: float) -> None:
        """Record how far ``attack`` (``base`` iterations of its own) was escalated on a chunk of
        ``episodes`` episodes at this ε: the ``converged`` check reads every evaluated episode."""
        if esc.converged is not None:
            self.escalations[attack].append((base, esc, episodes))
            self.escalation_seconds += seconds

    def wants(self, index: Tensor) -> int:
        """How many of a chunk's episodes (its first ones, by bank index) are checked."""
        return int((index < self.settings.episodes).sum())

    def _add(self, name: str, values: Tensor, seconds: float) -> None:
        s = self.series[name]
        s.values += [float(v) for v in values.tolist()]
        s.seconds += seconds

    def run(self, adapt: Callable[[], ModelFn], reference: Tensor, qx: Tensor, qy: Tensor,
            whitebox_ok: Mapping[str, Tensor], gens: Generators,
            transfer_x: Tensor | None = None, transfer_note: str = "") -> None:
        """Check one chunk of episodes.

        Args:
            adapt: adapts the learner to these episodes' support again and returns the adapted
                model (the determinism check compares its logits with ``reference``).
            reference: the evaluation's logits on ``qx`` (from its own adaptation).
            qx, qy: the query images and labels (T, B, …), (T, B).
            whitebox_ok: per-query correctness (T, B) under each bounded gradient attack the
                evaluation ran at this ε (``pgd`` among them when it ran PGD).
            gens: the generators of a tag (one per episode: the checks' random starts).
            transfer_x: the surrogate's adversarial queries at this ε, when the trial has them.
        """
        st = self.settings
        self.episodes += qx.shape[0]
        t0 = time.perf_counter()
        fn = adapt()
        with torch.no_grad():
            again = fn(qx)
        scale = 1.0 + float(reference.abs().max())
        self._add("deterministic", ((again - reference).abs().flatten(1).amax(-1) / scale).double(),
                  time.perf_counter() - t0)

        t0 = time.perf_counter()
        self._add("gradients-exist", zero_gradient_share(fn, qx, qy), time.perf_counter() - t0)

        def attack(name: str, eps: float, tag: str, **params: Any) -> tuple[Tensor, float]:
            t = time.perf_counter()
            x_adv = AttackSpec(name, eps, params)(fn, qx, qy, gens(tag))
            return _correct(fn, x_adv, qy), time.perf_counter() - t

        # The evaluation's own PGD where it ran one (same settings), else this check's.
        pgd_ok = whitebox_ok.get("pgd")
        pgd_s = 0.0
        if pgd_ok is None:
            pgd_ok, pgd_s = attack("pgd", self.eps, "check-pgd", **self.pgd)
        fgsm_ok, s = attack("fgsm", self.eps, "check-fgsm")
        self._add("iterative-beats-single-step", _acc(pgd_ok) - _acc(fgsm_ok), s + pgd_s)

        big_ok, s = attack("pgd", self.big, "check-pgd-large", **{**self.pgd, "step_size": "auto"})
        self._add("large-eps-chance", _acc(big_ok), s)

        wb = [ok for ok in whitebox_ok.values()] or [pgd_ok]
        wb_ok = torch.stack(wb).all(0)
        self.wb_attacks = tuple(whitebox_ok) or ("pgd",)
        sq_ok, s = attack("square", self.eps, "check-square", **self.square)
        self._add("square-not-better", _acc(sq_ok) - _acc(wb_ok), s)
        if transfer_x is not None:
            self._add("transfer-not-better", _acc(_correct(fn, transfer_x, qy)) - _acc(wb_ok), 0.0)
        elif transfer_note:
            self.series["transfer-not-better"].note = transfer_note

    def rows(self, base: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One row per check (the ``checks`` table of :mod:`advmeta.results`), ``base`` merged in."""
        st = self.settings
        chance = 100.0 / self.n_way
        steps = int(self.pgd.get("steps", 20))
        wb = "worst of " + ", ".join(self.wb_attacks) if len(self.wb_attacks) > 1 else ", ".join(self.wb_attacks)
        spec: dict[str, tuple[float, str, str]] = {
            # check: (threshold, rule, what the value is)
            "large-eps-chance": (chance + st.chance_margin, "le",
                                 f"PGD-{steps} accuracy (%) at {format_eps(self.big)}; chance {chance:.0f} % + "
                                 f"{st.chance_margin:g}"),
            "iterative-beats-single-step": (0.0, "le-ci", "PGD − FGSM accuracy (points), paired per episode"),
            "converged": (st.converge_tol, "lt",
                          "points the last round of escalation took (largest over the gradient attacks)"),
            "square-not-better": (0.0, "ge-ci",
                                  f"Square ({self.square.get('n_queries')} queries) − white-box {wb} (points)"),
            "transfer-not-better": (0.0, "ge-ci", f"surrogate transfer − white-box {wb} (points)"),
            "gradients-exist": (st.zero_grad_pct, "lt", "queries with an all-zero input gradient (%)"),
            "deterministic": (st.det_tol, "le", "largest |Δ logit| / (1 + max |logit|) of two adaptations"),
        }
        out = []
        for name in CHECKS:
            threshold, rule, what = spec[name]
            if name == "converged":
                out.append(self._converged_row(base, threshold, what))
                continue
            s = self.series.get(name)
            values = s.values if s is not None else []
            detail = what
            if name == "deterministic" and self.transductive:
                detail += "; transductive batch norm: a query's prediction depends on its episode's other queries"
            if not values:
                note = s.note if s is not None and s.note else "not run"
                out.append({**base, "check": name, "eps_str": self.eps_str, "value": None, "ci95": None,
                            "threshold": threshold, "passed": None, "diagnosis": "", "n_episodes": 0,
                            "seconds": 0.0, "detail": f"{what}: {note}"})
                continue
            assert s is not None, "values are non-empty only when the series exists"
            if name == "deterministic":
                value, ci = float(np.max(values)), float("nan")
            else:
                value, ci = mean_ci95(values)
            margin = 0.0 if not np.isfinite(ci) else ci
            # Accuracies are multiples of 100/queries: a mean of 2.0 must not fail "≤ 2" by rounding.
            slack = 1e-9 * max(1.0, abs(threshold))
            passed = {"le": value <= threshold + slack, "lt": value < threshold - slack,
                      "le-ci": value - margin <= threshold + slack, "ge-ci": value + margin >= threshold - slack}[rule]
            out.append({**base, "check": name, "eps_str": self.eps_str, "value": value,
                        "ci95": ci if np.isfinite(ci) else None, "threshold": threshold, "passed": bool(passed),
                        "diagnosis": "" if passed else DIAGNOSES[name], "n_episodes": len(values),
                        "seconds": s.seconds, "detail": detail})
        return out

    def _converged_row(self, base: Mapping[str, Any], threshold: float, what: str) -> dict[str, Any]:
        """The ``converged`` check: every escalated attack of every evaluated episode at this ε."""
        row = {**base, "check": "converged", "eps_str": self.eps_str, "ci95": None, "threshold": threshold,
               "seconds": self.escalation_seconds}
        if not self.escalations:
            return {**row, "value": None, "passed": None, "diagnosis": "", "n_episodes": 0,
                    "detail": f"{what}: not run (no attack with iterations was escalated)"}
        parts, stuck, worst = [], [], 0.0
        for attack, runs in self.escalations.items():
            base_its = max(b for b, _, _ in runs)
            top = max(e.iterations or 0 for _, e, _ in runs)
            restarts = max(e.restarts or 0 for _, e, _ in runs)
            change = max(e.change for _, e, _ in runs)
            worst = max(worst, change)
            ok = all(e.converged for _, e, _ in runs)
            parts.append(f"{attack} {base_its}→{top} iterations, {restarts} restart(s), last round "
                         f"{change:.2f} points" + ("" if ok else " (still gaining at the cap)"))
            stuck += [] if ok else [attack]
        episodes = max(sum(n for _, _, n in runs) for runs in self.escalations.values())
        detail = (f"{what}; tolerance {self.settings.converge_tol:g} points, cap {self.settings.converge_cap}× "
                  f"the attack's iterations: " + "; ".join(parts))
        return {**row, "value": worst, "passed": not stuck, "diagnosis": NOT_CONVERGED if stuck else "",
                "n_episodes": episodes, "detail": detail}
