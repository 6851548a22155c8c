"""The evaluation protocol: which scenarios, attacks, budgets and episodes an evaluation runs.

docs/protocols.md#evaluation-protocols: a fixed bank of test episodes shared by every method (same seed → same
episodes); clean accuracy and loss at every fine-tune step; white-box attacks on the query at
the adapted weights with the per-query worst case over attacks; ADML's surrogate table
(support {clean, 40 % adversarial, adversarial} × query {clean, adversarial}).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advmeta.checks import CheckSettings
from advmeta.eps import Epsilon
from advmeta.errors import ConfigError

if TYPE_CHECKING:
    from advmeta.data.manifest import Manifest

SCENARIOS = ("finetune", "whitebox", "surrogate", "support", "support+query")
# Attacks through adaptation: (support perturbed, query perturbed) of each scenario; the
# support's perturbation reaches the query through the fine-tuning (advmeta.attacks.episode).
ADAPTIVE_SCENARIOS = {"support": (True, False), "support+query": (True, True)}

# bank(indices, eps) -> (clean episodes, their surrogate-FGSM version at eps): a precomputed
# source of ADML-protocol episodes (the Ray layer builds one in parallel); None = compute here.
Bank = Callable[[Sequence[int], float], tuple[Any, Any]]


@dataclass(frozen=True)
class EvalProtocol:
    """Settings of one evaluation of a checkpoint.

    Attributes:
        split: class split of the test episodes (``test`` or ``val``).
        n_episodes: size of the episode bank (paper budgets: 600 ADML-style, 1000 otherwise).
        n_way, k_shot, q_query: episode shape (None: as trained).
        seed: seed of the episode bank (None: the training seed); same seed → same episodes.
        finetune_steps: fine-tune steps at meta-test (None: the learner's ``test_inner_steps``).
        scenarios: any of ``finetune`` (clean, every step), ``whitebox``, ``surrogate``,
            ``support`` (PGD on the support images, through the fine-tuning, against the clean
            query) and ``support+query`` (both perturbed jointly); the last two use ``eps`` and
            the ``pgd`` settings.
        attacks: white-box attacks on the query at the adapted weights.
        eps: ε of the white-box attacks (``"8/255"``).
        attack_params: per-attack settings overriding each attack's own test defaults
            (``AttackInfo.test_params``; "auto" step sizes follow ε: max(2/255, ε/4)).
        worst: add the per-query worst case over the attacks (``attack="worst"``).
        attack_every_step: attack at every fine-tune step (AQ's protocol), not only the last.
        surrogate_eps: ε of ADML's surrogate FGSM (``2/255`` and ``0.2/255`` in the paper).
        surrogate_supports: support rows of ADML's table; ``adv40`` is used only when K ≥ 5.
        l_ar_delta: δ of the per-episode L_AR recorded with every white-box attack.
        checks: the gradient-masking checks run with the white-box evaluation, at its first ε
            (:mod:`advmeta.checks`), and how far its attacks are escalated to convergence
            (``converge_tol``, ``converge_cap``: :mod:`advmeta.converge`); ``None``: neither (the ε
            calibration, which only reads a curve).
        masking_checks: run the masking checks (``False``: another evaluation of the same model
            at the same ε checked it already; its attacks are still escalated).
        chunk: episodes evaluated (and attacked) at once.
        device: ``auto``, ``cpu``, ``cuda``.
        sweep, trial_id: identifiers copied into the rows.
        episode_start: the first bank index evaluated: the evaluation covers episodes
            ``episode_start … episode_start + n_episodes − 1`` (a block added to an earlier
            evaluation of the first ``episode_start``, to decide a claim: tune/extend.py).
        episodes: standard test episodes (:mod:`advmeta.data.manifest`): episode ``i`` is the
            manifest's ``i``-th (``n_episodes`` at most its count), its split and shape replace
            ``split``, ``n_way``, ``k_shot`` and ``q_query``, and every row records its hash
            (``episodes_hash``); ``None``: episodes drawn from ``seed``.
        escalate_only: the attacks escalated to convergence (white-box attack names, ``support``,
            ``support+query``); ``None``: every one (a sweep's ``converge_scope = "claims"`` sets
            those a claim reads, :func:`advmeta.claims.claimed_attacks`).
    """

    split: str = "test"
    n_episodes: int = 600
    n_way: int | None = None
    k_shot: int | None = None
    q_query: int | None = None
    seed: int | None = None
    finetune_steps: int | None = None
    scenarios: tuple[str, ...] = ("finetune", "whitebox")
    attacks: tuple[str, ...] = ("pgd",)
    eps: tuple[Epsilon, ...] = (Epsilon("8/255"),)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    worst: bool = True
    attack_every_step: bool = False
    surrogate_eps: tuple[Epsilon, ...] = (Epsilon("2/255"), Epsilon("0.2/255"))
    surrogate_supports: tuple[str, ...] = ("clean", "adv40", "adv")
    l_ar_delta: float = 1e-3
    checks: CheckSettings | None = CheckSettings()
    chunk: int = 50
    device: str = "auto"
    sweep: str = ""
    trial_id: str = ""
    episodes: Manifest | None = None
    episode_start: int = 0
    masking_checks: bool = True
    escalate_only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad:
            raise ConfigError(f"unknown scenario(s) {bad}; known: {', '.join(SCENARIOS)}")
        if self.n_episodes < 1 or self.chunk < 1 or self.episode_start < 0:
            raise ConfigError("n_episodes and chunk must be >= 1, episode_start >= 0")
        if self.episodes is not None and self.episode_start + self.n_episodes > len(self.episodes):
            raise ConfigError(f"{self.episode_start + self.n_episodes} test episodes asked for; the episodes manifest "
                              f"{self.episodes.origin} has {len(self.episodes)}")
        bad = [s for s in self.surrogate_supports if s not in ("clean", "adv40", "adv")]
        if bad:
            raise ConfigError(f"unknown surrogate support(s) {bad}; known: clean, adv40, adv")
        # each ε an Epsilon, made once here (an Epsilon given is kept): the attacks get it as it is
        object.__setattr__(self, "eps", tuple(Epsilon(e) for e in self.eps))
        object.__setattr__(self, "surrogate_eps", tuple(Epsilon(e) for e in self.surrogate_eps))

    def escalation(self, attack: str | None = None) -> tuple[float, int]:
        """``(converge_tol, converge_cap)`` of the escalation of ``attack`` (a white-box attack, or
        ``support`` / ``support+query``; :mod:`advmeta.converge`); ``(0.0, 1)`` — no escalation —
        without checks, or for an attack outside ``escalate_only``."""
        if self.checks is None or (attack is not None and self.escalate_only is not None
                                   and attack not in self.escalate_only):
            return 0.0, 1
        return self.checks.converge_tol, self.checks.converge_cap

    def params_of(self, attack: str) -> dict[str, Any]:
        """Settings of ``attack``: its test defaults updated with this protocol's overrides."""
        from advmeta.attacks import attack_info, attack_names

        defaults = dict(attack_info(attack).test_params) if attack in attack_names() else {}
        return {**defaults, **dict(self.attack_params.get(attack, {}))}
