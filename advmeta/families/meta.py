"""The ``meta`` family: few-shot learners trained by advmeta.train and evaluated by advmeta.evaluate.

A trial's evaluation protocols (grid ``evals``) become :class:`advmeta.protocol.EvalProtocol` s;
protocols that differ only in what they measure are merged into one evaluation, so the test
episodes are adapted to once. When an episode bank matching the trial exists (``ctx.banks``),
the surrogate scenario reads its pre-attacked episodes instead of attacking again, and ADML /
MAML-AD read their surrogate-attacked training episodes from a ``train`` bank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from advmeta.eps import Epsilon
from advmeta.families import Report, RunContext, TrialOutput


def methods() -> list[str]:
    """Every registered learner."""
    from advmeta.learners import learner_names

    return learner_names()


def config_class(method: str) -> type:
    """The learner's ``Config`` dataclass."""
    from advmeta.learners import get_learner

    return get_learner(method).Config


# Seconds per training iteration on one CPU core at quick on Omniglot 28 px
# (results/paper-tables-omniglot/summary.parquet: train_seconds / train_iterations).
_TRAIN_COST = {"maml": 0.27, "aq": 0.42, "tafl": 0.58, "rmaml-out": 0.59, "rmaml-trades": 0.73, "rmaml-both": 0.76,
               "adml": 0.86, "maml-ad": 0.81, "adml-wb": 0.74, "aq-protonet": 1.57, "matching": 0.19,
               "protonet": 0.21, "relation": 0.24}


def uses_dataset(method: str) -> bool:
    """Yes: few-shot learners train and test on a dataset's episodes."""
    return True


def scenarios() -> tuple[str, ...]:
    """The few-shot evaluation scenarios (:data:`advmeta.protocol.SCENARIOS`)."""
    from advmeta.protocol import SCENARIOS

    return tuple(SCENARIOS)


def check_attack(scenario: str, attack: str) -> None:
    """A registered attack (or ``none``); the surrogate scenario's is FGSM (ADML's protocol)."""
    from advmeta.attacks import attack_names
    from advmeta.errors import ConfigError

    if scenario == "surrogate":
        if attack != "fgsm":
            raise ConfigError(f"the surrogate scenario attacks with fgsm (ADML's protocol), not {attack!r}")
    elif attack != "none" and attack not in attack_names():
        raise ConfigError(f"unknown attack {attack!r}; known: {', '.join(attack_names())}")


def eval_defaults(budget: Any, scenario: str) -> dict[str, Any]:
    """The budget's queries per class of the test episodes (a grid's evaluation may set its own)."""
    return {"q_query": budget.q_query}


def budget_attacks(budget: Any, scenario: str, attacks: list[str]) -> list[str]:
    """Every attack a grid names runs at every budget."""
    return attacks


def trains_on_surrogate(method: str) -> bool:
    """Whether a learner trains on the fixed surrogate's FGSM images (ADML, MAML-AD)."""
    from advmeta.learners import get_learner

    return bool(getattr(get_learner(method), "needs_surrogate", False))


def is_adversarial(method: str) -> bool:
    """Whether a learner trains on adversarial examples (its own attack or the surrogate's)."""
    import dataclasses

    return "train_eps" in {f.name for f in dataclasses.fields(config_class(method))} or trains_on_surrogate(method)


def train_settings(budget: Any, method: str, axes: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's training settings: the budget's numbers under the table's axes (dataset, n_way, k_shot, …)."""
    return episodic_settings(budget, method, axes, adversarial=is_adversarial(method))


def episodic_settings(budget: Any, method: str, axes: Mapping[str, Any], adversarial: bool) -> dict[str, Any]:
    """The settings of an episodic trainer's trial (the budget's iterations capped when ``adversarial``)."""
    train: dict[str, Any] = {
        "n_way": 5, "q_query": budget.train_q_query or budget.q_query, "iterations": budget.iterations,
        "meta_batch": budget.meta_batch, "val_every": budget.val_every, "val_episodes": budget.val_episodes,
        "checkpoint_every": budget.checkpoint_every, "image_size": budget.image_size,
        "surrogate_steps": budget.surrogate_steps}
    train.update({k: v for k, v in axes.items() if v is not None})
    train["iterations"] = budget.iterations_for(method, train.get("k_shot"), adversarial)
    return train


def budget_hparams(budget: Any) -> dict[str, Any]:
    """Hyper-parameters the budget sets for the learners (applied where a learner has the field)."""
    out: dict[str, Any] = {}
    if budget.inner_steps is not None:
        out["inner_steps"] = budget.inner_steps
    if budget.test_inner_steps is not None:
        out["test_inner_steps"] = budget.test_inner_steps
    if budget.inner_lr is not None:
        out["inner_lr"] = out["inner_lr_adv"] = budget.inner_lr
    return out


def search_evals(budget: Any, attacks: list[str], test_eps: list[Epsilon] | None, sweep: str) -> tuple[dict[str, Any], ...]:
    """What ``advmeta tune`` evaluates: the white-box attacks at ``test_eps`` (default 2/255) on all of
    the budget's test episodes (not its white-box subset: a search compares trials by this row), with
    the budget's numbers as a grid gets them (attack steps, masking checks)."""
    from advmeta.plan.settings import eval_settings

    evals = tuple(eval_settings({"name": sweep, "evals": [
        {"scenario": "whitebox", "attacks": list(attacks), "eps": list(test_eps or [Epsilon("2/255")]), "support": ["clean"],
         "query": ["clean", "adv"], "episodes": budget.test_episodes, "split": "test"}]}, budget))
    for ev in evals:
        ev.pop("n_test", None)
        ev.pop("eps_source", None)
    return evals


def train_cost(spec: Any) -> float:
    """Expected training seconds on one core (measured at quick: 28 px, 4 tasks of 5 queries per
    class an iteration; the pixels and the tasks' images scale it)."""
    t = spec.train
    size = (float(t.get("image_size") or 28) / 28.0) ** 2
    tasks = float(t.get("meta_batch") or 4) / 4.0 * (float(t.get("k_shot", 1)) + float(t.get("q_query") or 5)) / 6.0
    per = _TRAIN_COST.get(spec.method, 0.6 if is_adversarial(spec.method) else 0.27)
    return float(t.get("iterations", 1)) * per * (1.0 + 0.25 * (float(t.get("k_shot", 1)) - 1)) * size * min(1.0, tasks)


def bank_requirements(spec: Any) -> list[dict[str, Any]]:
    """The episode banks a trial reads, made once per sweep (:mod:`advmeta.tune.banks`): ADML's and
    MAML-AD's surrogate-attacked training episodes, and the surrogate evaluation's test episodes.
    Banks are made with the default surrogate (conv4 over every class); others attack in the trial."""
    from advmeta.surrogate import DEFAULT_ARCH
    from advmeta.train import training_bank_request

    t = dict(spec.train)
    if t.get("surrogate_classes", "all") != "all":
        return []
    out = []
    req = training_bank_request(train_config(spec, RunContext(sweep_dir="")))
    if req is not None and req["surrogate_arch"] == DEFAULT_ARCH:
        out.append({k: req[k] for k in ("dataset", "split", "n_way", "k_shot", "q_query", "seed", "image_size",
                                        "surrogate_steps", "eps", "n_episodes")})
    for ev in spec.evals:
        if ev.get("scenario") == "surrogate":
            out.append({"dataset": t["dataset"], "split": ev.get("split", "test"), "n_way": int(t.get("n_way", 5)),
                        "k_shot": int(t.get("k_shot", 1)), "q_query": int(ev.get("q_query", t.get("q_query", 15))),
                        "seed": int(t.get("seed", 0)), "image_size": t.get("image_size"),
                        "surrogate_steps": int(t.get("surrogate_steps", 1500)),
                        "eps": [str(e) for e in ev.get("eps", [])], "n_episodes": int(ev.get("episodes", 100))})
    return out


def train_config(spec: Any, ctx: RunContext) -> Any:
    """The :class:`advmeta.train.TrainConfig` of a trial."""
    import dataclasses

    from advmeta.errors import ConfigError
    from advmeta.train import RUN_ONLY_FIELDS, TrainConfig

    t = dict(spec.train)
    # Every TrainConfig field a trial's settings may set: all but the run's context and the learner's.
    settable = {f.name for f in dataclasses.fields(TrainConfig)} - RUN_ONLY_FIELDS - {"method", "hparams"}
    unknown = sorted(set(t) - settable - {"budget"})
    if unknown:
        raise ConfigError(f"trial {spec.trial_id}: unknown training setting(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(settable))}")
    kwargs = {k: t[k] for k in settable if k in t}
    # threads: the trial's (ctx.threads, from its CPUs), never None — train() would set the
    # process's torch threads from OMP_NUM_THREADS or every CPU instead, and the trials that a
    # reused worker runs next would inherit that count; the thread count changes the last bits of
    # every trainer's weights (issue 25). A run-only field: resuming with another --cpus-per-trial
    # still matches the checkpoint.
    return TrainConfig(method=spec.method, hparams=spec.hparams, data_root=ctx.data_root,
                       device=ctx.device, threads=ctx.threads, **kwargs)


def protocols(spec: Any, ctx: RunContext) -> list[Any]:
    """The trial's ``evals`` as EvalProtocols, merged where compatible."""
    groups = _eval_groups(spec)
    # An attack that two groups run with the same settings runs once, on the larger group: the
    # smaller's episodes are the first of the larger's (same split, queries and seed; each
    # episode's attack draws from its own index), and the report reads them per episode.
    for g in groups:
        for h in groups:
            if (h is not g and h["n_episodes"] > g["n_episodes"]
                    and (h["split"], h["q_query"], h["steps"]) == (g["split"], g["q_query"], g["steps"])
                    and "whitebox" in h["scenarios"] and set(g["eps"]) <= set(h["eps"])):
                g["attacks"] = [a for a in g["attacks"]
                                if a not in h["attacks"] or g["settings"].get(a) != h["settings"].get(a)]
        if "whitebox" in g["scenarios"] and not g["attacks"]:
            g["scenarios"].remove("whitebox")
    return [_protocol(g, spec, ctx) for g in groups]


def _eval_groups(spec: Any) -> list[dict[str, Any]]:
    """The trial's evals grouped by split, episodes, attack steps and queries: each group's
    scenarios, attacks, ε (white-box and adaptive; surrogate apart), supports and attack settings."""
    default_eps = [Epsilon("2/255")]
    groups: dict[str, dict[str, Any]] = {}
    for ev in spec.evals:
        scenario = str(ev.get("scenario", "whitebox"))
        steps = ev.get("attack_steps")
        n = int(ev.get("episodes", 100))
        q = ev.get("q_query")
        key = f"{ev.get('split', 'test')}|{n}|{steps}|{q}"
        g = groups.setdefault(key, {"split": ev.get("split", "test"), "n_episodes": n, "steps": steps, "q_query": q,
                                    "scenarios": ["finetune"], "attacks": [], "eps": [], "surrogate_eps": [],
                                    "surrogate_supports": [], "settings": {}})
        for attack, settings in dict(ev.get("attack_params", {})).items():  # the budget's or the grid's
            g["settings"].setdefault(attack, {}).update(settings)
        if scenario not in g["scenarios"]:
            g["scenarios"].append(scenario)
        if scenario == "whitebox":
            g.setdefault("checks", ev.get("checks", {}))  # the first white-box table's masking checks
            g["attacks"] += [a for a in ev.get("attacks", ["pgd"]) if a not in g["attacks"] and a != "none"]
            g["eps"] += [e for e in ev.get("eps", default_eps) if e not in g["eps"]]
        elif scenario in ("support", "support+query"):  # PGD through the adaptation, at the table's ε
            g["eps"] += [e for e in ev.get("eps", default_eps) if e not in g["eps"]]
            g["adaptive"] = True
        elif scenario == "surrogate":
            g["surrogate_eps"] += [e for e in ev.get("eps", default_eps) if e not in g["surrogate_eps"]]
            g["surrogate_supports"] += [s for s in ev.get("support", ["clean"]) if s not in g["surrogate_supports"]]
    return list(groups.values())


def _protocol(g: Mapping[str, Any], spec: Any, ctx: RunContext) -> Any:
    """One group's :class:`~advmeta.protocol.EvalProtocol` (its attacks' settings: the budget's steps,
    then the grid's own)."""
    from advmeta.attacks import attack_info
    from advmeta.checks import CheckSettings
    from advmeta.protocol import EvalProtocol

    params = {a: {"steps": int(g["steps"])} for a in g["attacks"] if attack_info(a).iterative and g["steps"]}
    if g.get("adaptive") and g["steps"]:
        params.setdefault("pgd", {"steps": int(g["steps"])})
    for attack, settings in g["settings"].items():
        params[attack] = {**params.get(attack, {}), **settings}
    kwargs: dict[str, Any] = {"split": g["split"], "n_episodes": g["n_episodes"], "scenarios": tuple(g["scenarios"]),
                              "q_query": None if g["q_query"] is None else int(g["q_query"]),
                              "chunk": min(50, g["n_episodes"]), "device": ctx.device, "sweep": spec.sweep,
                              "trial_id": spec.trial_id, "attack_params": params}
    checks = g.get("checks", {})
    kwargs["checks"] = None if checks is False else CheckSettings(**dict(checks or {}))
    if kwargs["checks"] is not None and kwargs["checks"].converge_scope == "claims":
        from advmeta.claims import claimed_attacks

        kwargs["escalate_only"] = claimed_attacks(spec.method, g["attacks"])
    if g["attacks"]:
        kwargs.update(attacks=tuple(g["attacks"]))
    if g["eps"]:
        kwargs.update(eps=tuple(g["eps"]))
    if g["surrogate_eps"]:
        kwargs.update(surrogate_eps=tuple(g["surrogate_eps"]), surrogate_supports=tuple(g["surrogate_supports"]))
    kwargs.update(episodes_kwargs(spec, ctx, g["split"], g["n_episodes"]))
    return EvalProtocol(**kwargs)


def episodes_kwargs(spec: Any, ctx: RunContext, split: str, n_episodes: int) -> dict[str, Any]:
    """The standard episodes of a trial's evaluation on ``split`` (``ctx.episodes``): the manifest
    of its dataset and shape, and at most its count of episodes (a table asking more evaluates the
    manifest's; the rows' ``n_episodes`` say so). Empty without a manifest of ``split``.

    Raises:
        ConfigError: manifests were given but none is of the trial's dataset, split and shape.
    """
    from advmeta.data.manifest import select

    if not ctx.episodes:
        return {}
    cfg = train_config(spec, ctx)
    manifest = select(ctx.episodes, cfg.dataset, split, cfg.n_way, cfg.k_shot)
    if manifest is None:  # no manifest of this split: seeded episodes
        return {}
    n = min(n_episodes, len(manifest))
    return {"episodes": manifest, "n_episodes": n, "chunk": min(50, n)}


def bank_source(ctx: RunContext, cfg: Any, protocol: Any) -> Any:
    """A ``Bank`` callable over a matching episode bank in ``ctx.banks``, or ``None``."""
    from advmeta.bank import find_bank

    root = ctx.banks.get("test")
    # A bank holds the seed's episodes; a manifest's are others.
    if not root or "surrogate" not in protocol.scenarios or protocol.episodes is not None:
        return None
    bank = find_bank(root, dataset=cfg.dataset, split=protocol.split, n_way=cfg.n_way, k_shot=cfg.k_shot,
                     q_query=protocol.q_query or cfg.q_query, seed=cfg.seed, eps=protocol.surrogate_eps,
                     n_episodes=protocol.n_episodes, surrogate=surrogate_key(cfg))
    if bank is None:
        return None
    from advmeta.bank import episodes_pair

    def source(idx: Any, eps: float) -> tuple[Any, Any]:
        return episodes_pair(bank, idx, eps)

    source.path = bank.path  # type: ignore[attr-defined]
    return source


def train_bank_source(ctx: RunContext, cfg: Any) -> Any:
    """The training bank of an ADML / MAML-AD trial in ``ctx.banks`` (``train``, else ``test``), or ``None``.

    The result is an :class:`advmeta.bank.EpisodeBank`: a ``Bank`` that :func:`advmeta.train.train`
    reads the surrogate images of its training episodes from.
    """
    from advmeta.bank import find_bank
    from advmeta.train import training_bank_request

    req = training_bank_request(cfg)
    root = ctx.banks.get("train") or ctx.banks.get("test")
    if req is None or not root:
        return None
    return find_bank(root, dataset=req["dataset"], split="train", n_way=req["n_way"], k_shot=req["k_shot"],
                     q_query=req["q_query"], seed=req["seed"], eps=req["eps"], n_episodes=req["n_episodes"],
                     surrogate=req["surrogate"])


def surrogate_key(cfg: Any) -> str:
    """Identity of the surrogate a training config uses (what a bank must have been made with)."""
    from advmeta.bank import surrogate_key as key

    return key(cfg.surrogate_arch, cfg.surrogate_steps, cfg.seed, cfg.image_size, cfg.surrogate_classes)


def _dedupe(rows: list[dict[str, Any]], key_cols: tuple[str, ...]) -> list[dict[str, Any]]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for r in rows:
        params = "" if r.get("attack") == "none" else r.get("attack_params")
        key = tuple(r.get(c) for c in key_cols) + (params,)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run(spec: Any, ctx: RunContext, report: Report) -> TrialOutput:
    """Train (resuming from ``ctx.work_dir``), then evaluate every protocol of the trial."""
    import dataclasses

    from advmeta.evaluate import evaluate
    from advmeta.train import train

    cfg = train_config(spec, ctx)
    train_bank = train_bank_source(ctx, cfg)
    ckpt, metrics = train(cfg, Path(ctx.work_dir), resume=True, progress=ctx.progress,
                          report=lambda m, path: report(curve_metrics(m), path), bank=train_bank)
    rows: list[dict[str, Any]] = []
    episode_rows: list[dict[str, Any]] = []
    check_rows: list[dict[str, Any]] = []
    used: list[str] = [train_bank.path] if train_bank is not None else []
    checked: set[str] = set()
    for protocol in protocols(spec, ctx):
        if protocol.checks is not None and "whitebox" in protocol.scenarios and protocol.eps:
            # Two tables' white-box evaluations at one ε would check the same model twice.
            first = protocol.eps[0].text
            if first in checked:
                protocol = dataclasses.replace(protocol, masking_checks=False)  # escalation still runs
            checked.add(first)
        source = bank_source(ctx, cfg, protocol)
        if source is not None:
            used.append(source.path)
        r, e, c = evaluate(ckpt, protocol, progress=ctx.progress, bank=source)
        rows += r
        episode_rows += e
        check_rows += c
    keys = ("scenario", "support", "query", "attack", "eps_str", "finetune_step")
    rows = _dedupe(rows, keys)
    # Protocols merged from several tables share their clean rows; attacked rows with other
    # settings (PGD-10 vs PGD-20) are kept: the summary tells them apart by attack_params.
    clean = _dedupe([r for r in episode_rows if r.get("attack") == "none"], keys + ("episode_index",))
    episode_rows = clean + [r for r in episode_rows if r.get("attack") != "none"]
    final: Mapping[str, Any] = {k: v for k, v in metrics.items() if k not in ("history", "hparams")}
    return TrialOutput(rows, episode_rows, {**final, "device": rows[0]["device"] if rows else ctx.device,
                                            "episode_bank": ",".join(used)}, check_rows,
                       curve_rows(metrics["history"], cfg, metrics["hparams"]))


CURVE_METRICS = ("iteration", "train_loss", "train_adv_acc", "val_acc", "val_acc_ci95", "train_seconds")
"""The ``curves`` columns a meta-learner's training reports (its history rows carry them under these names)."""


def curve_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune (and its loggers) at a row of the learning curve: its ``curves`` metrics."""
    return {k: row[k] for k in CURVE_METRICS if k in row}


def curve_rows(history: list[dict[str, Any]], cfg: Any, hparams: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``curves`` rows of a meta-learner's training history (one every ``advmeta.train.curve_every``
    iterations; the runner adds the ids and provenance)."""
    from advmeta.results import hparam_columns

    fixed = {"method": cfg.method, **hparam_columns(dict(hparams)), "dataset": cfg.dataset, "k_shot": cfg.k_shot,
             "seed": cfg.seed}
    return [{**fixed, **curve_metrics(r)} for r in history]


def _block_protocol(protocol: Any, keys: Sequence[Mapping[str, Any]], start: int, count: int) -> Any:
    """``protocol`` cut to the rows ``keys`` (those it produces) on ``count`` episodes from
    ``start``, or None when it produces none of them."""
    import dataclasses
    import json

    from advmeta.attacks import AttackSpec
    from advmeta.protocol import ADAPTIVE_SCENARIOS

    scenarios: list[str] = []
    attacks: list[str] = []
    eps: list[Any] = []
    for key in keys:
        scenario, attack, es = str(key["scenario"]), str(key["attack"]), str(key["eps_str"])
        on = [e for e in protocol.eps if e.text == es]
        if scenario == "whitebox" and "whitebox" in protocol.scenarios:
            if attack == "none":
                hit: list[str] = []
            elif attack == "worst":
                hit = list(protocol.attacks) if key.get("attack_params") == json.dumps(
                    {"attacks": list(protocol.attacks)}) else []
            else:
                hit = [attack] if attack in protocol.attacks and on and AttackSpec(
                    attack, on[0], protocol.params_of(attack)).params_json() == key.get("attack_params") else []
            if (hit or attack == "none") and (on or attack == "none"):
                scenarios.append(scenario)
                attacks += hit
                eps += on
        elif scenario in ADAPTIVE_SCENARIOS and scenario in protocol.scenarios and on:
            pgd = AttackSpec("pgd", on[0], protocol.params_of("pgd")).accepted()
            if json.dumps({**pgd, "through": "adaptation"}, sort_keys=True) == key.get("attack_params"):
                scenarios.append(scenario)
                eps += on
        elif scenario == "finetune":
            scenarios.append(scenario)
    if not scenarios:
        return None
    wanted = tuple(dict.fromkeys(scenarios))
    return dataclasses.replace(
        protocol, episode_start=start, n_episodes=count, chunk=min(protocol.chunk, count), scenarios=wanted,
        attacks=tuple(dict.fromkeys(attacks)), eps=tuple(dict.fromkeys(eps)) or protocol.eps)


def extend(spec: Any, ctx: RunContext, keys: Sequence[Mapping[str, Any]], start: int,
           count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trial's rows ``keys`` on ``count`` more test episodes from bank index ``start``: its
    trained checkpoint evaluated again as :func:`run` evaluated it (same attacks, settings,
    escalation and per-episode generators), on those episodes only (tune/extend.py).

    Returns:
        The block's summary rows and episode rows, for the rows ``keys`` only.
    """
    from advmeta.evaluate import evaluate
    from advmeta.results import SUMMARY_KEY
    from advmeta.train import train

    cfg = train_config(spec, ctx)
    ckpt, _ = train(cfg, Path(ctx.work_dir), resume=True, progress=False)  # finished: loads, trains nothing
    names = [k for k in SUMMARY_KEY if k != "trial_id"]
    wanted = {tuple(str(k.get(c)) for c in names) for k in keys}
    rows: list[dict[str, Any]] = []
    episode_rows: list[dict[str, Any]] = []
    for protocol in protocols(spec, ctx):
        block = _block_protocol(protocol, keys, start, count)
        if block is None:
            continue
        r, e, _ = evaluate(ckpt, block, progress=False)
        rows += [x for x in r if tuple(str(x.get(c)) for c in names) in wanted]
        episode_rows += [x for x in e if tuple(str(x.get(c)) for c in names) in wanted]
    keys_cols = ("scenario", "support", "query", "attack", "attack_params", "eps_str", "finetune_step")
    return _dedupe(rows, keys_cols), _dedupe(episode_rows, keys_cols + ("episode_index",))
