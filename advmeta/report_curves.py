"""The report's learning curves (``curves.parquet``).

The GAIL family (its rows have an ``env``): reward against iteration per environment.

- ``gail_<env>.png``: the true reward of GAIL and L2L-GAIL against the iteration, mean ± 95 % CI
  over seeds (Student t), with the expert's and the random policy's reward as lines.
- A Markdown table per environment and method: final and best reward, the late drop (the
  claims' statistic), the discriminator's final accuracy and the training time.

Every other trainer (meta-learners, L2L trainers): ``curves_<table>.png``, per table of the grid,
the training loss, the validation accuracy and (adversarial trainers) the accuracy on the training
attack against the iteration (epoch), one line per method and setting, mean ± 95 % CI band over
seeds where a setting has several.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advmeta.claims import curve_statistics, last_tenth
from advmeta.stats import LEVEL, mean_ci95, t_quantile


def load_curves(folder: str | Path) -> pd.DataFrame:
    """The GAIL family's rows of the sweep's ``curves.parquet`` (the reward curves its claims and
    section read; an empty, typed frame when it has none)."""
    from advmeta.results import read_table

    curves = read_table(folder, "curves")
    return curves[curves["env"].notna()].reset_index(drop=True)


def load_training_curves(folder: str | Path) -> pd.DataFrame:
    """The other trainers' rows of the sweep's ``curves.parquet`` (meta-learners, L2L trainers);
    empty for a sweep written before they had curves."""
    from advmeta.results import read_table

    curves = read_table(folder, "curves")
    return curves[curves["env"].isna()].reset_index(drop=True)


def band(wide: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``wide`` (one column per seed): the seeds that have a value, their mean and the
    95 % CI half-width (Student t; NaN with one seed)."""
    n = wide.notna().sum(axis=1).to_numpy()
    mean = wide.mean(axis=1).to_numpy(dtype=float)
    sd = wide.std(axis=1, ddof=1).to_numpy(dtype=float)
    ci = np.array([t_quantile(0.5 + LEVEL / 2, int(k) - 1) if k >= 2 else np.nan for k in n]) * sd / np.sqrt(np.maximum(n, 1))
    return n, mean, ci


def _mean_ci(values: list[float]) -> tuple[float, float]:
    return mean_ci95([v for v in values if math.isfinite(v)])


def _fmt(mean: float, ci: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {ci:.{digits}f}" if math.isfinite(ci) else "")


def curve_table(curves: pd.DataFrame) -> list[str]:
    """Markdown lines: per environment and method, over seeds (mean ± 95 % CI)."""
    if curves.empty:
        return []
    lines = ["| environment | method | seeds | iterations | final reward | best reward | late drop (normalised) "
             "| D accuracy, last tenth (%) | train s | expert | random |", "|---" * 11 + "|"]
    for (env, method), sub in curves.groupby(["env", "method"], sort=True):
        finals, bests, drops, accs, secs, its = [], [], [], [], [], []
        for _, c in sub.groupby("trial_id", sort=True):
            c = c.sort_values("iteration")
            tail = last_tenth(len(c))
            finals.append(float(c["reward"].iloc[-tail:].mean()))
            bests.append(float(c["reward"].max()))
            drops.append(curve_statistics(c)["late_drop"])
            accs.append(float(c["disc_acc"].iloc[-tail:].mean()))
            secs.append(float(c["train_seconds"].iloc[-1]))
            its.append(len(c))
        first = sub.iloc[0]
        lines.append(f"| {env} | {method} | {len(finals)} | {max(its)} | {_fmt(*_mean_ci(finals))} | "
                     f"{_fmt(*_mean_ci(bests))} | {_fmt(*_mean_ci(drops), digits=3)} | {_fmt(*_mean_ci(accs))} | "
                     f"{np.mean(secs):.0f} | {float(first['expert_reward']):.1f} | {float(first['random_reward']):.1f} |")
    return lines


def curve_figures(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per environment: reward against iteration, mean ± 95 % CI band over seeds per method."""
    if curves.empty:
        return []
    from advmeta.report_figures import _plt, _save

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    plt = _plt()
    for env, sub in curves.groupby("env", sort=True):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for method, m in sub.groupby("method", sort=True):
            wide = m.pivot_table(index="iteration", columns="trial_id", values="reward", aggfunc="mean").sort_index()
            n, mean, ci = band(wide)
            line, = ax.plot(wide.index, mean, label=f"{method} (n={int(n.max())})", lw=1.2)
            ax.fill_between(wide.index, mean - ci, mean + ci, alpha=0.2, color=line.get_color(), lw=0)
        first = sub.iloc[0]
        ax.axhline(float(first["expert_reward"]), color="k", ls="--", lw=0.8, label="expert")
        ax.axhline(float(first["random_reward"]), color="grey", ls=":", lw=0.8, label="random")
        ax.set_xlabel("iteration")
        ax.set_ylabel("true reward")
        ax.set_title(f"{env}: mean ± 95% CI over seeds", fontsize=9)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out_dir / f"gail_{str(env).split('-')[0].lower()}.png"))
    return paths


def curve_section(curves: pd.DataFrame, out_dir: Path) -> tuple[list[str], list[Path]]:
    """The report's Markdown lines and figures for the learning curves (nothing when there are none)."""
    if curves.empty:
        return [], []
    figs = curve_figures(curves, out_dir / "figures")
    lines = ["## GAIL: learning curves", "",
             "The true environment reward of each run's policy at every iteration (`curves.parquet`), over seeds "
             "(mean ± 95 % CI, Student t). Final: the mean reward of the last tenth of the iterations; late drop: "
             "the run's best smoothed reward minus its final one, on the scale random = 0, expert = 1 (the claims' "
             "statistic).", ""]
    lines += curve_table(curves) + [""]
    lines += [f"![{p.stem}](figures/{p.name})" for p in figs] + [""]
    return lines, figs


def overview_lines(curves: pd.DataFrame) -> list[str]:
    """The curve table for ``overview.md`` (what a README shows)."""
    return ([""] + curve_table(curves)) if len(curves) else []



def trial_tables(manifest: dict[str, Any] | None, trial_ids: list[str]) -> dict[str, list[str]]:
    """Table name → its trials among ``trial_ids`` (the manifest's tables; a sweep without tables,
    or trials it does not list, under the sweep's name)."""
    out: dict[str, list[str]] = {}
    listed = {str(t.get("trial_id")): list(t.get("table") or []) for t in (manifest or {}).get("trials") or []}
    fallback = str((manifest or {}).get("name") or "trials")
    for tid in trial_ids:
        for table in listed.get(tid) or [fallback]:
            out.setdefault(str(table), []).append(tid)
    return out


def _labels(curves: pd.DataFrame, summary: pd.DataFrame) -> dict[str, str]:
    """trial id → its label in the report's tables (method and the settings that vary), from its summary rows."""
    from advmeta.report_common import row_labels

    ids = curves["trial_id"].astype(str).unique().tolist()
    ok = summary[summary["trial_id"].astype(str).isin(ids)].drop_duplicates("trial_id") if len(summary) else summary
    labels = dict(zip(ok["trial_id"].astype(str), row_labels(ok))) if len(ok) else {}
    for tid, method in curves.drop_duplicates("trial_id")[["trial_id", "method"]].itertuples(index=False):
        labels.setdefault(str(tid), str(method))
    return labels


def training_curve_figures(curves: pd.DataFrame, summary: pd.DataFrame, manifest: dict[str, Any] | None,
                           out_dir: Path) -> list[tuple[str, Path]]:
    """Per table, one PNG of its trainers' learning curves: the training loss, the validation accuracy and
    (where measured) the accuracy on the training attack against the iteration; one line per label (method
    and varying settings), the mean over its seeds with a 95 % CI band where it has several.

    Returns:
        ``(table, path)`` per figure drawn.
    """
    if curves.empty:
        return []
    from advmeta.report_figures import _plt, _save, colors

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = _labels(curves, summary)
    plt = _plt()
    out = []
    for table, ids in trial_tables(manifest, sorted(curves["trial_id"].astype(str).unique())).items():
        rows = curves[curves["trial_id"].astype(str).isin(ids)].assign(label=lambda f: f["trial_id"].astype(str).map(labels))
        panels = [("train_loss", "training loss (nats)"), ("val_acc", "validation accuracy (%)")]
        if rows["train_adv_acc"].notna().any():
            panels.append(("train_adv_acc", "accuracy on the training attack (%)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.8, 3.4), squeeze=False)
        names = sorted(rows["label"].unique())
        palette = colors(len(names))
        for ax, (col, title) in zip(axes[0], panels):
            for name, color in zip(names, palette):
                sub = rows[(rows["label"] == name) & rows[col].notna()]
                if sub.empty:
                    continue
                wide = sub.pivot_table(index="iteration", columns="trial_id", values=col, aggfunc="mean").sort_index()
                n, mean, ci = band(wide)
                x = wide.index.to_numpy(dtype=float)
                seeds = int(n.max())
                ax.plot(x, mean, color=color, lw=1.1, marker="." if len(x) < 30 else None, ms=4,
                        label=name + (f" ({seeds} seeds)" if seeds > 1 else ""))
                if seeds > 1:
                    ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=0.2, lw=0)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("epoch" if rows["method"].isin(_l2l_methods()).all() else "iteration")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
        handles, texts = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, texts, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
        fig.suptitle(f"Learning curves: {table}", fontsize=10)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in table)
        out.append((table, _save(fig, out_dir / f"curves_{safe}.png")))
    return out


def _l2l_methods() -> list[str]:
    try:
        from advmeta.l2l import METHOD_NAMES

        return list(METHOD_NAMES)
    except ImportError:
        return []
