"""Gradient-masking checks, run with every white-box evaluation.

A robust accuracy is only trusted once the evaluation has ruled out that its attacks were
fooled (Carlini et al., "On Evaluating Adversarial Robustness", 2019; AutoAttack's flags;
RobustBench's admission rules). Each check below tests the *evaluation* of one trial at the
table's ε, on the first episodes of its bank, and yields one row of ``checks.parquet``:

==============================  ====================================================================
``large-eps-chance``            at 4× ε (capped at 128/255) PGD leaves ≤ chance + 5 points
``iterative-beats-single-step``  PGD's accuracy is not above FGSM's (paired, beyond the 95 % CI)
``converged``                   PGD with 5× the steps and 5 restarts lowers accuracy by ≤ 2 points
``square-not-better``           Square (black box) is not below the white-box worst case (beyond the CI)
``transfer-not-better``         the surrogate's transfer attack is not below it either (when the
                                trial has a surrogate at this ε; otherwise the row says it did not run)
``gradients-exist``             < 1 % of the queries have an all-zero input gradient
``deterministic``               adapting and predicting twice gives the same logits
==============================  ====================================================================

``passed`` is ``False`` where the check suspects masking and null where it could not run; a trial
with any ``False`` is flagged "masking suspected" in the report. The paired checks compare
per-episode differences, so their intervals are those of the difference, not of either number.
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
from advmeta.eps import format_eps, parse_eps
from advmeta.results import mean_ci95

Generators = Callable[[str], Any]  # tag -> generator(s) for the checked episodes

CHECKS: dict[str, str] = {
    "large-eps-chance": "at a large ε the strongest attack leaves at most chance + margin",
    "iterative-beats-single-step": "PGD's accuracy is not above FGSM's",
    "converged": "more steps and restarts lower PGD's accuracy by at most the tolerance",
    "square-not-better": "the black-box Square attack does not beat the white-box worst case",
    "transfer-not-better": "the surrogate's transfer attack does not beat the white-box worst case",
    "gradients-exist": "almost no query has an all-zero input gradient",
    "deterministic": "adapting and predicting twice gives the same logits",
}


@dataclass(frozen=True)
class CheckSettings:
    """How much the masking checks compute (a budget sets these; the defaults are the issue's).

    Attributes:
        episodes: the first this many episodes of the white-box bank are checked.
        eps_factor, eps_cap: the large ε is ``min(eps_factor · ε, eps_cap)``.
        chance_margin: points above chance (100 / n_way) the large-ε accuracy may keep.
        converge_steps: the converged check's PGD runs this many times the evaluation's steps,
        converge_restarts: from this many random starts (worst case per query, the evaluation's
            own PGD included).
        converge_tol: points the stronger PGD may take beyond the evaluation's.
        zero_grad_pct: percent of queries with an all-zero input gradient tolerated.
        det_tol: largest relative logit difference of two identical adaptations.
        square_queries: Square's query budget (``None``: the evaluation's ``square`` setting).
    """

    episodes: int = 20
    eps_factor: float = 4.0
    eps_cap: str = "128/255"
    chance_margin: float = 5.0
    converge_steps: int = 5
    converge_restarts: int = 5
    converge_tol: float = 2.0
    zero_grad_pct: float = 1.0
    det_tol: float = 1e-4
    square_queries: int | None = None

    def __post_init__(self) -> None:
        from advmeta.errors import ConfigError

        for name in ("episodes", "converge_steps", "converge_restarts"):
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

        strong_ok, seconds = pgd_ok.clone(), 0.0
        steps = int(self.pgd.get("steps", 20)) * st.converge_steps
        for r in range(st.converge_restarts):
            ok, s = attack("pgd", self.eps, f"check-pgd-restart{r}", **{**self.pgd, "steps": steps, "random_start": True})
            strong_ok &= ok
            seconds += s
        self._add("converged", _acc(pgd_ok) - _acc(strong_ok), seconds)

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
            "converged": (st.converge_tol, "le",
                          f"PGD-{steps} − worst of PGD-{steps * st.converge_steps} × {st.converge_restarts} "
                          "restarts (points)"),
            "square-not-better": (0.0, "ge-ci",
                                  f"Square ({self.square.get('n_queries')} queries) − white-box {wb} (points)"),
            "transfer-not-better": (0.0, "ge-ci", f"surrogate transfer − white-box {wb} (points)"),
            "gradients-exist": (st.zero_grad_pct, "lt", "queries with an all-zero input gradient (%)"),
            "deterministic": (st.det_tol, "le", "largest |Δ logit| / (1 + max |logit|) of two adaptations"),
        }
        out = []
        for name in CHECKS:
            threshold, rule, what = spec[name]
            s = self.series.get(name)
            values = s.values if s is not None else []
            detail = what
            if name == "deterministic" and self.transductive:
                detail += "; transductive batch norm: a query's prediction depends on its episode's other queries"
            if not values:
                note = s.note if s is not None and s.note else "not run"
                out.append({**base, "check": name, "eps_str": self.eps_str, "value": None, "ci95": None,
                            "threshold": threshold, "passed": None, "n_episodes": 0, "seconds": 0.0,
                            "detail": f"{what}: {note}"})
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
                        "n_episodes": len(values), "seconds": s.seconds, "detail": detail})
        return out
