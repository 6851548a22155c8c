"""The evaluation a budget gives one model: the adaptive table's protocol, as a sweep's trial gets it.

``advmeta evaluate`` (any few-shot model, or an advmeta checkpoint) runs what the ``adaptive``
grid's table runs for each of its trials at the same budget — clean accuracy at every fine-tune
step, PGD and the AutoAttack cascade on the query with the per-query worst case, PGD through
the adaptation on the support and on support and query, every attack escalated to convergence,
and the masking checks — plus the fixed surrogate's transfer attack on the query (the checks'
``transfer-not-better`` compares with it). The settings come from the grid and the budget
(:mod:`advmeta.plan.budgets`) through the same code as a sweep's (:func:`advmeta.families.meta.protocols`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from advmeta.eps import Eps, Epsilon
from advmeta.errors import ConfigError

if TYPE_CHECKING:
    from advmeta.data.manifest import Manifest
    from advmeta.protocol import EvalProtocol

GRID = "adaptive"


def default_eps(dataset: str) -> tuple[str, ...]:
    """The adaptive table's ε on ``dataset`` where the papers fix one.

    Raises:
        ConfigError: a dataset whose ε a sweep calibrates on its own MAML (Omniglot, …): give ``--eps``.
    """
    from advmeta.plan.grids import load_grid

    _, data = load_grid(GRID)
    table = next(t for t in data["tables"] if t.get("name") == GRID)
    paper = dict(table.get("eps_paper", {}))
    if dataset not in paper:
        raise ConfigError(f"no standard ε on {dataset} (a sweep calibrates it on its own MAML); give --eps, e.g. "
                          "--eps 8/255")
    return tuple(str(e) for e in paper[dataset])


def budget_protocol(budget: str, dataset: str, eps: Sequence[Eps] | None, *, n_way: int, k_shot: int, seed: int = 0,
                    device: str = "auto", manifest: Manifest | None = None, surrogate: bool = True,
                    name: str = "evaluate") -> tuple[EvalProtocol, Any]:
    """The protocol of one model's evaluation at ``budget``, and the budget (as it runs on ``dataset``).

    Args:
        budget: smoke | quick | paper.
        dataset: the few-shot dataset.
        eps: the attacks' ε (``k/255``; ``None``: :func:`default_eps`).
        n_way, k_shot: the test episodes' shape.
        seed: the test episodes' seed (unused with a manifest).
        device: ``auto`` | ``cpu`` | ``cuda``.
        manifest: standard test episodes: at most their count is evaluated, and their queries.
        surrogate: add the fixed surrogate's transfer attack on the query at every ε.
        name: the rows' ``sweep``.
    """
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.epsplan import TableEps
    from advmeta.families import RunContext
    from advmeta.families.meta import protocols
    from advmeta.plan.grids import expand, load_grid

    b = get_budget(budget, dataset)
    budgets = tuple(Epsilon(e) for e in (eps or default_eps(dataset)))  # each an Epsilon, made once here
    for e in budgets:
        if e <= 0:
            raise ConfigError(f"--eps {e}: ε must be > 0")
    grid, data = load_grid(GRID)
    specs = expand(grid, data, b, dataset=dataset, seed=seed, methods=["maml"],
                   table_eps={GRID: TableEps(budgets, "user")})
    found = protocols(specs[0], RunContext(sweep_dir="", device=device))
    if len(found) != 1:
        raise RuntimeError(f"the {GRID} grid gave {len(found)} protocols at budget {budget}; expected one")
    # every attack escalated: a model's own rows are its verdict (a sweep's quick budget escalates
    # only what a claim reads, and no claim names an outside model)
    p = dataclasses.replace(found[0], n_way=n_way, k_shot=k_shot, seed=seed, sweep=name, trial_id="",
                            escalate_only=None)
    if surrogate:
        p = dataclasses.replace(p, scenarios=(*p.scenarios, "surrogate"), surrogate_eps=budgets,
                                surrogate_supports=("clean",))
    if manifest is not None:
        n = min(p.n_episodes, len(manifest))
        p = dataclasses.replace(p, episodes=manifest, n_episodes=n, chunk=min(p.chunk, n), split=manifest.split)
    return p, b
