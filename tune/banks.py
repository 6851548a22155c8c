"""The episode banks a sweep needs, made once with Ray Data before its trials start.

Every meta-learning trial with a ``surrogate`` evaluation (ADML's tables) needs the same
surrogate-attacked test episodes as every other trial of its episode shape. Instead of each
trial attacking them again, the sweep makes one bank per distinct (dataset, image size, shape,
seed, surrogate, ε) with :func:`advmeta.tune.episodes.make_bank_ray`, and the trials read it.

ADML and MAML-AD trials likewise read their pre-attacked *training* episodes from a ``train``
bank (:func:`advmeta.train.training_bank_request`), made when it is small enough to store
(:data:`TRAIN_BANK_MAX_BYTES`); larger runs attack in the trial, with the same result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from advmeta.bank import BankSpec, find_bank, surrogate_key
from advmeta.surrogate import DEFAULT_ARCH
from advmeta.tune.episodes import BankJob, generate
from advmeta.tune.trial import TrialSpec

# A training bank stores every (clean and attacked) image of iterations × meta_batch episodes:
# at smoke and small quick budgets a few MB; at paper budgets terabytes, so those trials attack
# their episodes themselves (the same images, computed per episode either way).
TRAIN_BANK_MAX_BYTES = 256 * 2**20


def bank_bytes(req: dict[str, Any], image_shape: Sequence[int]) -> int:
    """Bytes of a bank's images (float32, clean and attacked, every ε)."""
    c, h, w = image_shape
    per_episode = req["n_way"] * (req["k_shot"] + req["q_query"]) * c * h * w * 4 * 2
    return int(req["n_episodes"]) * int(per_episode) * len(req["eps"])


def requirements(specs: Sequence[TrialSpec]) -> list[dict[str, Any]]:
    """The distinct banks the trials read (each family says which, :meth:`Family.bank_requirements`),
    merged: one bank per episode shape, with every ε and the most episodes any trial asks for."""
    from advmeta.tune.families import get_family

    needs: dict[str, dict[str, Any]] = {}
    for spec in specs:
        for req in get_family(spec.family).bank_requirements(spec):
            key = json.dumps({k: v for k, v in req.items() if k not in ("eps", "n_episodes")}, sort_keys=True)
            entry = needs.setdefault(key, {**req, "eps": [], "n_episodes": 0})
            entry["eps"] += [e for e in req["eps"] if e not in entry["eps"]]
            entry["n_episodes"] = max(entry["n_episodes"], int(req["n_episodes"]))
    return list(needs.values())


def ensure_banks(specs: Sequence[TrialSpec], root: str, data_root: str | None, actors: int,
                 cpus_per_actor: float, gpus_per_actor: float) -> list[str]:
    """Make the banks ``specs`` need under ``root`` unless a matching one is there already.

    Ray must be initialised. Returns the paths of the banks made.
    """
    from advmeta.data import load_fewshot

    made = []
    for req in requirements(specs):
        skey = surrogate_key(DEFAULT_ARCH, req["surrogate_steps"], req["seed"], req["image_size"])
        if find_bank(root, dataset=req["dataset"], split=req["split"], n_way=req["n_way"], k_shot=req["k_shot"],
                     q_query=req["q_query"], seed=req["seed"], eps=req["eps"], n_episodes=req["n_episodes"],
                     surrogate=skey) is not None:
            continue
        shape = tuple(load_fewshot(req["dataset"], data_root=data_root, image_size=req["image_size"]).image_shape)
        if req["split"] == "train" and bank_bytes(req, shape) > TRAIN_BANK_MAX_BYTES:
            continue  # too large to store: the trials attack their training episodes themselves
        spec = BankSpec(dataset=req["dataset"], split=req["split"], n_way=req["n_way"], k_shot=req["k_shot"],
                        q_query=req["q_query"], seed=req["seed"], n_episodes=req["n_episodes"], eps=tuple(req["eps"]),
                        attack="fgsm", surrogate=skey, image_shape=shape, image_size=req["image_size"])  # type: ignore[arg-type]
        name = hashlib.sha256(spec.to_json().encode()).hexdigest()[:10]
        path = f"{root.rstrip('/')}/{req['dataset']}-{req['split']}-{req['n_way']}w{req['k_shot']}s-{name}"
        job = BankJob(spec, data_root, req["surrogate_steps"], DEFAULT_ARCH, batch_size=8, actors=actors,
                      cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor)
        generate(path, job, overwrite=True)
        made.append(path)
    return made
