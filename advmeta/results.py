"""The one schema of advmeta's results, used by the evaluator, the Ray layer, the CLI and the tests.

Four tables per sweep, all Parquet:

- ``summary``: one row per (trial, evaluation scenario, attack, ε, fine-tune step): accuracy with
  its 95% confidence interval over the test episodes, and every setting that produced it.
- ``episodes``: one row per (trial, scenario, attack, ε, fine-tune step, test episode).
- ``checks``: one row per (trial, gradient-masking check) of every white-box evaluation
  (:mod:`advmeta.checks`).
- ``curves``: one row per (trial, logged training iteration) of every trainer: the training loss
  and the validation accuracy of the meta-learners and L2L trainers; the true environment reward
  of the current policy and the discriminator's accuracy of the GAIL family (:mod:`advmeta.gail`).

``results/README.md`` is generated from this module (``python -m advmeta.results``); a test
checks that it is in sync.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advmeta.stats import mean_ci95 as mean_ci95  # the project's one interval, re-exported


@dataclass(frozen=True)
class Column:
    """One documented column: name, pandas dtype, unit and meaning."""

    name: str
    dtype: str
    unit: str
    doc: str


_ID = [
    Column("sweep", "string", "", "name of the sweep (grid or tune run) the row belongs to"),
    Column("trial_id", "string", "", "stable id of the trial: hash of its full configuration"),
    Column("status", "string", "", "`ok`; `error` for a trial that failed after its retries; `stopped` for one ended early by ASHA"),
    Column("error", "string", "", "the failed trial's error (type: message); empty when ok"),
]
_SETTINGS = [
    Column("method", "string", "", "learner name (maml, aq, tafl, …; L2L trainers: plain, pgm, grad-l2l, …; "
           "`advmeta evaluate`: the evaluated model's name)"),
    Column("hparams", "string", "", "JSON of every hyper-parameter of the learner's dataclass"),
    Column("dataset", "string", "", "dataset name (omniglot, miniimagenet, cifar-fs, fc100, glyphs, …)"),
    Column("split", "string", "", "split evaluated (test, val)"),
    Column("image_size", "Int64", "pixels", "side of the (square) input images"),
    Column("n_way", "Int64", "classes", "N of N-way"),
    Column("k_shot", "Int64", "images/class", "K of K-shot (support images per class)"),
    Column("q_query", "Int64", "images/class", "query images per class"),
    Column("n_episodes", "Int64", "episodes", "number of test episodes the accuracy averages over"),
    Column("seed", "Int64", "", "seed of training and of the test-episode bank"),
    Column("episodes_hash", "string", "sha256", "hash of the standard test-episode manifest the row was evaluated on "
           "(its first `n_episodes` episodes; `advmeta episodes export`, `--episodes`): rows with the same hash saw "
           "the same classes and images; empty when the episodes were drawn from `seed`"),
    Column("bn_mode", "string", "", "batch-norm mode at evaluation: `batch` (transductive) or `running`"),
    Column("first_order", "boolean", "", "first-order meta-gradient (no second derivatives); null if not MAML-family"),
    Column("train_iterations", "Int64", "iterations", "meta-training iterations (epochs for L2L trainers)"),
    Column("train_eps", "float64", "[0,1] scale", "ε of the training attack (0 when none; null for a model advmeta "
           "did not train, `advmeta evaluate --model`)"),
    Column("train_eps_str", "string", "k/255", "ε of the training attack as k/255"),
]
_SCENARIO = [
    Column("scenario", "string", "", "evaluation scenario, e.g. `whitebox`, `surrogate`, `finetune`, `l2l`"),
    Column("support", "string", "", "support set at meta-test: `clean`, `adv40` (40% adversarial) or `adv`"),
    Column("query", "string", "", "query set at meta-test: `clean` or `adv`"),
    Column("attack", "string", "", "attack name (`none` for clean; `worst` = per-query minimum over attacks)"),
    Column("attack_params", "string", "", "JSON of the attack's settings (steps, step size, norm, loss, …)"),
    Column("eps", "float64", "[0,1] scale", "ε of the test attack (0 for clean)"),
    Column("eps_str", "string", "k/255", "ε of the test attack as k/255"),
    Column("eps_source", "string", "", "where the row's ε came from: `paper` (the papers' ε on their dataset), "
           "`calibrated` (smallest ε of 2…64/255 at which the grid's MAML falls below 40 % under PGD-20 on "
           "validation episodes; see `calibration.parquet`), `user` (`--eps`), `grid` (the grid file's value); "
           "empty for clean rows and runs outside a sweep"),
    Column("finetune_step", "Int64", "steps", "inner/fine-tune steps taken at meta-test before evaluating"),
]
_METRICS = [
    Column("acc", "float64", "%", "mean accuracy over episodes, 0–100"),
    Column("acc_ci95", "float64", "%", "half-width of the 95% confidence interval over the episodes: t·s/√n (Student t, n − 1 degrees of freedom; advmeta.stats)"),
    Column("loss", "float64", "nats", "mean cross-entropy on the (possibly attacked) query"),
    Column("train_seconds", "float64", "s", "wall time of training (validation excluded)"),
    Column("eval_seconds", "float64", "s", "wall time of this evaluation scenario"),
]
_PROVENANCE = [
    Column("advmeta_version", "string", "", "version of advmeta"),
    Column("advmeta_source", "string", "", "SHA-256 (first 12 hex digits) of advmeta's own source files: the code "
           "that wrote the row (the version stays 0.1.0 across commits); null in results written before it"),
    Column("torch_version", "string", "", "version of torch"),
    Column("ray_version", "string", "", "version of ray (`absent` when run without it)"),
    Column("python_version", "string", "", "version of Python"),
    Column("torch_threads", "string", "", "torch's thread count in the process that wrote the row: it changes "
           "the last bits of a trained model's weights (not part of a trial's id); null in older results"),
    Column("device", "string", "", "device the trial ran on (cpu, cuda:0, …)"),
    Column("created_at", "string", "ISO 8601 UTC", "when the row was written"),
]

_EFFORT = [
    Column("attack_iterations", "Int64", "iterations", "iterations of the strongest run behind the row's accuracy: the "
           "attack's own (`attack_params` steps) raised by escalation — twice the iterations from a new random start, "
           "per-query worst case, until a round takes less than the tolerance (advmeta.converge); for `worst`, the "
           "largest of its attacks'; null for rows without an iterative gradient attack (clean, FGSM, transfer, Square)"),
    Column("attack_restarts", "Int64", "runs", "runs from a random start in the row's per-query worst case (the "
           "attack's own included; 0 for a deterministic attack); null where `attack_iterations` is"),
    Column("converged", "boolean", "", "the last round of escalation changed the accuracy by less than the tolerance "
           "(on every chunk of episodes); false: still gaining at the cap — the accuracy is an upper bound, the "
           "row is not converged; null: not an iterative gradient attack, or not checked (no escalation)"),
]

SUMMARY_COLUMNS: tuple[Column, ...] = tuple(_ID + _SETTINGS + _SCENARIO + _METRICS + _EFFORT + _PROVENANCE)

EPISODE_COLUMNS: tuple[Column, ...] = tuple(
    _ID[:2]
    + [c for c in _SETTINGS if c.name in {"method", "dataset", "split", "seed", "episodes_hash"}]
    + [c for c in _SCENARIO if c.name in {"scenario", "support", "query", "attack", "attack_params", "eps_str",
                                          "finetune_step"}]
    + [
        Column("episode_index", "Int64", "", "index of the test episode in the bank (same episodes for every method)"),
        Column("acc", "float64", "%", "accuracy on this episode's query, 0–100"),
        Column("loss", "float64", "nats", "mean cross-entropy on this episode's query"),
        Column("l_ar", "float64", "nats", "TAFL's L_AR = max{CE(adv) − CE(clean), δ} summed over the queries; null otherwise"),
    ]
)

CHECK_COLUMNS: tuple[Column, ...] = tuple(
    _ID[:2]
    + [c for c in _SETTINGS if c.name in {"method", "dataset", "split", "seed"}]
    + [c for c in _SCENARIO if c.name == "eps_str"]
    + [
        Column("check", "string", "", "evaluation check (advmeta.checks.CHECKS): large-eps-chance, "
               "iterative-beats-single-step, converged, square-not-better, transfer-not-better, gradients-exist, "
               "deterministic"),
        Column("value", "float64", "", "the checked quantity (its unit is in `detail`); null when the check did not run"),
        Column("ci95", "float64", "points", "95% CI half-width of `value` over the checked episodes (paired checks); null otherwise"),
        Column("threshold", "float64", "", "the value the check compares with (rule in advmeta.checks)"),
        Column("passed", "boolean", "", "false: the check failed (see `diagnosis`); null: the check did not run"),
        Column("diagnosis", "string", "", "what a failed check diagnoses: `not converged` (the `converged` check: an "
               "attack still gained at the cap — remedy: more iterations) or `masking suspected` (every other check — "
               "remedy: another attack); empty when passed or not run"),
        Column("n_episodes", "Int64", "episodes", "episodes the check attacked (the first of the white-box bank; "
               "`converged`: every evaluated episode)"),
        Column("seconds", "float64", "s", "wall time of the check's own attacks"),
        Column("detail", "string", "", "what `value` measures, with the attack settings; why a check did not run"),
    ]
)

CURVE_COLUMNS: tuple[Column, ...] = tuple(
    _ID[:2]
    + [Column("method", "string", "", "the trainer: a learner (maml, aq, …), an L2L trainer (plain, pgm, …), `gail` or "
              "`gail-l2l` (the discriminator follows its optimiser / the learned updater U)"),
       Column("hparams", "string", "", "JSON of every hyper-parameter of the run (as in `summary`; GAIL: advmeta.gail.GAILConfig)"),
       Column("dataset", "string", "", "dataset trained on (meta-learners, L2L trainers); null for GAIL"),
       Column("k_shot", "Int64", "images/class", "K of the K-shot training episodes (meta-learners); null otherwise"),
       Column("env", "string", "", "gymnasium environment (CartPole-v1, MountainCar-v0); null for the other trainers"),
       Column("seed", "Int64", "", "seed of the run (GAIL: of the networks, the action sampling and the environments' resets)"),
       Column("budget", "string", "", "budget level the run's length came from (smoke, quick, paper)"),
       Column("reward_form", "string", "", "the policy's reward from D: `ho-ermon` (−log D) or `log-d` (log(1 − D))"),
       Column("batch_steps", "Int64", "steps", "state-action pairs sampled per iteration (whole episodes, at least this many)"),
       Column("iteration", "Int64", "", "units of training done: meta-iterations (meta-learners), epochs (L2L trainers); "
              "GAIL: the iteration, from 1 (the row measures the policy before this iteration's update)"),
       Column("train_loss", "float64", "nats", "meta-learners and L2L trainers: mean training loss of the units since the "
              "previous row (L2L: of the epoch)"),
       Column("train_adv_acc", "float64", "%", "accuracy on the training attack's examples over the same units, where the "
              "trainer measures it (AQ, TAFL, R-MAML, ADML-WB, the L2L trainers but Plain Net); null otherwise"),
       Column("val_acc", "float64", "%", "clean validation accuracy at this row (meta-learners: query accuracy on the "
              "validation episodes after fine-tuning; L2L trainers: the held-out images); null where not validated"),
       Column("val_acc_ci95", "float64", "%", "95% CI half-width of `val_acc` over the validation episodes (meta-learners)"),
       Column("val_robust_acc", "float64", "%", "L2L trainers: PGD-20 accuracy on the held-out images at validation; null otherwise"),
       Column("env_steps", "Int64", "steps", "environment steps sampled so far, this iteration's included"),
       Column("episodes", "Int64", "episodes", "episodes sampled this iteration (the `reward` averages over them)"),
       Column("reward", "float64", "return", "mean true environment return of this iteration's episodes of the current policy"),
       Column("reward_sd", "float64", "return", "standard deviation of those returns"),
       Column("disc_acc", "float64", "%", "balanced accuracy of D on this iteration's policy pairs and the expert's, before D's update, 0–100"),
       Column("disc_loss", "float64", "nats", "D's loss −E_π[log D] − E_E[log(1 − D)] before its update"),
       Column("updater_loss", "float64", "nats", "gail-l2l: D's loss after U's last update of the iteration (θ_U's objective); null for gail"),
       Column("gail_reward", "float64", "nats/step", "mean per-step reward the policy was given by D (after D's update)"),
       Column("policy_entropy", "float64", "nats", "mean entropy of π after its TRPO step"),
       Column("kl", "float64", "nats", "mean KL(π_old ‖ π_new) of the TRPO step (0 when the line search rejected it)"),
       Column("step_fraction", "float64", "", "fraction of TRPO's full natural step the line search accepted (0: rejected)"),
       Column("train_seconds", "float64", "s", "wall time of training so far"),
       Column("expert_reward", "float64", "return", "mean true return of the expert's saved trajectories"),
       Column("random_reward", "float64", "return", "mean true return of the uniformly random policy")]
    + _PROVENANCE
)

SUMMARY_KEY: tuple[str, ...] = ("trial_id", "scenario", "support", "query", "attack", "attack_params", "eps_str",
                                 "finetune_step")
"""The columns that identify a summary row: one row per evaluation of a trial (``attack_params`` tells
apart two tables' attacks of one name, e.g. the TAFL table's PGD-20 and R-MAML's PGD-10)."""
EPISODE_KEY: tuple[str, ...] = SUMMARY_KEY + ("episode_index",)
"""The columns that identify a per-episode row."""


def duplicate_keys(frame: pd.DataFrame, kind: str = "summary") -> pd.DataFrame:
    """The rows of ``frame`` whose key (:data:`SUMMARY_KEY` / :data:`EPISODE_KEY`) is not unique."""
    key = [c for c in (SUMMARY_KEY if kind == "summary" else EPISODE_KEY) if c in frame.columns]
    return frame[frame.duplicated(key, keep=False)]


HPARAM_PREFIX = "hp_"
"""Each hyper-parameter of a learner also gets a column ``hp_<field>`` (float64, Int64, boolean or
string after its type) so sweeps can be filtered without parsing ``hparams``; null where a method
has no such field."""

_TABLES = {"summary": SUMMARY_COLUMNS, "episodes": EPISODE_COLUMNS, "checks": CHECK_COLUMNS, "curves": CURVE_COLUMNS}


def add_blocks(summary: pd.DataFrame, episodes: pd.DataFrame, block_summary: pd.DataFrame,
               block_episodes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A trial's rows after blocks of further test episodes were evaluated for some of them.

    Each summary row the blocks extend (by :data:`SUMMARY_KEY`) is recomputed over all of its
    episodes: accuracy, interval and ``n_episodes`` from the per-episode rows, ``loss`` their mean,
    ``eval_seconds`` summed, the largest ``attack_iterations`` and ``attack_restarts``, and
    ``converged`` only when no block's attack stopped short of convergence. Other rows are kept.
    """
    if block_summary.empty:
        return summary, episodes
    key = [k for k in SUMMARY_KEY if k != "trial_id"]
    ep_key = [k for k in key if k in episodes.columns]
    all_eps = pd.concat([episodes, block_episodes], ignore_index=True)
    all_eps = all_eps.drop_duplicates(subset=["trial_id", *ep_key, "episode_index"], keep="first")
    out = summary.copy()
    for _, block in block_summary.groupby(key, dropna=False, sort=False):
        first = block.iloc[0]
        mask = pd.Series(True, index=out.index)
        for k in key:
            mask &= out[k].isna() if pd.isna(first[k]) else out[k].astype("string").eq(str(first[k])).fillna(False)
        if not mask.any():
            continue
        i = out.index[mask][0]
        mine = all_eps
        for k in ep_key:
            mine = mine[mine[k].isna()] if pd.isna(first[k]) else mine[mine[k].astype("string").eq(str(first[k])).fillna(False)]
        accs = mine["acc"].to_numpy(dtype=float)
        mean, ci = mean_ci95(accs)
        out.loc[i, ["acc", "acc_ci95", "n_episodes"]] = [mean, ci, len(accs)]
        out.loc[i, "loss"] = float(mine["loss"].astype(float).mean())
        out.loc[i, "eval_seconds"] = float(out.loc[i, "eval_seconds"]) + float(block["eval_seconds"].astype(float).sum())
        for col in ("attack_iterations", "attack_restarts"):
            values = pd.concat([out.loc[[i], col], block[col]]).dropna()
            out.loc[i, col] = int(values.max()) if len(values) else pd.NA
        flags = pd.concat([out.loc[[i], "converged"], block["converged"]]).dropna()
        out.loc[i, "converged"] = bool(flags.astype(bool).all()) if len(flags) else pd.NA
    return out, all_eps


def hparam_columns(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The ``hparams`` JSON plus one ``hp_<field>`` entry per scalar hyper-parameter."""
    out: dict[str, Any] = {"hparams": json.dumps(dict(hparams), sort_keys=True, default=str)}
    for key, value in hparams.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[HPARAM_PREFIX + key] = value
        else:
            out[HPARAM_PREFIX + key] = json.dumps(value, default=str)
    return out


def to_frame(rows: Iterable[Mapping[str, Any]], kind: str = "summary") -> pd.DataFrame:
    """Rows as a DataFrame with the documented columns first, in order and with their dtypes.

    Missing documented columns are filled with nulls; ``hp_*`` columns are kept (typed from their
    values); any other unknown key is an error, so the schema cannot drift silently.
    """
    columns = _TABLES[kind]
    frame = pd.DataFrame(list(rows))
    known = {c.name for c in columns}
    extra = [c for c in frame.columns if c not in known and not str(c).startswith(HPARAM_PREFIX)]
    if extra:
        raise KeyError(f"columns not in the {kind} schema: {extra}")
    for col in columns:
        if col.name not in frame.columns:
            frame[col.name] = pd.Series([None] * len(frame), dtype=object)
        frame[col.name] = frame[col.name].astype(col.dtype)
    hp = sorted(c for c in frame.columns if str(c).startswith(HPARAM_PREFIX))
    for name in hp:
        frame[name] = frame[name].astype(_hparam_dtype(frame[name]))
    return frame[[c.name for c in columns] + hp]


def _hparam_dtype(values: pd.Series) -> str:
    # Typed after the Python values (the dataclass fields), not guessed from them: 2.0 stays float.
    kinds = {type(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if kinds and kinds <= {bool, np.bool_}:
        return "boolean"
    if kinds and kinds <= {int, np.int64}:
        return "Int64"
    if kinds and kinds <= {int, float, np.int64, np.float64}:
        return "float64"
    return "string"


def read_table(folder: str | os.PathLike[str], kind: str) -> pd.DataFrame:
    """A sweep folder's (local path or URI) ``<kind>.parquet`` for an optional table (``checks``,
    ``curves``): an empty frame of the documented columns when the sweep has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advmeta.bank import filesystem

    fs, root = filesystem(str(folder))
    try:
        return pq.read_table(f"{root}/{kind}.parquet", filesystem=fs).to_pandas()
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        return to_frame([], kind)


def write_parquet_atomic(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` to ``path`` through a temporary file and an atomic rename."""
    from advmeta.atomic import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def schema_markdown() -> str:
    """The column documentation of every table, as Markdown (the body of results/README.md)."""
    lines: list[str] = []
    for kind, columns in _TABLES.items():
        lines += [f"### `{kind}`", "", "| column | dtype | unit | meaning |", "|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.doc} |" for c in columns]
        lines.append("")
    lines += [f"Plus, in `summary` and `curves`, one `{HPARAM_PREFIX}<field>` column per learner hyper-parameter "
              "(typed after the field; null where a method lacks it).", "",
              f"Unique keys: a `summary` row is identified by ({', '.join(f'`{c}`' for c in SUMMARY_KEY)}); an "
              f"`episodes` row by the same plus `episode_index`. Group by the whole key (not by `attack` "
              "alone): two tables may run an attack of one name with other settings.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(schema_markdown())


def load(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``summary`` and ``episodes`` tables of a sweep folder (local path or URI).

    Raises:
        FileNotFoundError: the folder holds no ``summary.parquet``.
        CorruptDataError: it is not a readable advmeta summary.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from advmeta.bank import filesystem
    from advmeta.errors import CorruptDataError

    fs, root = filesystem(str(folder))
    try:
        summary = pq.read_table(f"{root}/summary.parquet", filesystem=fs).to_pandas()
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorruptDataError(f"{folder}/summary.parquet is not a readable Parquet file ({str(err).splitlines()[0][:160]}); "
                               "re-run the sweep into this folder to rewrite it") from None
    missing = [c for c in ("trial_id", "method", "scenario", "acc") if c not in summary.columns]
    if missing:
        raise CorruptDataError(f"{folder}/summary.parquet is not an advmeta summary (no {', '.join(missing)} column)")
    try:
        episodes = pq.read_table(f"{root}/episodes.parquet", filesystem=fs).to_pandas()
    except (FileNotFoundError, OSError, pa.ArrowInvalid):
        episodes = pd.DataFrame()
    return summary, episodes



def load_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The sweep's ``sweep.json`` (None when absent or unreadable)."""
    from advmeta.bank import filesystem

    fs, root = filesystem(str(folder))
    try:
        with fs.open_input_stream(f"{root}/sweep.json") as inp:
            return dict(json.loads(inp.read().decode()))
    except (FileNotFoundError, OSError, ValueError):
        return None

