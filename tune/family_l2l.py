"""The ``l2l`` family: L2L trainers (plain, pgm, naive/grad/2step-l2l) of :mod:`advmeta.l2l`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from advmeta.tune.families import Report, RunContext

NOT_TUNABLE = frozenset({"method", "dataset", "data_root", "device", "checkpoint_every", "eval_batches", "seed",
                         "image_size", "num_classes", "train_per_class", "test_per_class"})
"""L2LConfig fields that are settings of the run (the budget's or the sweep's), not hyper-parameters."""


def methods() -> list[str]:
    """The L2L trainers."""
    from advmeta.l2l import METHOD_NAMES

    return list(METHOD_NAMES)


def config_class(method: str) -> type:
    """A dataclass of the tunable L2LConfig fields (the run settings left out)."""
    from advmeta.docs import attribute_docs
    from advmeta.l2l import L2LConfig

    docs = attribute_docs(L2LConfig)  # shown by `advmeta tune <trainer> --params`, as the learners' metadata docs
    keep = [(f.name, f.type, dataclasses.field(default=f.default, metadata={"doc": docs.get(f.name, "")})
             if f.default is not dataclasses.MISSING
             else dataclasses.field(default_factory=f.default_factory, metadata={"doc": docs.get(f.name, "")}))
            for f in dataclasses.fields(L2LConfig) if f.name not in NOT_TUNABLE]
    return dataclasses.make_dataclass("L2LHParams", keep, frozen=True)


def run(spec: Any, ctx: RunContext, report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Train with :func:`advmeta.l2l.train_l2l`, then evaluate with the trial's attacks."""
    from advmeta.l2l import L2LConfig, L2LEvalProtocol, evaluate_l2l, train_l2l

    t = dict(spec.train)
    settings = {k: t[k] for k in ("dataset", "image_size", "num_classes", "train_per_class", "epochs",
                                  "classifier", "classifier_kwargs", "seed", "attacker", "eval_batches") if k in t and t[k] is not None}
    hp = dict(spec.hparams)
    if "lr_milestones" in hp:
        hp["lr_milestones"] = tuple(hp["lr_milestones"])
    cfg = L2LConfig(method=spec.method, data_root=ctx.data_root, device=ctx.device,
                    test_per_class=t.get("test_per_class", t.get("train_per_class")), **{**settings, **hp})
    ckpt, metrics = train_l2l(cfg, Path(ctx.work_dir), resume=True, progress=ctx.progress, report=report)
    rows: list[dict[str, Any]] = []
    for ev in spec.evals:
        eps = list(ev.get("eps") or ["8/255"])
        # The table is at the first ε; further ε give the PGD-20 curve against ε.
        protocol = L2LEvalProtocol(attacks=tuple(ev.get("attacks", ("none", "pgd-20"))), eps=eps[0],
                                   seeds=tuple(ev.get("seeds", (0,))), n_test=ev.get("n_test"),
                                   eps_curve=tuple(ev.get("eps_curve", eps[1:])),
                                   steps_curve=tuple(ev.get("steps_curve", ())))
        rows += evaluate_l2l(ckpt, protocol, device=ctx.device, progress=ctx.progress)
    final = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
    return rows, [], {**final, "device": rows[0]["device"] if rows else ctx.device}
