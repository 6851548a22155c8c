"""Claims decided, not only tested: more paired test episodes, in blocks, where a claim needs them.

After a sweep's trials finish, every claim is checked (advmeta.claims). A claim compared on paired
episodes whose interval still straddles its threshold — and that rests on no flagged row — gets
another block of episodes: each trial it rests on evaluates its checkpoint again, for the rows the
claim reads only, on the next ``block`` bank indices (the first evaluation's count), with the same
attacks, escalation and per-episode generators; the claims are then checked again. At most
``looks`` looks (the first evaluation and ``looks − 1`` blocks), so a claim reads at most ``looks``
times its first episodes.

Looking again until decided would inflate the error rate if each look used a 95 % interval. The
claims read the looks from the sweep's manifest (``sequential.looks``) and use the
:class:`advmeta.stats.SequentialRule`: each look's interval is the ``1 − α/looks`` one (Bonferroni
over the planned looks), valid however the looks are taken — even at the first look, and even for
claims that needed no block (docs/verdicts.md; tests/test_sequential.py simulates it).

A block's rows are stored beside the trial's (``trials/<id>/blocks/``) and the merged tables
recompute each extended row over all its episodes (:func:`advmeta.results.add_blocks`).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from advmeta.tune.families import RunContext, get_family
from advmeta.tune.ledger import Ledger
from advmeta.tune.session import Resources
from advmeta.tune.trial import TrialSpec


Finish = Callable[[list[dict[str, Any]], TrialSpec, str], list[dict[str, Any]]]


@dataclass(frozen=True)
class Block:
    """Rows of one trial to evaluate on ``count`` more episodes from bank index ``start``."""

    trial_id: str
    keys: tuple[Mapping[str, Any], ...]
    start: int
    count: int
    claims: tuple[str, ...]


def plan_blocks(claims: pd.DataFrame, summary: pd.DataFrame, looks: int,
                extendable: Sequence[str]) -> list[Block]:
    """The blocks the undecided claims need: per trial, its rows of every paired, reliable,
    inconclusive claim whose episodes are below ``looks`` times the first evaluation's.

    Args:
        claims: the claims as checked now (advmeta.claims columns, ``row_keys`` among them).
        summary: the merged summary rows (``n_episodes`` of each row now).
        looks: the planned looks.
        extendable: the trials whose family can evaluate further episodes.
    """
    if claims.empty or looks < 2:
        return []
    want = claims[claims["verdict"].eq("inconclusive") & claims["reliable"].fillna(False).astype(bool)
                  & claims["ci_method"].astype(str).str.startswith("paired")]
    by_trial: dict[tuple[str, int, int], list[tuple[Mapping[str, Any], str]]] = defaultdict(list)
    for claim in want.itertuples():
        keys = json.loads(str(claim.row_keys or "[]"))
        counts = [_episodes_of(summary, k) for k in keys]
        if not keys or any(c is None for c in counts) or len({c for c in counts}) != 1:
            continue  # a row not found, or rows of different episode counts: not paired by blocks
        now = int(counts[0] or 0)
        first = _first_count(summary, keys[0])
        if now >= looks * first or any(str(k["trial_id"]) not in extendable for k in keys):
            continue
        for k in keys:
            by_trial[(str(k["trial_id"]), now, first)].append((k, str(claim.claim_id)))
    out = []
    for (tid, now, first), items in sorted(by_trial.items()):
        keys = tuple({json.dumps(dict(k), sort_keys=True): k for k, _ in items}.values())
        out.append(Block(tid, keys, now, first, tuple(sorted({c for _, c in items}))))
    return out


def _row(summary: pd.DataFrame, key: Mapping[str, Any]) -> pd.DataFrame:
    mask = pd.Series(True, index=summary.index)
    for col, value in key.items():
        if col not in summary:
            continue
        mask &= summary[col].isna() if value is None else summary[col].astype("string").eq(str(value)).fillna(False)
    return summary[mask]


def _episodes_of(summary: pd.DataFrame, key: Mapping[str, Any]) -> int | None:
    hit = _row(summary, key)
    return None if hit.empty or pd.isna(hit["n_episodes"].iloc[0]) else int(hit["n_episodes"].iloc[0])


def _first_count(summary: pd.DataFrame, key: Mapping[str, Any]) -> int:
    """The first evaluation's episodes of a row: its block size (``first_episodes``, the count in
    the trial's own evaluation, when given; else the row's count now)."""
    hit = _row(summary, key)
    first = hit["first_episodes"].iloc[0] if "first_episodes" in hit else None
    return int(first) if first is not None and not pd.isna(first) else int(hit["n_episodes"].iloc[0])


def extend_for_claims(specs: Sequence[TrialSpec], ledger: Ledger, ctx: RunContext, resources: Resources,
                      looks: int, finish: Finish, progress: bool = True) -> int:
    """Check the claims, add the blocks the undecided ones need, and repeat, up to ``looks`` looks.

    ``finish(rows, spec, device)`` adds the columns the runner adds to a trial's own rows.

    Returns:
        The number of blocks evaluated.
    """
    import ray

    from advmeta.claims import evaluate_claims

    by_id = {s.trial_id: s for s in specs}
    extendable = [tid for tid, s in by_id.items()
                  if ledger.is_done(tid) and getattr(get_family(s.family), "extend", None) is not None]
    # each row's block size: its episodes in the trial's own evaluation (without blocks)
    first = {_key_of(r): int(r["n_episodes"]) for tid in extendable for r in ledger.own_summary(tid).to_dict("records")
             if not pd.isna(r.get("n_episodes"))}
    done, seconds = 0, 0.0
    task = ray.remote(_run_block).options(num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial)
    for look in range(2, looks + 1):
        summary, episodes = ledger.merge(specs)
        summary = summary.assign(first_episodes=[first.get(_key_of(r)) for r in summary.to_dict("records")])
        claims = evaluate_claims(summary, episodes, ledger.read_manifest(), checks=ledger.checks())
        blocks = plan_blocks(claims, summary, looks, extendable)
        if not blocks:
            break
        if progress:
            names = sorted({c for b in blocks for c in b.claims})
            print(f"claims: look {look} of {looks}: {len(names)} undecided claim(s) ({', '.join(names)}) get "
                  f"{len(blocks)} block(s) of further paired episodes", file=sys.stderr)
        t0 = time.perf_counter()
        refs = [task.remote(by_id[b.trial_id], ctx, b, ledger.work_dir(b.trial_id), resources) for b in blocks]
        for b, (rows, episode_rows) in zip(blocks, ray.get(refs)):
            spec = by_id[b.trial_id]
            rows = [{**r, "sweep": spec.sweep, "trial_id": b.trial_id} for r in rows]
            episode_rows = [{**r, "sweep": spec.sweep, "trial_id": b.trial_id} for r in episode_rows]
            device = str(rows[0].get("device", "cpu")) if rows else "cpu"
            ledger.write_block(b.trial_id, b.start, finish(rows, spec, device), episode_rows)
            done += 1
        seconds += time.perf_counter() - t0
        if progress:
            print(f"claims: look {look}: {len(blocks)} block(s) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    ledger.update_manifest({"sequential": {"looks": looks, "blocks": done, "seconds": seconds}})
    ledger.merge(specs)
    return done


def _key_of(row: Mapping[str, Any]) -> tuple[str, ...]:
    from advmeta.results import SUMMARY_KEY

    return tuple(str(row.get(k)) for k in SUMMARY_KEY)


def _run_block(spec: TrialSpec, ctx: RunContext, block: Block, work: str,
               resources: Resources) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """In a Ray worker: the block's rows of one trial (its family's ``extend``)."""
    from advmeta.env import set_threads

    threads = max(1, int(resources.cpus_per_trial))
    set_threads(threads)
    device = ctx.device
    if device == "auto":
        import ray

        device = "cuda" if ray.get_gpu_ids() else "cpu"
    run_ctx = RunContext(sweep_dir=ctx.sweep_dir, work_dir=work, data_root=ctx.data_root, device=device,
                         threads=threads, banks=ctx.banks, progress=False, episodes=ctx.episodes)
    Path(work).mkdir(parents=True, exist_ok=True)
    family: Any = get_family(spec.family)
    rows, episode_rows = family.extend(spec, run_ctx, list(block.keys), block.start, block.count)
    return list(rows), list(episode_rows)
