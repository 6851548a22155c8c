"""Evaluation of a meta-trained checkpoint on a fixed bank of test episodes (docs/protocols.md#evaluation-protocols).

``evaluate(checkpoint, EvalProtocol(...))`` returns the summary rows (accuracy ± 95% CI per
scenario, attack, ε and fine-tune step) and the per-episode rows of :mod:`advmeta.results`.
Attacks run batched over many episodes at once, at the adapted weights, in the same batch-norm
mode as the evaluation.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from advmeta import loop
from advmeta.checks import MaskingChecks
from advmeta.converge import Escalation, escalate, escalate_attack, worst_of
from advmeta.env import configure_allocator, provenance, resolve_device
from advmeta.errors import NonFiniteLossError
from advmeta.eps import Epsilon, format_eps
from advmeta.hparams import config_values
from advmeta.attacks import cross_entropy
from advmeta.learners import AttackSpec, Learner
from advmeta.learners.tafl import l_ar
from advmeta.protocol import ADAPTIVE_SCENARIOS, Bank, EvalProtocol
from advmeta.results import hparam_columns
from advmeta.stats import mean_ci95
from advmeta.train import TrainConfig, build_learner, load_dataset, make_surrogate

if TYPE_CHECKING:
    from advmeta.data import Episodes

Key = tuple[str, str, str, str, str, int]  # scenario, support, query, attack, eps_str, step


def load_learner(checkpoint: str | Path, device: torch.device) -> tuple[Learner, TrainConfig, dict[str, Any], Any]:
    """The trained learner of a checkpoint (network in ``eval()`` mode), its config, state and dataset."""
    state = loop.load_checkpoint(checkpoint, "meta", map_location=device)
    cfg = TrainConfig(**state["config"])
    ds = load_dataset(cfg)
    learner = build_learner(cfg, ds.image_shape, device)
    learner.net.load_state_dict(state["state"]["model"])
    learner.net.eval()
    return learner, cfg, state, ds


def query_scores(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-query correctness and cross-entropy. Shape: (T, B, N), (T, B) → (T, B), (T, B)."""
    ce = cross_entropy(logits, y)
    return (logits.argmax(-1) == y), ce


def mix_support(clean: Tensor, adv: Tensor, y: Tensor, n_adv: int) -> Tensor:
    """The support with the last ``n_adv`` images of every class replaced by their adversarial version."""
    same = (y[:, :, None] == y[:, None, :]) & torch.ones(y.shape[1], y.shape[1], dtype=torch.bool,
                                                        device=y.device).tril(-1)[None]
    rank = same.sum(-1)  # position of each image within its class
    k = y.shape[1] // (int(y.max()) + 1)
    mask = (rank >= k - n_adv).view(*y.shape, *([1] * (clean.dim() - 2)))
    return torch.where(mask, adv, clean)


class _Acc:
    """Per-episode results grouped by row key."""

    def __init__(self) -> None:
        self.acc: dict[Key, list[float]] = defaultdict(list)
        self.loss: dict[Key, list[float]] = defaultdict(list)
        self.lar: dict[Key, list[float | None]] = defaultdict(list)
        self.idx: dict[Key, list[int]] = defaultdict(list)
        self.seconds: dict[Key, float] = defaultdict(float)
        self.meta: dict[Key, tuple[str, float]] = {}
        self.effort: dict[Key, list[Escalation]] = defaultdict(list)

    def add(self, key: Key, correct: Tensor, ce: Tensor, index: Tensor, params: str, eps: float,
            lar: Tensor | None = None, seconds: float = 0.0, effort: Escalation | None = None) -> None:
        """Record one chunk of episodes.

        Raises:
            NonFiniteLossError: a query's loss is NaN or infinite (the logits are): the trial's
                rows become an error row naming it, never an accuracy computed from NaN logits.
        """
        bad = int((~torch.isfinite(ce)).sum())
        if bad:
            scenario, support, query, attack, eps_str, step = key
            raise NonFiniteLossError(
                f"evaluation: non-finite loss on {bad} of {ce.numel()} queries ({scenario}, support {support}, "
                f"query {query}, attack {attack}, ε {eps_str}, fine-tune step {step}); the logits overflowed — "
                "lower the inner learning rate or the fine-tune steps")
        self.acc[key] += (correct.float().mean(1) * 100).tolist()
        self.loss[key] += ce.mean(1).tolist()
        self.lar[key] += lar.tolist() if lar is not None else [None] * correct.shape[0]
        self.idx[key] += index.tolist()
        self.seconds[key] += seconds
        self.meta[key] = (params, eps)
        if effort is not None:
            self.effort[key].append(effort)

    def effort_columns(self, key: Key) -> dict[str, Any]:
        """``attack_iterations``, ``attack_restarts`` and ``converged`` of a row (over its chunks)."""
        runs = [e for e in self.effort.get(key, []) if e.iterations is not None]
        if not runs:
            return {"attack_iterations": None, "attack_restarts": None, "converged": None}
        checked = [e.converged for e in runs if e.converged is not None]
        return {"attack_iterations": max(int(e.iterations or 0) for e in runs),
                "attack_restarts": max(int(e.restarts or 0) for e in runs),
                "converged": all(checked) if checked else None}


def _generators(seed: int, index: Tensor, tag: str, device: torch.device) -> list[torch.Generator]:
    from advmeta.data import stable_hash

    return [torch.Generator(device=device).manual_seed(stable_hash(str(seed), str(int(i)), tag) % (2**63))
            for i in index]


def _whitebox(learner: Learner, fn: Any, ep: Episodes, step: int, protocol: EvalProtocol, seed: int, acc: _Acc,
              clean: tuple[Tensor, Tensor], last: bool, checks: MaskingChecks | None = None) -> dict[str, Tensor]:
    """The white-box attacks at every ε, escalated to convergence at the last fine-tune step
    (:mod:`advmeta.converge`; settings from the protocol's checks, none without them); returns the per-query correctness
    (T, B) of the bounded gradient attacks at the first ε (what the masking checks compare with)."""
    from advmeta.attacks import attack_info

    y = ep.query_y
    clean_ok, clean_ce = clean
    first: dict[str, Tensor] = {}
    for eps in protocol.eps:
        e, es = eps, eps.text  # an Epsilon: the float and its k/255
        worst_ok, worst_ce = clean_ok.clone(), clean_ce.clone()
        t_all, efforts = 0.0, []
        for name in protocol.attacks:
            spec = AttackSpec(name, eps, protocol.params_of(name))
            t0 = time.perf_counter()
            x_adv = spec(fn, ep.query_x, y, _generators(seed, ep.index, f"{name}|{es}", ep.query_x.device))
            with torch.no_grad():
                ok, ce = query_scores(fn(x_adv), y)
            t1 = time.perf_counter()
            tol, cap = protocol.escalation(name) if last else (0.0, 1)
            ok, effort = escalate_attack(spec, fn, ep.query_x, y, ok,
                                         lambda tag, live: _generators(seed, ep.index[live], f"{name}|{es}|{tag}",
                                                                       ep.query_x.device), tol, cap)
            dt = time.perf_counter() - t0
            t_all += dt
            efforts.append(effort)
            lar = l_ar(ce.sum(1), clean_ce.sum(1), protocol.l_ar_delta)
            acc.add(("whitebox", "clean", "adv", name, es, step), ok, ce, ep.index, spec.params_json(), e, lar, dt,
                    effort)
            if eps == protocol.eps[0] and not attack_info(name).gradient_free and attack_info(name).bounded:
                first[name] = ok
            if checks is not None and eps == protocol.eps[0]:
                checks.escalated(name, int(spec.accepted().get("steps", 0) or 0), effort, int(ok.shape[0]),
                                 time.perf_counter() - t1)
            worst_ok &= ok
            worst_ce = torch.maximum(worst_ce, ce)
        if protocol.worst and len(protocol.attacks) > 1:
            lar = l_ar(worst_ce.sum(1), clean_ce.sum(1), protocol.l_ar_delta)
            acc.add(("whitebox", "clean", "adv", "worst", es, step), worst_ok, worst_ce, ep.index,
                    json.dumps({"attacks": list(protocol.attacks)}), e, lar, t_all, worst_of(efforts))
    return first


def _checks(learner: Learner, checks: MaskingChecks, fn: Any, ep: Episodes, steps: int, seed: int,
            whitebox_ok: dict[str, Tensor], transfer: Any) -> None:
    """The masking checks on the chunk's first episodes (those the checks cover)."""
    m = checks.wants(ep.index)
    if m == 0:
        return
    sub = slice(0, m)
    sx, sy, qx, qy = ep.support_x[sub], ep.support_y[sub], ep.query_x[sub], ep.query_y[sub]
    with torch.no_grad():
        reference = fn(ep.query_x)[sub]
    index = ep.index[sub]
    transfer_x, note = (None, "the trial has no surrogate attack at this ε") if transfer is None else transfer(ep, m)
    checks.run(lambda: learner.adapted(sx, sy, steps)[-1], reference, qx, qy,
               {k: v[sub] for k, v in whitebox_ok.items()},
               lambda tag: _generators(seed, index, f"{tag}|{checks.eps_str}", qx.device),
               transfer_x=transfer_x, transfer_note=note)


def _adaptive(learner: Learner, ep: Episodes, steps: int, protocol: EvalProtocol, seed: int, acc: _Acc) -> None:
    """The attacks through adaptation (``support``, ``support+query``) at the last fine-tune step,
    escalated to convergence as the white-box attacks are."""
    for eps in protocol.eps:
        e, es = eps, eps.text  # an Epsilon: the float and its k/255
        # PGD's settings as the white-box PGD runs them (step size "auto" resolved against ε).
        pgd = AttackSpec("pgd", eps, protocol.params_of("pgd")).accepted()
        params = json.dumps({**pgd, "through": "adaptation"}, sort_keys=True)
        for scenario, on in ADAPTIVE_SCENARIOS.items():
            if scenario not in protocol.scenarios:
                continue
            t0 = time.perf_counter()

            def run(n_steps: int, live: Tensor, tag: str, scenario: str = scenario,
                    on: tuple[bool, bool] = on) -> tuple[Tensor, Tensor]:
                return _through_adaptation(learner, ep, live, steps, e, pgd, n_steps, on,
                                           _generators(seed, ep.index[live], tag, ep.query_x.device))

            def round_(n_steps: int, r: int, live: Tensor, tag: str = f"{scenario}|{es}") -> Tensor:
                return run(n_steps, live, f"{tag}|escalate{r}")[0]

            ok, ce = run(int(pgd["steps"]), torch.arange(ep.query_x.shape[0]), f"{scenario}|{es}")
            ok, effort = escalate(round_, int(pgd["steps"]), bool(pgd["random_start"]), ok, *protocol.escalation(scenario))
            acc.add((scenario, "adv", "adv" if on[1] else "clean", "pgd", es, steps), ok, ce, ep.index, params, e,
                    seconds=time.perf_counter() - t0, effort=effort)


def _through_adaptation(learner: Learner, ep: Episodes, live: Tensor, steps: int, eps: float, pgd: dict[str, Any],
                        n_steps: int, on: tuple[bool, bool], gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """PGD through the adaptation on the episodes ``live``: per-query correctness and loss of
    the model adapted to the perturbed support, on the (perturbed) query."""
    from advmeta.attacks.episode import episode_pgd

    sy, qy = ep.support_y[live], ep.query_y[live]
    sx, qx = episode_pgd(learner.episode_fn(sy, steps), ep.support_x[live], ep.query_x[live], qy, eps=eps,
                         steps=n_steps, step_size=pgd["step_size"], support=on[0], query=on[1],
                         random_start=bool(pgd["random_start"]), generator=gens)
    with torch.no_grad():
        return query_scores(learner.adapted(sx, sy, steps)[-1](qx), qy)


def surrogate_params(cfg: TrainConfig) -> str:
    """The ``attack_params`` JSON of the surrogate scenario's rows: which surrogate, which labels."""
    labels = "true" if cfg.surrogate_classes == "all" else "predicted (unseen classes)"
    return json.dumps({"surrogate": "fgsm", "arch": cfg.surrogate_arch, "steps": cfg.surrogate_steps,
                       "classes": cfg.surrogate_classes, "labels": labels}, sort_keys=True)


def _surrogate(learner: Learner, ep_clean: Any, ep_adv: Any, eps: Epsilon, steps: int, k_shot: int,
               protocol: EvalProtocol, acc: _Acc, params: str, clean_fns: list[Any] | None = None) -> None:
    """ADML's table at one ε; ``clean_fns``: the clean support's adapted models, when already computed."""
    es = eps.text
    supports = {"clean": ep_clean.support_x, "adv": ep_adv.support_x}
    if "adv40" in protocol.surrogate_supports and k_shot >= 5:
        supports["adv40"] = mix_support(ep_clean.support_x, ep_adv.support_x, ep_clean.support_y, round(0.4 * k_shot))
    for s_name in protocol.surrogate_supports:
        if s_name not in supports:
            continue
        t0 = time.perf_counter()
        fns = (clean_fns if s_name == "clean" and clean_fns is not None
               else learner.adapted(supports[s_name], ep_clean.support_y, steps))
        # The table reads the adapted model (the last fine-tune step); the clean curve over the
        # steps is the finetune scenario's. Scoring every step here cost 4x the table (measured).
        step, fn = len(fns) - 1, fns[-1]
        for q_name, qx in (("clean", ep_clean.query_x), ("adv", ep_adv.query_x)):
            with torch.no_grad():
                ok, ce = query_scores(fn(qx), ep_clean.query_y)
            acc.add(("surrogate", s_name, q_name, "transfer" if q_name == "adv" or s_name != "clean" else "none",
                     es, step), ok, ce, ep_clean.index, params, eps, seconds=time.perf_counter() - t0)
            t0 = time.perf_counter()


def evaluate(checkpoint: str | Path, protocol: EvalProtocol | None = None, progress: bool = True,
             bank: Bank | None = None) -> Evaluation:
    """Evaluate a checkpoint under ``protocol``.

    Args:
        checkpoint: a checkpoint written by :func:`advmeta.train.train`.
        protocol: the scenarios, attacks, ε and episode bank (default :class:`EvalProtocol`).
        progress: print one line per chunk of episodes on stderr.
        bank: optional precomputed source of (clean, surrogate-adversarial) episodes by bank
            index and ε, used by the ``surrogate`` scenario instead of computing the surrogate
            FGSM here (see :data:`advmeta.protocol.Bank`).

    Returns:
        An :class:`Evaluation` ``(rows, episodes, checks)``: dicts with the columns of
        ``advmeta.results.SUMMARY_COLUMNS`` (plus ``hp_*``), ``EPISODE_COLUMNS`` and
        ``CHECK_COLUMNS`` (the masking checks of the white-box evaluation; empty without one).
    """
    configure_allocator()
    protocol = protocol or EvalProtocol()
    learner, cfg, state, ds = load_learner(checkpoint, resolve_device(protocol.device))
    return evaluate_learner(learner, cfg, state, ds, protocol, progress=progress, bank=bank)


def evaluate_learner(learner: Learner, cfg: TrainConfig, state: dict[str, Any], ds: Any, protocol: EvalProtocol,
                     progress: bool = True, bank: Bank | None = None, method: str | None = None) -> Evaluation:
    """The evaluation of :func:`evaluate` on a ready learner: advmeta's own, or any few-shot model
    behind the same interface (:class:`advmeta.external.ExternalLearner`).

    Args:
        learner: what is evaluated (``adapted``, ``episode_fn``, ``test_steps``, ``maml_family``,
            ``first_order``, ``train_eps``, ``cfg``; its network in the evaluation's mode).
        cfg: the training configuration the rows record (dataset, episode shape, seed, batch-norm
            mode) and the fixed surrogate of the ``surrogate`` scenario and transfer check is made from.
        state: the checkpoint's facts the rows record (``step``, ``image_shape``, ``train_seconds``).
        ds: the few-shot dataset of ``cfg``.
        protocol, progress, bank: as :func:`evaluate`.
        method: the rows' ``method`` (default ``cfg.method``).

    Returns:
        An :class:`Evaluation`; with ``protocol.episodes`` every summary and episode row records
        the manifest's hash (``episodes_hash``), else that column is empty.
    """
    from advmeta.data import EpisodeSampler, EpisodeSpec

    configure_allocator()
    device = resolve_device(protocol.device)
    name = method or cfg.method
    manifest = protocol.episodes
    n_way, k_shot = protocol.n_way or cfg.n_way, protocol.k_shot or cfg.k_shot
    # A manifest fixes the queries (and is checked against the split and shape by the sampler).
    q_query = manifest.q_query if manifest is not None else protocol.q_query or cfg.q_query
    seed = cfg.seed if protocol.seed is None else protocol.seed
    sampler = EpisodeSampler(ds, protocol.split, EpisodeSpec(n_way=n_way, k_shot=k_shot, q_query=q_query), seed=seed,
                             manifest=manifest)
    steps = learner.test_steps if protocol.finetune_steps is None else protocol.finetune_steps
    if not learner.maml_family:
        steps = 0
    surrogate = None
    if "surrogate" in protocol.scenarios and bank is None:
        surrogate = make_surrogate(cfg, ds, device, progress)
    sur_params = surrogate_params(cfg)
    acc = _Acc()
    checks, transfer = _masking_checks(protocol, cfg, n_way, bank, surrogate)
    t_start = time.perf_counter()
    begin, end = protocol.episode_start, protocol.episode_start + protocol.n_episodes
    for start in range(begin, end, protocol.chunk):
        idx = list(range(start, min(end, start + protocol.chunk)))
        ep = sampler.sample(idx, device=device)
        t0 = time.perf_counter()
        fns = learner.adapted(ep.support_x, ep.support_y, steps)
        adapt_s = time.perf_counter() - t0
        for step, fn in enumerate(fns):
            _adaptation_step(learner, fn, ep, step, step == len(fns) - 1, adapt_s / len(fns), protocol, seed, acc,
                             checks, transfer)
        if "surrogate" in protocol.scenarios:
            _surrogate_scenario(learner, ep, idx, fns, steps, k_shot, protocol, acc, sur_params, bank, surrogate, device)
        if progress:
            sys.stderr.write(f"\reval {name}: {idx[-1] + 1 - begin}/{protocol.n_episodes} episodes "
                             f"({time.perf_counter() - t_start:.0f} s)   ")
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\n")
    rows, episode_rows = _rows(acc, learner, cfg, state, protocol, device, (n_way, k_shot, q_query), seed)
    for row in rows + episode_rows:
        row.update(method=name, episodes_hash=manifest.hash if manifest is not None else "")
    check_rows = [] if checks is None else checks.rows(
        {"sweep": protocol.sweep, "trial_id": protocol.trial_id, "method": name, "dataset": cfg.dataset,
         "split": protocol.split, "seed": seed})
    return Evaluation(rows, episode_rows, check_rows)


def _surrogate_scenario(learner: Learner, ep: Episodes, idx: list[int], fns: list[Any], steps: int, k_shot: int,
                        protocol: EvalProtocol, acc: _Acc, params: str, bank: Bank | None, surrogate: Any,
                        device: torch.device) -> None:
    """ADML's table on the episodes ``idx`` at every surrogate ε: their surrogate-attacked version
    from the bank, else from the surrogate; ``fns``: the clean support's adapted models, reused
    where the bank's clean episodes are these."""
    for e in protocol.surrogate_eps:
        if bank is not None:
            ep_c, ep_a = bank(idx, e)
            ep_c, ep_a = ep_c.to(device), ep_a.to(device)
        else:
            assert surrogate is not None  # made whenever there is no bank
            ep_c, ep_a = ep, surrogate.attack_episodes(ep, e, protocol.split)
        # The clean support was adapted to above: reuse it (same episodes, same weights).
        same = ep_c is ep or (torch.equal(ep_c.support_x, ep.support_x) and torch.equal(ep_c.support_y, ep.support_y))
        _surrogate(learner, ep_c, ep_a, e, steps, k_shot, protocol, acc, params, fns if same else None)


def _masking_checks(protocol: EvalProtocol, cfg: TrainConfig, n_way: int, bank: Bank | None,
                    surrogate: Any) -> tuple[MaskingChecks | None, Any]:
    """The masking checks of the white-box evaluation at its first ε, and the transfer source they
    compare with; ``(None, None)`` without them."""
    if protocol.checks is None or not protocol.masking_checks or "whitebox" not in protocol.scenarios or not protocol.eps:
        return None, None
    e0 = protocol.eps[0]
    checks = MaskingChecks(protocol.checks, n_way, e0, AttackSpec("pgd", e0, protocol.params_of("pgd")).accepted(),
                           protocol.params_of("square"), transductive=cfg.bn_mode == "batch")
    return checks, _transfer_source(protocol, bank, surrogate, e0)


def _adaptation_step(learner: Learner, fn: Any, ep: Episodes, step: int, last: bool, seconds: float,
                     protocol: EvalProtocol, seed: int, acc: _Acc, checks: MaskingChecks | None, transfer: Any) -> None:
    """The rows of one fine-tune step's adapted model ``fn``: clean (``finetune``), white-box (the
    last step, or every one with ``attack_every_step``) with the masking checks, and the adaptive
    scenarios at the last step."""
    with torch.no_grad():
        clean = query_scores(fn(ep.query_x), ep.query_y)
    if "finetune" in protocol.scenarios:
        acc.add(("finetune", "clean", "clean", "none", "0/255", step), *clean, ep.index, "{}", 0.0, seconds=seconds)
    if "whitebox" in protocol.scenarios and (last or protocol.attack_every_step):
        if last:
            acc.add(("whitebox", "clean", "clean", "none", "0/255", step), *clean, ep.index, "{}", 0.0)
        first = _whitebox(learner, fn, ep, step, protocol, seed, acc, clean, last, checks if last else None)
        if last and checks is not None:
            _checks(learner, checks, fn, ep, step, seed, first, transfer)
    if last and any(sc in protocol.scenarios for sc in ADAPTIVE_SCENARIOS):
        _adaptive(learner, ep, step, protocol, seed, acc)


def _transfer_source(protocol: EvalProtocol, bank: Bank | None, surrogate: Any, eps: float) -> Any:
    """``(ep, m) -> (adversarial queries of ep's first m episodes, note)`` from the trial's surrogate
    attack at ``eps``, or ``None`` when the trial has none at that ε."""
    if "surrogate" not in protocol.scenarios or not any(abs(e - eps) < 1e-12 for e in protocol.surrogate_eps):
        return None

    def source(ep: Episodes, m: int) -> tuple[Tensor | None, str]:
        idx = [int(i) for i in ep.index[:m]]
        if bank is not None:
            clean, adv = bank(idx, eps)
            if not torch.equal(clean.query_x.to(ep.query_x.device), ep.query_x[:m]):
                return None, "the surrogate bank's episodes differ from the evaluated ones"
            return adv.query_x.to(ep.query_x.device), ""
        return surrogate.attack_episodes(ep, eps, protocol.split).query_x[:m], ""

    return source


class Evaluation(NamedTuple):
    """What :func:`evaluate` returns: the summary rows, the per-episode rows and the masking checks'
    rows (columns of ``advmeta.results``' ``summary``, ``episodes`` and ``checks`` tables)."""

    rows: list[dict[str, Any]]
    episodes: list[dict[str, Any]]
    checks: list[dict[str, Any]]


def _rows(acc: _Acc, learner: Learner, cfg: TrainConfig, state: dict[str, Any], protocol: EvalProtocol,
          device: torch.device, shape: tuple[int, int, int], seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    hp = config_values(learner.cfg)
    base = {
        "sweep": protocol.sweep, "trial_id": protocol.trial_id, "status": "ok", "error": "",
        "method": cfg.method, **hparam_columns(hp), "dataset": cfg.dataset, "split": protocol.split,
        "image_size": int(learner_image_size(state)), "n_way": shape[0], "k_shot": shape[1], "q_query": shape[2],
        "seed": seed, "bn_mode": cfg.bn_mode, "first_order": learner.first_order,
        "train_iterations": int(state["step"]), "train_eps": learner.train_eps,
        "train_eps_str": format_eps(learner.train_eps), "train_seconds": float(state.get("train_seconds", np.nan)),
        **provenance(str(device)),
    }
    rows, eps_rows = [], []
    for key in acc.acc:
        scenario, support, query, attack, eps_str, step = key
        params, eps = acc.meta[key]
        mean, ci = mean_ci95(acc.acc[key])
        rows.append({**base, "scenario": scenario, "support": support, "query": query, "attack": attack,
                     "attack_params": params, "eps": eps, "eps_str": eps_str, "finetune_step": step,
                     "n_episodes": len(acc.acc[key]), "acc": mean, "acc_ci95": ci,
                     "loss": float(np.mean(acc.loss[key])), "eval_seconds": acc.seconds[key],
                     **acc.effort_columns(key)})
        for i, a, l, r in zip(acc.idx[key], acc.acc[key], acc.loss[key], acc.lar[key]):
            eps_rows.append({"sweep": protocol.sweep, "trial_id": protocol.trial_id, "method": cfg.method,
                             "dataset": cfg.dataset, "split": protocol.split, "seed": seed, "scenario": scenario,
                             "support": support, "query": query, "attack": attack, "attack_params": params,
                             "eps_str": eps_str, "finetune_step": step, "episode_index": i, "acc": a, "loss": l,
                             "l_ar": r})
    return rows, eps_rows


def learner_image_size(state: dict[str, Any]) -> int:
    """Image side recorded in a checkpoint."""
    return int(state["image_shape"][1])
