"""How robust is *your* few-shot model: the full adaptive evaluation of any module, with a record.

:func:`evaluate_model` takes a torch module and how it meets an episode
(:mod:`advmeta.external`); :func:`evaluate_checkpoint` takes an advmeta trial's checkpoint. Both
run advmeta's evaluator (:func:`advmeta.evaluate.evaluate_learner`) under the protocol of a
budget (:func:`advmeta.plan.evaluation.budget_protocol`: what the ``adaptive`` table runs in a
sweep, plus the surrogate's transfer) or one given, on standard episodes when a manifest is given,
and return the rows (the sweep's schema, the model's name in ``method``) and a record
(:func:`record`). With ``out`` they write ``summary.parquet``, ``episodes.parquet``,
``checks.parquet`` and ``record.json`` there, each atomically, and only after the evaluation
succeeded: bad input is an error before anything is written.

Example:
    >>> from advmeta import evaluate_model                                  # doctest: +SKIP
    >>> res = evaluate_model(my_net, adapt="protonet", dataset="omniglot", eps=["8/255"],
    ...                      budget="smoke", episodes="omniglot-test-5way-1shot")   # doctest: +SKIP
    >>> res.record["strongest"]                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from advmeta.data.manifest import Manifest, read_manifest
from advmeta.eps import Eps
from advmeta.errors import ConfigError
from advmeta.leaderboard import RECORD_FORMAT, summarize, write_record
from advmeta.protocol import EvalProtocol

REPORTED_KEYS = ("clean", "pgd", "autoattack", "worst", "support", "support+query", "transfer")


class ModelEvaluation(NamedTuple):
    """Rows of the ``summary``, ``episodes`` and ``checks`` tables, and the record."""

    rows: list[dict[str, Any]]
    episodes: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    record: dict[str, Any]


def parse_reported(text: str | Mapping[str, Any] | None) -> dict[str, float]:
    """The author's own numbers, ``clean=98.1,autoattack=45.2`` (accuracy %, keys of :data:`REPORTED_KEYS`)."""
    if not text:
        return {}
    pairs = text.items() if isinstance(text, Mapping) else (p.split("=", 1) for p in str(text).split(",") if p.strip())
    out: dict[str, float] = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"--reported {text!r}: expected KEY=ACCURACY pairs, e.g. clean=98.1,autoattack=45.2")
        key, value = str(pair[0]).strip(), pair[1]
        if key not in REPORTED_KEYS:
            raise ConfigError(f"--reported: unknown key {key!r}; known: {', '.join(REPORTED_KEYS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--reported {key}={value!r}: not a number") from None
        if not 0 <= out[key] <= 100:
            raise ConfigError(f"--reported {key}={value}: an accuracy in % (0–100)")
    return out


def _manifest(episodes: str | Path | Manifest | None) -> Manifest | None:
    return episodes if isinstance(episodes, Manifest) or episodes is None else read_manifest(episodes)


def _protocol(protocol: EvalProtocol | None, budget: str, dataset: str, eps: Sequence[Eps] | None, n_way: int,
              k_shot: int, seed: int, device: str, manifest: Manifest | None) -> tuple[EvalProtocol, int]:
    """The protocol and the surrogate's training steps (the budget's)."""
    if protocol is not None:
        if manifest is not None:
            protocol = dataclasses.replace(protocol, episodes=manifest, split=manifest.split)
        return protocol, 1500
    from advmeta.plan.evaluation import budget_protocol

    p, b = budget_protocol(budget, dataset, eps, n_way=n_way, k_shot=k_shot, seed=seed, device=device,
                           manifest=manifest)
    return p, int(b.surrogate_steps)


def _shape(manifest: Manifest | None, n_way: int | None, k_shot: int | None) -> tuple[int, int]:
    if manifest is None:
        return n_way or 5, k_shot or 1
    from advmeta.data.manifest import check_compatible

    check_compatible(manifest, manifest.dataset, n_way=n_way, k_shot=k_shot)
    return manifest.n_way, manifest.k_shot


def evaluate_model(model: nn.Module, adapt: str = "protonet", *, dataset: str, n_way: int | None = None,
                   k_shot: int | None = None, eps: Sequence[Eps] | None = None, budget: str = "smoke",
                   protocol: EvalProtocol | None = None, steps: int | None = None, lr: float = 0.01,
                   normalize: str | None = None, episodes: str | Path | Manifest | None = None, name: str | None = None,
                   factory: str = "", weights: str | Path | None = None, data_root: str | None = None,
                   image_size: int | None = None, seed: int = 0, device: str = "auto",
                   reported: str | Mapping[str, Any] | None = None, reported_source: str = "",
                   progress: bool = False, out: str | Path | None = None) -> ModelEvaluation:
    """Evaluate a few-shot model: the adaptive table's attacks through its declared adaptation.

    Args:
        model: images in [0, 1], (N, C, H, W) → logits or features (:mod:`advmeta.external`).
        adapt: ``finetune`` | ``finetune-head`` | ``protonet`` | ``none``.
        dataset: the few-shot dataset of the test episodes.
        n_way, k_shot: the episodes' shape (default: the manifest's, else 5-way 1-shot).
        eps: the attacks' ε, ``k/255`` (default: the papers' on the dataset, where there is one).
        budget: smoke | quick | paper: episodes, attack iterations, checks (``advmeta.plan.budgets``).
        protocol: a protocol of one's own instead of the budget's.
        steps, lr: fine-tuning of ``finetune`` / ``finetune-head`` (default 10 steps, 0.01).
        normalize: ``MEAN,STD`` (or C means, C stds) the model wants its inputs normalised with.
        episodes: a manifest (file, built-in name or :class:`Manifest`) of standard test episodes.
        name: the model's name in the rows' ``method`` (default: the module's class name).
        factory, weights: recorded: where the model came from; ``weights`` is loaded (tensors only).
        data_root, image_size: the dataset's folder and image side (default: the dataset's).
        seed: the test episodes' seed (without a manifest) and the surrogate's.
        device: ``auto`` | ``cpu`` | ``cuda``.
        reported, reported_source: the author's own numbers (``clean=…,autoattack=…``) and where from.
        progress: a progress line on stderr.
        out: a folder to write the tables and ``record.json`` to.

    Raises:
        ConfigError, DataNotFoundError, UnsafeFileError: bad input (before anything is evaluated).
    """
    from advmeta.data import EpisodeSampler, EpisodeSpec
    from advmeta.env import resolve_device
    from advmeta.external import external_learner, load_weights, parse_adapt, probe
    from advmeta.train import TrainConfig, load_dataset

    kind = parse_adapt(adapt)
    reported_values = parse_reported(reported)
    manifest = _manifest(episodes)
    if manifest is not None and manifest.dataset != dataset:
        raise ConfigError(f"episodes manifest {manifest.origin} is of {manifest.dataset}, not {dataset}")
    n_way, k_shot = _shape(manifest, n_way, k_shot)
    p, sur_steps = _protocol(protocol, budget, dataset, eps, n_way, k_shot, seed, device, manifest)
    q_query = manifest.q_query if manifest is not None else int(p.q_query or 15)
    weights_sha = load_weights(model, weights) if weights is not None else ""
    cfg = TrainConfig(method="protonet", dataset=dataset, data_root=data_root, image_size=image_size, n_way=n_way,
                      k_shot=k_shot, q_query=q_query, seed=seed, device=device, bn_mode="running",
                      surrogate_steps=sur_steps)
    ds = load_dataset(cfg)
    dev = resolve_device(device)
    learner = external_learner(model, kind, steps=steps, lr=lr, normalize=normalize, channels=ds.image_shape[0])
    learner.net.to(dev)
    sampler = EpisodeSampler(ds, p.split, EpisodeSpec(n_way, k_shot, q_query), seed=seed, manifest=manifest)
    ep = sampler.sample([0], device=dev)
    probe(learner, ep.support_x, ep.support_y, ep.query_x)
    label = name or type(model).__name__
    model_facts = {"name": label, "factory": factory, "weights": Path(weights).name if weights else "",
                   "weights_sha256": weights_sha, "adapt": dataclasses.asdict(learner.cfg), "kind": "external"}
    return _run(learner, cfg, ds, p, model, model_facts, budget if protocol is None else "custom", reported_values,
                reported_source, progress, out, external=True)


def evaluate_checkpoint(checkpoint: str | Path, *, eps: Sequence[Eps] | None = None, budget: str = "smoke",
                        protocol: EvalProtocol | None = None, episodes: str | Path | Manifest | None = None,
                        n_way: int | None = None, k_shot: int | None = None, name: str | None = None,
                        seed: int | None = None, device: str = "auto", reported: str | Mapping[str, Any] | None = None,
                        reported_source: str = "", progress: bool = False, out: str | Path | None = None) -> ModelEvaluation:
    """Evaluate an advmeta trial's checkpoint as :func:`evaluate_model` evaluates a module (the
    checkpoint is read as tensors and plain values only)."""
    from advmeta.env import resolve_device
    from advmeta.evaluate import load_learner
    from advmeta.external import file_sha256

    reported_values = parse_reported(reported)
    learner, cfg, state, ds = load_learner(checkpoint, resolve_device(device))
    manifest = _manifest(episodes)
    if manifest is not None and manifest.dataset != cfg.dataset:
        raise ConfigError(f"episodes manifest {manifest.origin} is of {manifest.dataset}; the checkpoint's "
                          f"dataset is {cfg.dataset}")
    n_way, k_shot = _shape(manifest, n_way or cfg.n_way, k_shot or cfg.k_shot)
    p, _ = _protocol(protocol, budget, cfg.dataset, eps, n_way, k_shot, cfg.seed if seed is None else seed,
                     device, manifest)
    hp = dict(state.get("hparams") or {})
    model_facts = {"name": name or cfg.method, "factory": f"advmeta checkpoint ({cfg.method})",
                   "weights": Path(checkpoint).name, "weights_sha256": file_sha256(checkpoint),
                   "adapt": {"adapt": "advmeta " + cfg.method, **hp}, "kind": "checkpoint"}
    return _run(learner, cfg, ds, p, learner.net, model_facts, budget if protocol is None else "custom",
                reported_values, reported_source, progress, out, external=False, state=state)


def _run(learner: Any, cfg: Any, ds: Any, p: EvalProtocol, counted: nn.Module, model_facts: dict[str, Any],
         budget: str, reported: dict[str, float], reported_source: str, progress: bool, out: str | Path | None,
         external: bool, state: dict[str, Any] | None = None) -> ModelEvaluation:
    from advmeta.env import provenance
    from advmeta.evaluate import evaluate_learner
    from advmeta.external import count_forwards

    ident = json.dumps({**model_facts, "dataset": cfg.dataset, "eps": [str(e) for e in p.eps], "budget": budget,
                        "episodes": p.episodes.hash if p.episodes is not None else p.seed}, sort_keys=True, default=str)
    trial_id = "eval-" + hashlib.sha256(ident.encode()).hexdigest()[:12]
    p = dataclasses.replace(p, trial_id=trial_id)
    facts = state if state is not None else {"step": 0, "image_shape": tuple(ds.image_shape),
                                             "train_seconds": math.nan}
    forwards, unhook = count_forwards(counted)
    t0 = time.perf_counter()
    try:
        ev = evaluate_learner(learner, cfg, facts, ds, p, progress=progress, method=str(model_facts["name"]))
    finally:
        unhook()
    seconds = time.perf_counter() - t0
    rows, eps_rows, check_rows = ev.rows, ev.episodes, ev.checks
    if external:  # no training behind these rows that advmeta knows of
        for r in rows:
            r.update(first_order=None, train_iterations=None, train_eps=math.nan, train_eps_str="",
                     train_seconds=math.nan)
    for r in check_rows:
        r["trial_id"] = trial_id
    summary = summarize(rows, check_rows)
    rec = {
        "format": RECORD_FORMAT, "model": model_facts, "dataset": cfg.dataset, "split": p.split,
        "n_way": p.n_way, "k_shot": p.k_shot, "q_query": rows[0]["q_query"] if rows else None,
        "image_size": rows[0]["image_size"] if rows else None, "eps": [str(e) for e in p.eps],
        "episodes": {"hash": p.episodes.hash if p.episodes is not None else "",
                     "manifest": p.episodes.origin if p.episodes is not None else "",
                     "n_episodes": p.n_episodes, "seed": None if p.episodes is not None else p.seed},
        "budget": budget, "trial_id": trial_id, **summary,
        "runtime_seconds": seconds, "forward_passes": forwards(), "reported": reported,
        "reported_source": reported_source, "provenance": provenance(str(rows[0]["device"]) if rows else "cpu"),
    }
    if out is not None:
        write_outputs(out, rows, eps_rows, check_rows, rec)
    return ModelEvaluation(rows, eps_rows, check_rows, rec)


def write_outputs(out: str | Path, rows: list[dict[str, Any]], eps_rows: list[dict[str, Any]],
                  check_rows: list[dict[str, Any]], record: Mapping[str, Any]) -> None:
    """The evaluation's tables and its record in ``out``, each written atomically (the record last)."""
    from advmeta.results import to_frame, write_parquet_atomic

    folder = Path(out)
    write_parquet_atomic(to_frame(rows, "summary"), folder / "summary.parquet")
    write_parquet_atomic(to_frame(eps_rows, "episodes"), folder / "episodes.parquet")
    write_parquet_atomic(to_frame(check_rows, "checks"), folder / "checks.parquet")
    write_record(folder / "record.json", record)
