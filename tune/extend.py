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

from advmeta.families import RunContext, get_family
from advmeta.ledger import Ledger
from advmeta.plan.trial import Resources, TrialSpec


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
        meter = BlockProgress(look, [_expected_seconds(ledger, b) for b in blocks],
                              [str(by_id[b.trial_id].method) for b in blocks],
                              resources.max_concurrent, enabled=progress)
        meter.draw()
        refs = {task.remote(by_id[blocks[i].trial_id], ctx, blocks[i], ledger.work_dir(blocks[i].trial_id),
                            resources): i for i in meter.order}  # the longest first
        results: dict[int, Any] = {}
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1, timeout=meter.HEARTBEAT_S)
            for ref in ready:
                results[refs[ref]] = ray.get(ref)
                meter.finished(refs[ref])
            meter.draw()
        for i, b in enumerate(blocks):  # written in plan order, however they finished
            rows, episode_rows = results[i]
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


class BlockProgress:
    """The blocks' progress line, like the trials' (:class:`advmeta.tune.progress.SweepProgress`):
    ``claims: look 2: 1/4 block(s) done, 3m10s elapsed, ETA 6m05s [maml; tafl]`` on stderr, when a
    block finishes and at least every minute.

    A block's expected seconds are its rows' evaluation seconds in the trial's own evaluation,
    scaled to its episodes (:func:`_expected_seconds`); the blocks run longest first, ``slots`` at a
    time (the trials' concurrency), so the running ones are the first unfinished in that order.
    """

    HEARTBEAT_S = 60.0

    def __init__(self, look: int, expected: Sequence[float], labels: Sequence[str], slots: int,
                 enabled: bool = True) -> None:
        self.look = look
        self.expected = list(expected)
        self.labels = list(labels)
        self.slots = max(1, slots)
        self.enabled = enabled
        self.order = sorted(range(len(expected)), key=lambda i: -self.expected[i])
        self.t0 = time.monotonic()
        self.started = {i: self.t0 for i in self.order[:self.slots]}
        self.done: set[int] = set()

    def running(self) -> list[int]:
        return [i for i in self.order if i not in self.done][:self.slots]

    def finished(self, i: int) -> None:
        self.done.add(i)
        now = time.monotonic()
        for j in self.running():
            self.started.setdefault(j, now)

    def line(self) -> str:
        from advmeta.tune.progress import _fmt_seconds

        now = time.monotonic()
        running = self.running()
        left = sum(max(self.expected[i] - (now - self.started.get(i, now)), 0.05 * self.expected[i])
                   for i in running)
        left += sum(self.expected[i] for i in self.order if i not in self.done and i not in running)
        total = len(self.expected)
        eta = f", ETA {_fmt_seconds(left / self.slots)}" if len(self.done) < total else ""
        where = f" [{'; '.join(self.labels[i] for i in running)}]" if running else ""
        return (f"claims: look {self.look}: {len(self.done)}/{total} block(s) done, "
                f"{_fmt_seconds(now - self.t0)} elapsed{eta}{where}")

    def draw(self) -> None:
        if self.enabled:
            print(self.line(), file=sys.stderr, flush=True)


def _expected_seconds(ledger: Ledger, block: Block) -> float:
    """A block's expected seconds: its rows' evaluation seconds in the trial's own evaluation,
    times its episodes over theirs (at least 1 s)."""
    own = ledger.own_summary(block.trial_id)
    seconds = 0.0
    for key in block.keys:
        hit = _row(own, key)
        if hit.empty or "eval_seconds" not in hit or pd.isna(hit["eval_seconds"].iloc[0]):
            continue
        n = hit["n_episodes"].iloc[0]
        scale = block.count / float(n) if not pd.isna(n) and float(n) > 0 else 1.0
        seconds += float(hit["eval_seconds"].iloc[0]) * scale
    return max(seconds, 1.0)


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
