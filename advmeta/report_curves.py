"""The report's learning-curve section (the GAIL family): reward against iteration per environment.

- ``gail_<env>.png``: the true reward of GAIL and L2L-GAIL against the iteration, mean ± 95 % CI
  over seeds (Student t), with the expert's and the random policy's reward as lines.
- A Markdown table per environment and method: final and best reward, the late drop (the
  claims' statistic), the discriminator's final accuracy and the training time.
"""

from __future__ import annotations

import math
from pathlib import Path
import numpy as np
import pandas as pd

from advmeta.claims import curve_statistics, last_tenth
from advmeta.stats import LEVEL, mean_ci95, t_quantile


def load_curves(folder: str | Path) -> pd.DataFrame:
    """The sweep's ``curves.parquet`` (an empty, typed frame when it has none)."""
    from advmeta.results import read_table

    return read_table(folder, "curves")


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
            n = wide.notna().sum(axis=1).to_numpy()
            mean = wide.mean(axis=1).to_numpy()
            sd = wide.std(axis=1, ddof=1).to_numpy()
            ci = np.array([t_quantile(0.5 + LEVEL / 2, int(k) - 1) if k >= 2 else np.nan for k in n]) * sd / np.sqrt(np.maximum(n, 1))
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

