"""Compute budgets: how long each trial trains and how many episodes it is evaluated on.

- ``smoke``: a whole grid in minutes on 2 CPU cores (the tests use it); numbers are noise.
- ``quick`` (default): meaningful numbers on a laptop in about an hour for a grid.
- ``paper``: the papers' iterations and episode counts (a GPU cluster's job).

A budget only sets *how much* is computed; *what* is computed (methods, shots, ε, attacks) is
the grid's. Values a grid table sets itself win over the budget's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advmeta.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """One budget level.

    Attributes:
        name: smoke | quick | paper.
        iterations: meta-training iterations (outer updates) of a meta-learner.
        meta_batch: tasks per outer update.
        val_every: validate (and report to Tune) every this many iterations.
        val_episodes: validation episodes per validation.
        checkpoint_every: checkpoint every this many iterations.
        q_query: query images per class at training and test.
        test_episodes: test episodes per evaluation scenario (ADML: 600; others 1000).
        attack_steps: steps of iterative test attacks (PGD, MI-FGSM, C&W); the papers' own
            counts at ``paper``.
        image_size: side the images are resized to (``None``: the dataset's native size).
        inner_steps: MAML inner steps at meta-training (``None``: the learner's default).
        test_inner_steps: fine-tune steps at meta-test (``None``: the learner's default).
        l2l_epochs: epochs of an L2L-family trainer.
        l2l_train_per_class: training images per class of an L2L trainer (``None``: all).
        l2l_classifier: classifier of an L2L trainer (the paper: WRN-34-10).
        l2l_classifier_kwargs: its arguments.
        l2l_num_classes: classes kept for an L2L trainer (``None``: all).
        surrogate_steps: training steps of the fixed surrogate (ADML's protocol).
        l2l_test_images: held-out images an L2L trainer is attacked on (``None``: all).
        train_q_query: query images per class of the training (and validation) episodes
            (``None``: ``q_query``); the test episodes keep ``q_query``.
        iterations_by_shot: ``(k_shot, iterations)`` pairs overriding ``iterations`` for those
            shots (5-shot episodes carry five times the support and converge in fewer updates).
        whitebox_episodes: test episodes of the white-box evaluations (``None``:
            ``test_episodes``); they attack every query at every step, the surrogate table
            only reads a bank.
        calibration_episodes: validation episodes per rung of the ε calibration.
        l2l_attacker: attacker network of the learned-attacker trainers (``wide``: the paper's;
            ``slim``: at the CPU budgets' small classifiers the wide attacker costs more than the
            classifier itself — 3.2× PGM per batch, measured — which inverts the paper's timing).
        l2l_skip_attacks: attacks of the L2L table left out at this budget (quick: PGD-100, which
            measured the same as PGD-20 on every trainer, and costs five times as much).
        l2l_batch_size: minibatch of an L2L trainer (``None``: the paper's 128). At quick's 800
            training images, 128 gives 6 SGD steps an epoch and every trainer stayed at chance
            (3.5–8 % of 50 classes, measured); 32 gives 25 and Plain Net 88.5 %.
        l2l_lr_milestones: epochs (fractions) where an L2L trainer's learning rate drops ×0.1
            (``None``: the paper's 0.3, 0.6, 0.9 of 100 epochs; a few-epoch run decays later).
        l2l_cw_steps: steps of the L2L table's C&W-ℓ∞ (``None``: the paper's 100); the row is
            then named ``cw-linf-<steps>``.
        shots: the k-shot values of the grids this budget keeps (``None``: all). Quick keeps
            1-shot: the ADML table's 5-shot column is one more training per method (13 trials)
            and runs at ``paper``; the dry run and the report say it was left out.
        iterations_by_method: ``(method, iterations)`` pairs overriding ``iterations`` (quick:
            AQ-ProtoNet attacks with 7-step PGD every iteration and passes 85 % in a third of
            the iterations; Matching Networks needs more than MAML to pass 80 %; AQ, TAFL and
            R-MAML-out train as long as MAML: the claims compare their clean accuracy with
            MAML's within 5 points, and at 450 iterations AQ and TAFL measured 4.4 ± 2.6 and
            5.0 ± 2.6 points below it, at 600 0.2 ± 1.9 and 2.2 ± 2.4).
        by_dataset: ``(dataset, ((field, value), ...))`` pairs: the fields this budget sets
            otherwise on that dataset (:meth:`for_dataset`). Quick on mini-ImageNet: larger
            images and more iterations, without which MAML stays near chance (28 % at 28 px
            after 600 iterations, measured).
        inner_lr: the MAML family's inner learning rate α (and ADML's α for its adversarial
            branch) at this budget (``None``: the learner's per-dataset default).
        claim_looks: looks of the sequential claims (tune/extend.py): a paired claim still
            undecided after the trials' own evaluation gets up to ``claim_looks − 1`` further blocks
            of as many episodes, for the rows it reads; every paired claim's interval is then the
            ``1 − 0.05/claim_looks`` one (Bonferroni over the planned looks). Quick: 2 (up to 40
            white-box episodes where a claim needs them: escalation to convergence costs 3–11× an
            attack's own run — MAML at 32/255, PGD-10 → 80 iterations, measured — and the hour has
            room for one more block); paper: 4 (2400, R-MAML's count).
        seeds: trials per setting, trained from seeds ``--seed``, ``--seed + 1``, … (a grid table's own
            ``seeds`` wins): the claims then take their interval over the seeds, so it holds the
            variation between training runs (advmeta.claims). Paper: 3; quick and smoke: 1 — their
            intervals cover the test episodes of one training run (the report says so).
        gail_iterations: iterations of a GAIL-family run (``None``: GAILConfig's 300).
        gail_batch_steps: state-action pairs per GAIL iteration (``None``: Ho & Ermon's 5000).
        adversarial_iterations: at most this many iterations for the adversarially trained
            meta-learners (``None``: as the others); ``iterations_by_method`` wins over it. Quick:
            450 against the clean learners' 600 — each of their iterations costs 1.5–3.2× MAML's
            (measured) — which handicaps the defence in every claim that it beats another
            learner's robustness (ADML, MAML-AD, R-MAML-TRADES).
        l2l_eval_batches: held-out minibatches of an L2L trainer's per-epoch validation (clean
            and PGD-20; ``None``: the trainer's default of 4). At quick a 4-batch validation
            cost twice an epoch of Plain Net's training (5.6 s against 2.8 s, measured); the
            table's numbers come from the test evaluation, not from it.
        checks: ``(field, value)`` pairs of :class:`advmeta.checks.CheckSettings`: how much the
            gradient-masking checks of every white-box evaluation compute at this budget (the
            defaults, the issue's: 20 episodes, PGD with 5× the steps from 5 restarts, Square
            with the evaluation's 1000 queries). Quick: 2 episodes, 2 restarts, Square with 300
            queries — on Omniglot (quick AQ, one core, measured) Square costs 17–18 s per
            episode at 1000 queries (one forward of the episode's 75 queries per query), PGD-10
            0.33 s. Every budget but smoke escalates to ``converge_cap`` 8 (80 iterations from PGD-10): on
            quick MAML (Omniglot, 20 episodes at 32/255, one core) PGD converged at 80 (23.1 → 16.8 %),
            MI-FGSM and C&W at 40; at cap 2 every one of them was still gaining, and every claim on them
            would read unreliable. Convergence costs about 7× an attack's own run (10 + 20 + 40
            iterations: the first doubling rarely converges, its restart alone takes a point): quick
            escalates only the attacks whose rows a claim reads (``converge_scope`` claims: MAML's,
            AQ's and TAFL's TAFL-table attacks, R-MAML-out's and -TRADES' PGD-10); every other row
            says ``converged`` null, not checked. Escalating the whole grid measured 396 s for MAML's
            TAFL-table evaluation alone (20 Omniglot episodes, one core), and the adaptive table's
            support scenarios over 5 minutes for 5 episodes.
        adaptive_episodes: test episodes of the evaluations whose cost is a query budget or an
            optimisation through the adaptation — white-box evals with ``autoattack`` or
            ``square``, and the ``support`` / ``support+query`` scenarios (``None``: as the
            other white-box evals). Quick: 5 — the adaptive table carries no claim, and with its
            attacks escalated to convergence 10 episodes cost more than the hour has (AutoAttack's
            gradient part measured 5 s an Omniglot episode before escalation, the support scenarios
            1.1–1.2 s).
        attack_params: ``(attack, ((setting, value), ...))`` pairs: test settings of an attack at
            this budget, recorded in every row's ``attack_params`` (a grid's own eval settings
            win). Quick: AutoAttack's gradient part only, APGD-CE then targeted APGD-DLR — Square's
            1000 queries are 1000 forwards of an episode's 75 queries (transductive batch norm
            couples them): the whole cascade measured 52–63 s an Omniglot episode in trials, its
            APGD part alone 4.4–5.7 s (results/paper-tables-omniglot); the gradient-free side is the
            masking checks' Square at quick. Paper:
            AutoAttack's 100 APGD iterations (the papers' PGD counts are for PGD).
    """

    name: str
    iterations: int
    meta_batch: int
    val_every: int
    val_episodes: int
    checkpoint_every: int
    q_query: int
    test_episodes: int
    attack_steps: int
    image_size: int | None
    inner_steps: int | None
    test_inner_steps: int | None
    l2l_epochs: int
    l2l_train_per_class: int | None
    l2l_classifier: str
    l2l_classifier_kwargs: tuple[tuple[str, int], ...]
    l2l_num_classes: int | None
    surrogate_steps: int = 1500
    l2l_test_images: int | None = None
    train_q_query: int | None = None
    iterations_by_shot: tuple[tuple[int, int], ...] = ()
    whitebox_episodes: int | None = None
    calibration_episodes: int = 100
    l2l_attacker: str = "wide"
    l2l_skip_attacks: tuple[str, ...] = ()
    l2l_batch_size: int | None = None
    l2l_lr_milestones: tuple[float, ...] | None = None
    l2l_cw_steps: int | None = None
    shots: tuple[int, ...] | None = None
    iterations_by_method: tuple[tuple[str, int], ...] = ()
    l2l_eval_batches: int | None = None
    adversarial_iterations: int | None = None
    inner_lr: float | None = None
    by_dataset: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    checks: tuple[tuple[str, Any], ...] = ()
    adaptive_episodes: int | None = None
    attack_params: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    gail_iterations: int | None = None
    gail_batch_steps: int | None = None
    claim_looks: int = 1
    seeds: int = 1

    def for_dataset(self, dataset: str | None) -> Budget:
        """This budget as it runs on ``dataset`` (its ``by_dataset`` fields applied; ``by_dataset`` cleared)."""
        from dataclasses import replace

        changes = dict(dict(self.by_dataset).get(dataset or "", ()))
        return replace(self, by_dataset=(), **changes)

    def keeps_shot(self, k_shot: int) -> bool:
        """Whether trials with ``k_shot`` run at this budget."""
        return self.shots is None or int(k_shot) in self.shots

    def iterations_for(self, method: str, k_shot: int | None, adversarial: bool = False) -> int:
        """Meta-training iterations of ``method`` at ``k_shot`` (method over shot over default;
        an adversarially trained method at most ``adversarial_iterations``)."""
        by_method = dict(self.iterations_by_method)
        if method in by_method:
            return by_method[method]
        its = dict(self.iterations_by_shot).get(k_shot, self.iterations) if k_shot is not None else self.iterations
        if adversarial and self.adversarial_iterations is not None:
            its = min(its, self.adversarial_iterations)
        return its


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        name="smoke", iterations=6, meta_batch=2, val_every=3, val_episodes=2, checkpoint_every=3,
        q_query=3, test_episodes=4, attack_steps=2, image_size=28, inner_steps=1, test_inner_steps=2,
        l2l_epochs=1, l2l_train_per_class=8, l2l_classifier="wrn", l2l_classifier_kwargs=(("depth", 10), ("widen", 1)),
        l2l_num_classes=5, surrogate_steps=10, l2l_test_images=50, calibration_episodes=4, l2l_attacker="slim",
        checks=(("episodes", 1), ("converge_cap", 2), ("square_queries", 10)),
        adaptive_episodes=2, gail_iterations=3, gail_batch_steps=300, claim_looks=2,
        attack_params=(("autoattack", (("n_queries", 20),)),),
    ),
    # quick: sized by measurement for one hour of 2 CPU cores on Omniglot (README): 5 training
    # queries per class (MAML 88.4 % on the test classes after 600 iterations, 152 s; 15 queries:
    # 91.6 % in 354 s), 1-shot only (the full 1+5-shot run measured 82 min for 24 of 31 trials),
    # 20 white-box test episodes (each of the TAFL table's attacks costs ~1.2 s per episode on
    # one core), a surrogate of 3000 steps (~5 min, trained beside the ε calibration), L2L
    # trainers at batch 32 (batch 128 left them at chance).
    "quick": Budget(
        name="quick", iterations=600, meta_batch=4, val_every=200, val_episodes=20, checkpoint_every=100,
        q_query=15, test_episodes=100, attack_steps=10, image_size=28, inner_steps=None, test_inner_steps=None,
        l2l_epochs=8, l2l_train_per_class=200, l2l_classifier="wrn", l2l_classifier_kwargs=(("depth", 10), ("widen", 2)),
        l2l_num_classes=50, surrogate_steps=3000, l2l_test_images=1000, train_q_query=5,
        iterations_by_shot=((5, 100),), whitebox_episodes=20, calibration_episodes=20, l2l_attacker="slim",
        l2l_skip_attacks=("pgd-100",), l2l_batch_size=32, l2l_lr_milestones=(0.75,), l2l_cw_steps=20,
        shots=(1,), iterations_by_method=(("aq-protonet", 150), ("matching", 1500), ("aq", 600), ("tafl", 600),
                                          ("rmaml-out", 600)), l2l_eval_batches=1,
        adversarial_iterations=450,
        checks=(("episodes", 2), ("square_queries", 300), ("converge_scope", "claims")), adaptive_episodes=5,
        attack_params=(("autoattack", (("components", ("apgd-ce", "apgd-t")),)),),
        # GAIL: 300 iterations of 2000 pairs (~0.5 s an iteration on one core, measured: the `gail`
        # grid's 20 runs in about half an hour on 2 cores); Ho & Ermon sample 5000 per iteration.
        gail_iterations=300, gail_batch_steps=2000, claim_looks=2,
        # mini-ImageNet: at 28 px and the paper's five inner steps of α = 0.01 MAML stayed at
        # 28 % after 600 iterations; at 32 px one step of α = 0.1 reached 35.9 % on validation
        # episodes after 500 iterations in 173 s, five steps of 0.01 36.4 % in 437 s (measured),
        # but only 29.6 % on the test classes after 600 (results/paper-tables-miniimagenet's first
        # run): four times the iterations (0.34 s each for MAML on one core, 1.1 s for ADML, so the
        # adversarial learners are capped at half). The full grid is then hours on 2 cores (the dry
        # run's estimate); the committed run keeps the ADML table's core methods.
        by_dataset=(("miniimagenet", (("image_size", 32), ("inner_steps", 1), ("test_inner_steps", 3),
                                      ("inner_lr", 0.1), ("iterations", 2400), ("adversarial_iterations", 1200),
                                      ("iterations_by_method", (("aq-protonet", 600), ("matching", 6000),
                                                                ("aq", 2400), ("tafl", 2400), ("rmaml-out", 2400))))),),
    ),
    "paper": Budget(
        name="paper", iterations=60000, meta_batch=4, val_every=1000, val_episodes=100, checkpoint_every=1000,
        q_query=15, test_episodes=600, attack_steps=20, image_size=None, inner_steps=None, test_inner_steps=None,
        l2l_epochs=100, l2l_train_per_class=None, l2l_classifier="wrn", l2l_classifier_kwargs=(("depth", 34), ("widen", 10)),
        l2l_num_classes=None, surrogate_steps=1500, gail_iterations=1000, gail_batch_steps=5000, claim_looks=4,
        seeds=3,
        attack_params=(("autoattack", (("steps", 100),)),),  # AutoAttack's own APGD iterations
    ),
}


def get_budget(name: str, dataset: str | None = None) -> Budget:
    """The budget called ``name`` (as it runs on ``dataset``); :class:`ConfigError` listing the known ones otherwise."""
    try:
        budget = BUDGETS[name]
    except KeyError:
        raise ConfigError(f"unknown budget {name!r}; known: {', '.join(BUDGETS)}") from None
    return budget.for_dataset(dataset) if dataset is not None else budget
