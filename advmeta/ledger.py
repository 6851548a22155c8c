"""The per-trial completion ledger of a sweep: what makes resuming exact.

Layout of a sweep folder (local path or any pyarrow filesystem URI)::

    sweep.json                      the sweep's manifest: its trials, grid, budget, command
    trials/<trial_id>/spec.json     the trial's TrialSpec
    trials/<trial_id>/summary.parquet, episodes.parquet   its result rows
    trials/<trial_id>/checks.parquet   its gradient-masking checks (trials with a white-box evaluation)
    trials/<trial_id>/curves.parquet   its learning curve (GAIL trials: one row per iteration)
    trials/<trial_id>/DONE.json     written last: the trial is finished (final metrics)
    trials/<trial_id>/ERROR.json    the trial failed after its retries (cleared by a success)
    trials/<trial_id>/work/         training state (checkpoints) of a local sweep
    summary.parquet, episodes.parquet, checks.parquet, curves.parquet   the merged tables (rewritten atomically)
    ray/                            Ray Tune's own experiment folders: one per run, its logs (Tune's copies of
                                    the checkpoints are removed when the run is over: the trials' work/ holds them)

A trial is finished exactly when its ``DONE.json`` exists. It is written after the rows and
by rename, so a SIGKILL at any instant leaves either a finished trial (never recomputed) or an
unfinished one (recomputed from its last checkpoint). The merged tables hold each trial of the
manifest once: its rows if done, one error row if failed.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from advmeta import __version__
from advmeta.bank import filesystem
from advmeta.results import hparam_columns, to_frame
from advmeta.plan.trial import TrialSpec

DONE, ERROR, SPEC, MANIFEST = "DONE.json", "ERROR.json", "spec.json", "sweep.json"


class Ledger:
    """Read and write a sweep folder (see the module docstring).

    Args:
        root: the sweep folder, a local path or a URI (``s3://bucket/results/paper-tables``).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs, self.path = filesystem(root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    # -- low-level, atomic writes ------------------------------------------------------------
    def _p(self, *parts: str) -> str:
        return "/".join((self.path.rstrip("/"),) + parts)

    def _write_bytes(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        if self.local:
            os.replace(tmp, path)  # atomic on POSIX
        else:
            self.fs.move(tmp, path)  # object stores publish whole objects anyway

    def _read_json(self, path: str) -> Any:
        with self.fs.open_input_stream(path) as inp:
            return json.loads(inp.read().decode())

    def _exists(self, path: str) -> bool:
        return bool(self.fs.get_file_info(path).type != pafs.FileType.NotFound)

    def write_json(self, path: str, data: Any) -> None:
        """Atomically write JSON at ``path`` (inside the sweep folder)."""
        self._write_bytes(path, json.dumps(data, indent=1, sort_keys=True, default=str).encode())

    def write_frame(self, frame: pd.DataFrame, path: str) -> None:
        """Atomically write a Parquet file at ``path`` (inside the sweep folder)."""
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        self._write_bytes(path, buf.getvalue())

    # -- the manifest ----------------------------------------------------------------------
    def write_manifest(self, info: Mapping[str, Any], specs: Iterable[TrialSpec]) -> None:
        """Record the sweep's trials (``--resume`` reruns exactly these)."""
        self.write_json(self._p(MANIFEST), {**info, "advmeta_version": __version__,
                                              "trials": [s.to_dict() for s in specs]})

    def update_manifest(self, fields: Mapping[str, Any]) -> None:
        """Add ``fields`` to the manifest (e.g. the run's ``wall_seconds``); no-op without one."""
        manifest = self.read_manifest()
        if manifest is not None:
            self.write_json(self._p(MANIFEST), {**manifest, **fields})

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` when the folder holds no sweep."""
        path = self._p(MANIFEST)
        return self._read_json(path) if self._exists(path) else None

    # -- trials ----------------------------------------------------------------------------
    def trial_path(self, tid: str, *parts: str) -> str:
        """Path of a trial's file in the ledger."""
        return self._p("trials", tid, *parts)

    def is_done(self, tid: str) -> bool:
        """Whether the trial finished (its rows are stored)."""
        return self._exists(self.trial_path(tid, DONE))

    def error_of(self, tid: str) -> str | None:
        """The recorded error of a trial that failed after its retries, if any."""
        path = self.trial_path(tid, ERROR)
        return str(self._read_json(path)["error"]) if self._exists(path) else None

    def final_metrics(self, tid: str) -> dict[str, Any]:
        """The final metrics a finished trial reported."""
        return dict(self._read_json(self.trial_path(tid, DONE)).get("metrics", {}))

    def work_dir(self, tid: str) -> str:
        """A local folder for the trial's training state.

        On a local sweep it is inside the ledger (so a re-run finds its checkpoints); on remote
        storage it is a local cache folder, mirrored by :meth:`sync_work`.
        """
        if self.local:
            return self.trial_path(tid, "work")
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        key = uuid.uuid5(uuid.NAMESPACE_URL, self.root).hex[:12]
        return os.path.join(cache, "advmeta", "work", key, tid)

    def sync_work(self, tid: str, local: str, upload: bool) -> None:
        """Mirror a trial's work folder to (``upload``) or from remote storage; no-op when local."""
        if self.local:
            return
        remote = self.trial_path(tid, "work")
        local_fs = pafs.LocalFileSystem()
        if upload:
            pafs.copy_files(local, remote, source_filesystem=local_fs, destination_filesystem=self.fs)
        elif self._exists(remote):
            os.makedirs(local, exist_ok=True)
            pafs.copy_files(remote, local, source_filesystem=self.fs, destination_filesystem=local_fs)

    def write_spec(self, spec: TrialSpec) -> None:
        """Record the trial's spec next to its results."""
        self.write_json(self.trial_path(spec.trial_id, SPEC), spec.to_dict())

    def write_result(self, spec: TrialSpec, rows: list[dict[str, Any]], episode_rows: list[dict[str, Any]],
                     metrics: Mapping[str, Any], check_rows: list[dict[str, Any]] | None = None,
                     curve_rows: list[dict[str, Any]] | None = None) -> None:
        """Store a finished trial's rows, then mark it done (the order is what makes it atomic)."""
        tid = spec.trial_id
        self.write_frame(to_frame(rows, "summary"), self.trial_path(tid, "summary.parquet"))
        self.write_frame(to_frame(episode_rows, "episodes"), self.trial_path(tid, "episodes.parquet"))
        if check_rows:
            self.write_frame(to_frame(check_rows, "checks"), self.trial_path(tid, "checks.parquet"))
        if curve_rows:
            self.write_frame(to_frame(curve_rows, "curves"), self.trial_path(tid, "curves.parquet"))
        self.write_json(self.trial_path(tid, DONE), {"trial_id": tid, "metrics": dict(metrics)})
        if self._exists(self.trial_path(tid, ERROR)):
            self.fs.delete_file(self.trial_path(tid, ERROR))

    def write_block(self, tid: str, start: int, rows: list[dict[str, Any]], episode_rows: list[dict[str, Any]]) -> None:
        """Store a block of further test episodes of a finished trial (from bank index ``start``),
        evaluated to decide a claim (advmeta.tune.extend); its episodes file is written first, so a
        block whose summary exists is whole."""
        self.write_frame(to_frame(episode_rows, "episodes"), self.trial_path(tid, "blocks", f"{start:06d}-episodes.parquet"))
        self.write_frame(to_frame(rows, "summary"), self.trial_path(tid, "blocks", f"{start:06d}-summary.parquet"))

    def own_summary(self, tid: str) -> pd.DataFrame:
        """A finished trial's summary rows as its own evaluation wrote them (without blocks)."""
        return self._read_frame(self.trial_path(tid, "summary.parquet"))

    def _blocks(self, tid: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The trial's stored blocks of further episodes (summary rows, episode rows)."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.trial_path(tid, "blocks"), allow_not_found=True))
        starts = sorted(i.base_name.split("-")[0] for i in infos if i.base_name.endswith("-summary.parquet"))
        summary = [self._read_frame(self.trial_path(tid, "blocks", f"{st}-summary.parquet")) for st in starts]
        episodes = [self._read_frame(self.trial_path(tid, "blocks", f"{st}-episodes.parquet")) for st in starts]
        return _concat(summary, "summary"), _concat(episodes, "episodes")

    def write_error(self, spec: TrialSpec, error: str, status: str = "error") -> None:
        """Record a trial that failed after its retries, or was ``stopped`` early by a scheduler.

        It stays in the results as one row with that status and message.
        """
        self.write_json(self.trial_path(spec.trial_id, ERROR), {"trial_id": spec.trial_id, "error": error,
                                                                "status": status, "spec": spec.to_dict()})

    def status_of(self, tid: str) -> str:
        """``ok``, ``error``, ``stopped`` or ``pending``."""
        if self.is_done(tid):
            return "ok"
        path = self.trial_path(tid, ERROR)
        return str(self._read_json(path).get("status", "error")) if self._exists(path) else "pending"

    def to_run(self, specs: Iterable[TrialSpec]) -> list[TrialSpec]:
        """The trials a run of this sweep runs, in their order: failed ones are retried, finished and
        early-stopped ones are final."""
        return [s for s in specs if self.status_of(s.trial_id) not in ("ok", "stopped")]

    # -- merged tables ---------------------------------------------------------------------
    def _read_frame(self, path: str) -> pd.DataFrame:
        return pq.read_table(path, filesystem=self.fs).to_pandas()

    def finished_ids(self) -> list[str]:
        """Every trial of the folder with stored rows (this run's or an earlier one's), sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self._p("trials"), allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and self.is_done(i.base_name))

    def merge(self, specs: Iterable[TrialSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Write ``summary.parquet``/``episodes.parquet``/``checks.parquet``/``curves.parquet`` with each trial of
        ``specs`` once, and every other trial finished in this folder before (a re-run with
        narrower ``--methods`` or another seed never drops earlier results).

        Returns:
            The summary and episodes frames (the checks are read back with :meth:`checks`).
        """
        summaries: list[pd.DataFrame] = []
        episodes: list[pd.DataFrame] = []
        checks: list[pd.DataFrame] = []
        curves: list[pd.DataFrame] = []
        error_rows: list[dict[str, Any]] = []
        mine = dict((s.trial_id, s) for s in specs)

        def read(tid: str) -> None:
            from advmeta.results import add_blocks

            summary, episode = (self._read_frame(self.trial_path(tid, "summary.parquet")),
                                self._read_frame(self.trial_path(tid, "episodes.parquet")))
            summary, episode = add_blocks(summary, episode, *self._blocks(tid))
            summaries.append(summary)
            episodes.append(episode)
            if self._exists(self.trial_path(tid, "checks.parquet")):
                checks.append(self._read_frame(self.trial_path(tid, "checks.parquet")))
            if self._exists(self.trial_path(tid, "curves.parquet")):
                curves.append(self._read_frame(self.trial_path(tid, "curves.parquet")))

        for tid in self.finished_ids():
            if tid not in mine:
                read(tid)
        for spec in mine.values():
            tid = spec.trial_id
            if self.is_done(tid):
                read(tid)
            else:
                path = self.trial_path(tid, ERROR)
                if self._exists(path):
                    rec = self._read_json(path)
                    error_rows.append(error_row(spec, str(rec["error"]), str(rec.get("status", "error"))))
        if error_rows:
            summaries.append(to_frame(error_rows, "summary"))
        summary = _concat(summaries, "summary")
        episode = _concat(episodes, "episodes")
        self.write_frame(summary, self._p("summary.parquet"))
        self.write_frame(episode, self._p("episodes.parquet"))
        self.write_frame(_concat(checks, "checks"), self._p("checks.parquet"))
        self.write_frame(_concat(curves, "curves"), self._p("curves.parquet"))
        return summary, episode

    def checks(self) -> pd.DataFrame:
        """The merged masking checks (empty, typed, when the sweep has none)."""
        path = self._p("checks.parquet")
        return self._read_frame(path) if self._exists(path) else to_frame([], "checks")


def _concat(frames: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    """Concatenate per-trial tables, keeping the documented dtypes (hp_* columns may differ)."""
    from advmeta.results import CHECK_COLUMNS, CURVE_COLUMNS, EPISODE_COLUMNS, HPARAM_PREFIX, SUMMARY_COLUMNS

    frames = [f for f in frames if len(f)]
    if not frames:
        return to_frame([], kind)
    frame = pd.concat(frames, ignore_index=True)
    columns = {"summary": SUMMARY_COLUMNS, "episodes": EPISODE_COLUMNS, "checks": CHECK_COLUMNS,
               "curves": CURVE_COLUMNS}[kind]
    for col in columns:
        frame[col.name] = frame[col.name].astype(col.dtype)
    hp = sorted(c for c in frame.columns if str(c).startswith(HPARAM_PREFIX))
    for name in hp:
        if frame[name].dtype == "object":
            frame[name] = frame[name].convert_dtypes(convert_floating=False, convert_integer=True)
            if frame[name].dtype == "object":
                frame[name] = frame[name].astype("string")
    return frame[[c.name for c in columns] + hp]


def error_row(spec: TrialSpec, error: str, status: str = "error") -> dict[str, Any]:
    """The one summary row recording a failed trial (settings filled, metrics null)."""
    from advmeta.env import provenance

    train = dict(spec.train)
    return {
        "sweep": spec.sweep, "trial_id": spec.trial_id, "status": status, "error": error,
        "method": spec.method, **hparam_columns(dict(spec.hparams)), "dataset": train.get("dataset"),
        "split": "test", "image_size": train.get("image_size"), "n_way": train.get("n_way"),
        "k_shot": train.get("k_shot"), "q_query": train.get("q_query"), "seed": train.get("seed"),
        "train_iterations": train.get("iterations", train.get("epochs")), **provenance(),
    }
