"""Training episode banks: which bank can stand in for a run's surrogate attack (ADML, MAML-AD).

ADML and MAML-AD train on the fixed surrogate's FGSM of half the images of each training
episode. A bank made with ``advmeta episodes --split train`` (Ray Data) stores those images
once; :func:`advmeta.train.train` reads them instead of attacking, with bit-identical results
because both attack one episode at a time (:func:`advmeta.surrogate.attack_per_episode`).
"""

from __future__ import annotations

from typing import Any

import torch

from advmeta.errors import ConfigError
from advmeta.learners import get_learner
from advmeta.train_config import TrainConfig


def training_bank_request(cfg: TrainConfig) -> dict[str, Any] | None:
    """The episode bank that can stand in for ``cfg``'s surrogate attack (ADML, MAML-AD), or None.

    Training episode ``i`` is episode ``i`` of the ``train`` split's sampler with the learner's
    training shape (ADML: 2K shots and 2Q queries, half of them attacked), so a bank of the
    first ``iterations × meta_batch`` episodes of that shape at ``train_eps`` serves the run.

    Returns:
        :class:`advmeta.bank.BankSpec` fields (``dataset``, ``split``, ``n_way``, ``k_shot``,
        ``q_query``, ``seed``, ``image_size``, ``eps``, ``n_episodes``, ``surrogate``) plus
        ``surrogate_arch`` and ``surrogate_steps``; None for learners without a surrogate.
    """
    from advmeta.bank import surrogate_key
    from advmeta.eps import format_eps

    cls = get_learner(cfg.method)
    if not cls.needs_surrogate:
        return None
    lcfg = cfg.learner_config
    k, q, u = cls(lcfg, torch.nn.Identity()).train_shots(cfg.k_shot, cfg.q_query, 0)
    if u:
        return None
    return {"dataset": cfg.dataset, "split": "train", "n_way": cfg.n_way, "k_shot": k, "q_query": q,
            "seed": cfg.seed, "image_size": cfg.image_size, "eps": [format_eps(lcfg.train_eps)],
            "n_episodes": cfg.iterations * cfg.meta_batch,
            "surrogate": surrogate_key(cfg.surrogate_arch, cfg.surrogate_steps, cfg.seed, cfg.image_size,
                                       cfg.surrogate_classes),
            "surrogate_arch": cfg.surrogate_arch, "surrogate_steps": cfg.surrogate_steps}


def check_training_bank(bank: Any, cfg: TrainConfig) -> None:
    """Raise :class:`ConfigError` when a bank's manifest (``bank.spec``, if any) cannot serve ``cfg``.

    Banks without a manifest (any ``Bank`` callable) are checked episode by episode instead.
    """
    want, spec = training_bank_request(cfg), getattr(bank, "spec", None)
    if want is None or spec is None:
        return
    bad = [f"{k}={getattr(spec, k)!r} (run: {want[k]!r})"
           for k in ("dataset", "split", "n_way", "k_shot", "q_query", "seed", "image_size", "surrogate")
           if getattr(spec, k) != want[k]]
    if want["eps"][0] not in spec.eps:
        bad.append(f"eps={list(spec.eps)} (run: {want['eps'][0]})")
    if spec.n_episodes < want["n_episodes"]:
        bad.append(f"n_episodes={spec.n_episodes} (run: {want['n_episodes']})")
    if bad:
        where = getattr(bank, "path", "the episode bank")
        raise ConfigError(f"{where} cannot serve this training run: {'; '.join(bad)}")
