"""The one training skeleton: units of work, validation, checkpoints, exact resume, reports.

Every trainer that runs in a trial — the meta-learners (:func:`advmeta.train.train`, a unit is
a meta-iteration), the L2L classifiers (:func:`advmeta.l2l.train_l2l`, a unit is an epoch) and
GAIL / L2L-GAIL (:func:`advmeta.gail.train_gail`, a unit is an iteration) — is a :class:`Trainer`
driven by :func:`run`, so they share:

- **one checkpoint format**: an :mod:`advmeta.checkpoint` file (atomic, ``format`` checked) with
  ``kind`` (which trainer wrote it), ``config`` (the whole configuration), ``identity`` (the part
  that changes the result), ``step`` (units done), ``state`` (the trainer's networks, optimisers
  and generators), ``rng`` (the global RNG states), ``history`` (metrics at each validation),
  ``metrics`` (the latest), ``train_seconds`` (wall time of the units, validation excluded; every
  ``history`` entry and ``metrics`` carry it too) and the
  trainer's ``extra`` fields for readers (image shape, class count, …);
- **one resume policy**: a checkpoint of the same identity continues to the result the unbroken
  run gives; one of another configuration (or another trainer) is a :class:`ConfigError` —
  never silently overwritten;
- **one reporting rule**: ``report(metrics, checkpoint_path_or_None)`` after each validation and
  each checkpoint (the Ray layer forwards it to ``tune.report``), and one progress bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from advmeta import checkpoint as ckpt_io
from advmeta.errors import ConfigError

Report = Callable[[dict[str, Any], "Path | None"], None]
"""``report(metrics, checkpoint_path_or_None)``."""

CHECKPOINT_NAME = "checkpoint.pt"


class Trainer(Protocol):
    """What :func:`run` drives.

    Attributes:
        kind: what the checkpoint holds (``meta``, ``l2l``, ``gail``); a checkpoint of another kind is refused.
    """

    kind: str

    def unit(self, i: int) -> dict[str, float]:
        """Train unit ``i`` (0-based: an iteration, an epoch); its statistics (``loss`` at least)."""
        ...

    def validate(self, done: int, units: list[dict[str, float]]) -> dict[str, Any]:
        """The metrics after ``done`` units; ``units`` holds the statistics of the units since the last validation."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything besides the global RNG that a resumed run needs (networks, optimisers, generators)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        ...


@dataclass(frozen=True)
class Schedule:
    """When a run validates and checkpoints (every ``n`` units; 0: only at the end)."""

    total: int
    validate_every: int
    checkpoint_every: int

    def validate_at(self, done: int) -> bool:
        return done == self.total or (self.validate_every > 0 and done % self.validate_every == 0)

    def checkpoint_at(self, done: int) -> bool:
        return done == self.total or (self.checkpoint_every > 0 and done % self.checkpoint_every == 0)


@dataclass(frozen=True)
class Identity:
    """What a checkpoint belongs to (besides the trainer's ``kind``).

    Attributes:
        config: the whole configuration (stored; readers rebuild the run from it).
        result: the fields that change the result (resume compares these).
        extra: further fields stored for readers (``image_shape``, ``hparams``, …).
    """

    config: dict[str, Any]
    result: dict[str, Any]
    extra: dict[str, Any]


def load_checkpoint(path: str | Path, kind: str, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`run` for a ``kind`` trainer.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptDataError: not an advmeta checkpoint.
        ConfigError: written by another kind of trainer (or an older advmeta without ``kind``).
    """
    state = ckpt_io.load(path, map_location=map_location)
    if state.get("kind") != kind:
        held = f"the {state['kind']} trainer's" if state.get("kind") else "an older advmeta's format, which cannot resume"
        raise ConfigError(f"{path} is not a checkpoint of the {kind} trainer (it holds {held}); "
                          "delete it to train from scratch, or use another folder")
    return state


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled, self.t0 = total, label, enabled, time.perf_counter()

    def update(self, i: int, start: int, text: str) -> None:
        if not self.enabled:
            return
        rate = (i - start) / max(time.perf_counter() - self.t0, 1e-9)
        width = 24
        done = int(width * i / max(self.total, 1))
        sys.stderr.write(f"\r{self.label} [{'#' * done}{'.' * (width - done)}] {i}/{self.total} "
                         f"{rate:.2f}/s {text}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run(trainer: Trainer, out_dir: str | Path, identity: Identity, schedule: Schedule, *, resume: bool = True,
        report: Report | None = None, progress: bool = False, label: str = "",
        describe: Callable[[dict[str, float], dict[str, Any]], str] | None = None,
        map_location: Any = "cpu") -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Train ``trainer`` for ``schedule.total`` units into ``out_dir/checkpoint.pt``, resuming it.

    Args:
        trainer: the units of work and their state.
        out_dir: the run's folder (created).
        identity: what the checkpoint belongs to (see :class:`Identity`).
        schedule: when to validate and checkpoint.
        resume: continue from an existing checkpoint (of the same identity).
        report: called as ``report(metrics, checkpoint_path_or_None)`` at each validation and checkpoint.
        progress: draw a progress bar on stderr.
        label: the bar's label.
        describe: the bar's text from a unit's statistics and the latest metrics.
        map_location: device the checkpoint's tensors load to.

    Returns:
        The checkpoint's path, the latest metrics (``train_seconds``: the units' wall time,
        validation excluded, summed over every resumed part) and the history (the metrics of
        every validation, each with its ``train_seconds``).

    Raises:
        ConfigError: the checkpoint was written by another configuration or trainer.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / CHECKPOINT_NAME
    start, history, seconds, metrics = (_restore(trainer, path, identity, map_location) if resume and path.exists()
                                        else (0, [], 0.0, {}))
    bar = _Progress(schedule.total, label, progress)
    units: list[dict[str, float]] = []
    for i in range(start, schedule.total):
        t0 = time.perf_counter()
        stats = trainer.unit(i)
        seconds += time.perf_counter() - t0
        units.append(stats)
        done = i + 1
        validate_now, save_now = schedule.validate_at(done), schedule.checkpoint_at(done)
        if validate_now:
            metrics = trainer.validate(done, units)
            units = []
        if validate_now or save_now:
            metrics = {**metrics, "train_seconds": seconds}
            if validate_now:
                history.append(dict(metrics))
            written = _save(trainer, path, identity, done, history, metrics) if save_now else None
            if report is not None:
                report(dict(metrics), written)
        bar.update(done, start, describe(stats, metrics) if describe is not None else "")
    bar.close()
    if not path.is_file():
        raise RuntimeError(f"training finished without a checkpoint at {path}")  # a schedule of 0 units
    return path, metrics, history


def _restore(trainer: Trainer, path: Path, identity: Identity,
             map_location: Any) -> tuple[int, list[dict[str, Any]], float, dict[str, Any]]:
    """Load ``path`` into ``trainer`` and the random streams; the units done, the history, the
    training seconds and the latest metrics it holds.

    Raises:
        ConfigError: the checkpoint was written by another configuration or trainer.
    """
    saved = load_checkpoint(path, trainer.kind, map_location)
    if saved["identity"] != identity.result:
        changed = sorted(k for k in set(saved["identity"]) | set(identity.result)
                         if saved["identity"].get(k) != identity.result.get(k))
        raise ConfigError(f"{path} was written by another configuration (differs in {', '.join(changed)}); "
                          "use another folder or resume=False")
    trainer.load_state(saved["state"])
    ckpt_io.set_rng_state(saved["rng"])
    return int(saved["step"]), list(saved["history"]), float(saved["train_seconds"]), dict(saved["metrics"])


def _save(trainer: Trainer, path: Path, identity: Identity, done: int, history: list[dict[str, Any]],
          metrics: dict[str, Any]) -> Path:
    """Write the checkpoint after ``done`` units, atomically: everything :func:`_restore` reads back."""
    return ckpt_io.save_atomic({
        "format": ckpt_io.FORMAT, "kind": trainer.kind, "config": identity.config,
        "identity": identity.result, **identity.extra, "step": done, "state": trainer.state(),
        "rng": ckpt_io.rng_state(), "history": history, "metrics": metrics,
        "train_seconds": metrics["train_seconds"]}, path)
