"""The one progress display of a sweep: trials done / running / failed and an ETA, on stderr.

Ray's own tables are switched off (:mod:`advmeta.tune.session`); this Tune callback draws a
single line that is rewritten in place on a terminal, and printed once per change otherwise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ray.tune import Callback


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class SweepProgress(Callback):
    """Counts trials and draws ``sweep NAME: 3/12 done, 2 running, 0 failed, ETA 4m10s``.

    Args:
        name: the sweep's name.
        total: trials in the sweep (including those finished in earlier runs).
        already_done: trials finished before this run started.
        concurrency: trials that can run at once (for the ETA).
        stream: where to draw (stderr).
        enabled: draw at all (``--quiet`` turns it off).
        on_complete: called with the trial's config after each completed trial (the runner
            merges partial results there).
        specs: trial id → its :class:`~advmeta.plan.trial.TrialSpec` (method and length of the
            running trials; Tune's configs name a trial by its id, ``{"id": …, "spec": …}``).
    """

    def __init__(self, name: str, total: int, already_done: int, concurrency: int,
                 stream: TextIO | None = None, enabled: bool = True,
                 on_complete: Callable[[dict[str, Any]], None] | None = None,
                 specs: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.total = total
        self.done = already_done
        self.failed = 0
        self.running: set[str] = set()
        self.concurrency = max(1, concurrency)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.on_complete = on_complete
        self._specs = specs if specs is not None else {}
        self.t0 = time.monotonic()
        self.durations: list[float] = []
        self._started: dict[str, float] = {}
        self._labels: dict[str, tuple[str, Any]] = {}  # trial id -> (method, iterations or epochs)
        self._at: dict[str, int] = {}  # trial id -> the last iteration (epoch) it reported
        self._last = ""
        self._last_counts = (already_done, 0)
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state; streams and closures stay here.
        state = dict(self.__dict__)
        state["stream"] = None
        state["on_complete"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.stream is None:
            self.stream = sys.stderr

    def line(self) -> str:
        """The current progress line."""
        elapsed = _fmt_seconds(time.monotonic() - self.t0)
        where = [f"{self._labels[t][0]} {self._where(t)}" for t in sorted(self.running) if t in self._labels]
        return (f"sweep {self.name}: {self.done}/{self.total} done, {len(self.running)} running, "
                f"{self.failed} failed, {elapsed} elapsed{self._eta()}" + (f" [{'; '.join(where)}]" if where else ""))

    def _where(self, tid: str) -> str:
        """``400/600`` while a trial trains; ``evaluating`` once it reported its last iteration."""
        total, at = self._labels[tid][1], self._at.get(tid, 0)
        return "evaluating" if total and at >= int(total) else f"{at}/{total or '?'}"

    def _eta(self) -> str:
        """``, ETA 4m10s``: the work left over the slots, recomputed at every redraw.

        A trial's expected length is the mean of the finished ones; before any has finished,
        the running trials' pace through training (elapsed / fraction trained) gives a lower
        bound, shown as ``ETA ≥ …`` (evaluation is not in it). A running trial has its expected
        length minus what it has run left (at least 5 % of it, as it is not done yet); each
        trial not started yet, the whole length.
        """
        now = time.monotonic()
        pending = self.total - self.done - self.failed - len(self.running)
        if pending <= 0 and not self.running:
            return ""
        ran = {t: now - self._started[t] for t in self.running if t in self._started}
        lower = not self.durations
        if lower:
            paces = [ran[t] * float(self._labels[t][1]) / self._at[t] for t in ran
                     if self._labels.get(t, ("", None))[1] and self._at.get(t, 0) > 0]
            if not paces:
                return ""
            expected = sum(paces) / len(paces)
        else:
            expected = sum(self.durations) / len(self.durations)
        left = sum(max(expected - r, 0.05 * expected) for r in ran.values())
        left += expected * (max(pending, 0) + len(self.running) - len(ran))
        return f", ETA {'≥ ' if lower else ''}{_fmt_seconds(left / self.concurrency)}"

    def _label(self, trial: Any) -> None:
        """Remember a running trial's method and training length (from its config)."""
        try:
            spec = self._specs[trial.config["trial"]["id"]]
            total = spec.train.get("iterations") or spec.train.get("epochs")
            self._labels[trial.trial_id] = (str(spec.method), total)
        except (AttributeError, KeyError, TypeError):
            pass

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        """A trial reported (each validation / epoch): show where it is."""
        at = result.get("iteration", result.get("epoch"))
        if isinstance(at, (int, float)):
            self._at[trial.trial_id] = int(at)
        self._label(trial)

    HEARTBEAT_S = 60.0
    """Off a terminal, a plain line at least this often while trials run (besides each finish)."""

    def draw(self, final: bool = False) -> None:
        """Redraw the line (on a terminal in place; elsewhere when a trial ends, and every minute)."""
        if not self.enabled:
            return
        text = self.line()
        now = time.monotonic()
        if self._tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self.stream.flush()
        elif ((self.done, self.failed) != self._last_counts or not self._last or final
              or now - getattr(self, "_last_plain", 0.0) >= self.HEARTBEAT_S):
            # Not a terminal (a log file, CI): one line per finished or failed trial, and a heartbeat.
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_counts = (self.done, self.failed)
            self._last_plain = now
        self._last = text
        self._last_draw = now

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune's loop tick: refresh the running count and the clock (a terminal: once a second)."""
        running = {t.trial_id for t in trials if getattr(t, "status", "") == "RUNNING"}
        if running or not trials:
            self.running = running
        if time.monotonic() - getattr(self, "_last_draw", 0.0) >= 1.0:
            self.draw()

    # Tune callback hooks -------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._label(trial)
        self._started.setdefault(trial.trial_id, time.monotonic())
        self.draw()

    def on_trial_restore(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)
        self._started.setdefault(trial.trial_id, time.monotonic())
        self.draw()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)  # it will start again from its checkpoint
        self.draw()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        started = self._started.pop(trial.trial_id, None)
        if started is not None:
            self.durations.append(time.monotonic() - started)
        if self.on_complete is not None:
            self.on_complete(trial.config)
        self.draw()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        self._started.pop(trial.trial_id, None)
        self.draw()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.draw(final=True)
