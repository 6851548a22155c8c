"""Episode banks made in parallel with Ray Data (ADML's surrogate protocol, computed once).

What a bank is and where it is stored, and which banks a sweep's trials need, is
:mod:`advmeta.bank`; this module makes them, once per sweep before its trials start
(:func:`ensure_banks`), and the trials read them. Every meta-learning trial with a ``surrogate``
evaluation (ADML's tables) reads the same surrogate-attacked test episodes as every other trial
of its episode shape; ADML and MAML-AD trials read their pre-attacked *training* episodes from a
``train`` bank when it is small enough to store (:data:`advmeta.bank.TRAIN_BANK_MAX_BYTES`);
larger runs attack in the trial, with the same result.

``ray.data.range(n)`` → ``map_batches(EpisodeMaker, compute=ActorPoolStrategy(...))`` → Parquet
with Arrow's standard fixed-shape tensor columns. Each actor loads the dataset and the cached
surrogate once; each batch samples its episodes by index (a pure function of the index, so the
output does not depend on which actor ran it or in which order) and attacks them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from advmeta.bank import (MANIFEST, TRAIN_BANK_MAX_BYTES, BankSpec, EpisodeMaker, bank_bytes, filesystem, find_bank,
                          requirements, surrogate_key, write_bank, write_manifest)
from advmeta.errors import ConfigError
from advmeta.plan.trial import TrialSpec
from advmeta.surrogate import DEFAULT_ARCH


@dataclass(frozen=True)
class BankJob:
    """How a bank is made.

    Attributes:
        spec: what the bank holds.
        data_root: data folder.
        surrogate_steps: the surrogate's training steps (part of its identity).
        surrogate_arch: the surrogate's architecture.
        batch_size: episodes per ``map_batches`` batch.
        actors: size of the actor pool (0: a single-process loop, no Ray).
        cpus_per_actor: CPUs each actor takes (0.5 on 2 cores: 1 starves Ray Data's own tasks).
        gpus_per_actor: GPUs each actor takes (fractions share a GPU).
        device: torch device in the actors.
    """

    spec: BankSpec
    data_root: str | None = None
    surrogate_steps: int = 1500
    surrogate_arch: str = DEFAULT_ARCH
    batch_size: int = 16
    actors: int = 2
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = 0.0
    device: str = "auto"


def prepare_surrogate(job: BankJob) -> None:
    """Train and cache the surrogate in this process, so that the actors only load it."""
    from advmeta.data import load_fewshot
    from advmeta.env import resolve_device
    from advmeta.surrogate import SurrogateConfig, get_surrogate

    ds = load_fewshot(job.spec.dataset, data_root=job.data_root, image_size=job.spec.image_size)
    get_surrogate(ds, SurrogateConfig(arch=job.surrogate_arch, steps=job.surrogate_steps, seed=job.spec.seed),
                  device=resolve_device("cpu" if job.gpus_per_actor == 0 else job.device), progress=False)


def make_bank_local(path: str, job: BankJob) -> float:
    """The single-process loop: the reference the Ray version is checked and timed against.

    Returns:
        Seconds spent making and writing the bank.
    """
    t0 = time.perf_counter()
    maker = EpisodeMaker(job.spec, job.data_root, job.surrogate_steps, job.surrogate_arch, "cpu")
    n, b = job.spec.n_episodes, job.batch_size
    write_bank(path, job.spec, (maker({"id": np.arange(s, min(n, s + b))}) for s in range(0, n, b)))
    return time.perf_counter() - t0


def make_bank_ray(path: str, job: BankJob) -> float:
    """Make the bank with Ray Data (Ray must be initialised, see :func:`advmeta.tune.session.ray_session`).

    Returns:
        Seconds spent making and writing the bank.

    Raises:
        ConfigError: an actor pool of size < 1, or a batch size < 1.
    """
    import ray
    from ray.data import DataContext
    from ray.data.extensions import FixedShapeTensorFormat

    if job.actors < 1 or job.batch_size < 1:
        raise ConfigError("--actors and --batch-size must be >= 1 for a Ray Data bank")
    ctx = DataContext.get_current()
    ctx.arrow_fixed_shape_tensor_format = FixedShapeTensorFormat.ARROW_NATIVE
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    fs, root = filesystem(path)
    t0 = time.perf_counter()
    device = job.device if job.gpus_per_actor > 0 else "cpu"
    ds = ray.data.range(job.spec.n_episodes).map_batches(
        EpisodeMaker,
        fn_constructor_args=(job.spec, job.data_root, job.surrogate_steps, job.surrogate_arch, device),
        batch_size=int(job.batch_size),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=job.actors),
        num_cpus=job.cpus_per_actor,
        num_gpus=job.gpus_per_actor or None,
    )
    ds.write_parquet(path if "://" in path else root)
    write_manifest(path, job.spec)  # last: a bank without a manifest is incomplete
    return time.perf_counter() - t0


def bank_exists(path: str) -> bool:
    """Whether a complete bank (with its manifest) is at ``path``."""
    fs, root = filesystem(path)
    return bool(fs.get_file_info(f"{root}/{MANIFEST}").type == pafs.FileType.File)


def generate(path: str, job: BankJob, *, overwrite: bool = False) -> dict[str, Any]:
    """Make a bank at ``path`` (with Ray Data, or in-process when ``job.actors == 0``).

    Returns:
        ``{"path", "episodes", "rows", "seconds", "episodes_per_second"}``.
    """
    fs, root = filesystem(path)
    if bank_exists(path) and not overwrite:
        raise ConfigError(f"an episode bank already exists at {path} (use --overwrite)")
    if fs.get_file_info(root).type != pafs.FileType.NotFound:
        fs.delete_dir_contents(root, missing_dir_ok=True)
    prepare_surrogate(job)
    seconds = make_bank_local(path, job) if job.actors == 0 else make_bank_ray(path, job)
    n = job.spec.n_episodes
    return {"path": path, "episodes": n, "rows": n * len(job.spec.eps), "seconds": seconds,
            "episodes_per_second": n / max(seconds, 1e-9)}


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
