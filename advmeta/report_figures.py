"""The report's PNG figures (matplotlib, Agg backend): each drawn only when the sweep has its data.

- ``acc_vs_eps.png``: robust accuracy against the test ε (white-box, adversarial query).
- ``gamma_k.png``: TAFL's robust accuracy over the γ × k grid.
- ``acc_vs_step.png``: accuracy against the fine-tune step, clean and under the surrogate
  attack (ADML Figures 2–3).
- ``l_ar_kde.png``: the density of TAFL's L_AR over test episodes, per method (TAFL's figure).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from advmeta.report_common import gaussian_kde, row_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plt() -> ModuleType:
    """``matplotlib.pyplot``, imported after selecting the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: Path) -> Path:
    """Lay out, write (PNG, 120 dpi) and close a figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def acc_vs_eps(summary: pd.DataFrame, path: Path) -> Path | None:
    """Robust accuracy against ε, one line per method (clean accuracy at ε = 0)."""
    wb = summary[(summary["scenario"] == "whitebox") & (summary["status"] == "ok")].copy()
    if wb.empty:
        return None
    attack = "worst" if (wb["attack"] == "worst").any() else wb.loc[wb["attack"] != "none", "attack"].iloc[0] \
        if (wb["attack"] != "none").any() else None
    if attack is None:
        return None
    wb["row"] = row_labels(wb)
    adv = wb[(wb["attack"] == attack) & (wb["query"] == "adv")]
    if adv["eps"].nunique() < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, sub in adv.groupby("row"):
        clean = wb[(wb["row"] == label) & (wb["attack"] == "none")]["acc"]
        pts = sub.groupby("eps")["acc"].mean().sort_index()
        xs = ([0.0] if len(clean) else []) + [e * 255 for e in pts.index]
        ys = ([float(clean.mean())] if len(clean) else []) + list(pts.values)
        ax.plot(xs, ys, marker="o", label=str(label))
    ax.set_xlabel("test ε (×1/255)")
    ax.set_ylabel(f"accuracy under {attack} (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def gamma_k(summary: pd.DataFrame, path: Path) -> Path | None:
    """Heatmap of robust accuracy over TAFL's γ × k (first attacked whitebox column)."""
    if "hp_gamma" not in summary or "hp_k" not in summary:
        return None
    wb = summary[(summary["scenario"] == "whitebox") & (summary["query"] == "adv") & (summary["status"] == "ok")
                 & summary["hp_gamma"].notna() & summary["hp_k"].notna()]
    wb = wb[wb["attack"] != "worst"] if (wb["attack"] != "worst").any() else wb
    if wb.empty or wb["hp_gamma"].nunique() < 2 and wb["hp_k"].nunique() < 2:
        return None
    first = wb[(wb["attack"] == wb["attack"].iloc[0]) & (wb["eps_str"] == wb["eps_str"].iloc[0])]
    grid = first.pivot_table(index="hp_gamma", columns="hp_k", values="acc", aggfunc="mean").sort_index()
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    im = ax.imshow(grid.values.astype(float), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), [f"{k:g}" for k in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{g:g}" for g in grid.index])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.values[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel("k")
    ax.set_ylabel("γ")
    ax.set_title(f"TAFL robust acc. ({first['attack'].iloc[0]} {first['eps_str'].iloc[0]})", fontsize=9)
    fig.colorbar(im, ax=ax, label="%")
    return _save(fig, path)


def acc_vs_step(summary: pd.DataFrame, path: Path) -> Path | None:
    """Accuracy against the fine-tune step: clean (solid) and surrogate-attacked query (dashed)."""
    ok = summary[summary["status"] == "ok"].copy()
    ft = ok[ok["scenario"] == "finetune"]
    if ft.empty or ft["finetune_step"].nunique() < 2:
        return None
    ok["row"] = row_labels(ok)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    colors = {}
    for label, sub in ok[ok["scenario"] == "finetune"].groupby("row"):
        pts = sub.groupby("finetune_step")["acc"].mean()
        (line,) = ax.plot(pts.index, pts.values, marker=".", label=f"{label} clean")
        colors[label] = line.get_color()
    sur = ok[(ok["scenario"] == "surrogate") & (ok["support"] == "clean") & (ok["query"] == "adv")]
    if not sur.empty:
        sur = sur[sur["eps_str"] == sur["eps_str"].iloc[0]]
        for label, sub in sur.groupby("row"):
            pts = sub.groupby("finetune_step")["acc"].mean()
            ax.plot(pts.index, pts.values, ls="--", color=colors.get(label),
                    label=f"{label} adv. query {sur['eps_str'].iloc[0]}")
    ax.set_xlabel("fine-tune step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def l_ar_kde(episodes: pd.DataFrame, path: Path) -> Path | None:
    """Density of the per-episode L_AR of each method (white-box, first attack and ε)."""
    if episodes.empty or "l_ar" not in episodes or episodes["l_ar"].notna().sum() < 2:
        return None
    ep = episodes[episodes["l_ar"].notna()]
    ep = ep[(ep["attack"] == ep["attack"].iloc[0]) & (ep["eps_str"] == ep["eps_str"].iloc[0])]
    lo, hi = float(ep["l_ar"].min()), float(ep["l_ar"].max())
    grid = np.linspace(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9), 200)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, sub in ep.groupby("method"):
        ax.plot(grid, gaussian_kde(sub["l_ar"].to_numpy(), grid), label=str(method))
    ax.set_xlabel("L_AR per episode (nats)")
    ax.set_ylabel("density")
    ax.set_title(f"L_AR over test episodes ({ep['attack'].iloc[0]} {ep['eps_str'].iloc[0]})", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def figures(summary: pd.DataFrame, episodes: pd.DataFrame, folder: Path) -> list[Path]:
    """Draw every figure the data allows into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    made = [acc_vs_eps(summary, folder / "acc_vs_eps.png"), gamma_k(summary, folder / "gamma_k.png"),
            acc_vs_step(summary, folder / "acc_vs_step.png"), l_ar_kde(episodes, folder / "l_ar_kde.png")]
    return [p for p in made if p is not None]
