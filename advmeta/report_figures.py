"""The report's PNG figures (matplotlib, Agg backend): each drawn only when the sweep has its data.

- ``acc_vs_eps.png``: robust accuracy against the test ε (white-box, adversarial query).
- ``gamma_k.png``: TAFL's robust accuracy over the γ × k grid.
- ``acc_vs_step.png``: clean accuracy against the fine-tune step, and beside it, at the last
  step, the clean and the surrogate-attacked query (ADML Figures 2–3).
- ``l_ar_kde.png``: the density of TAFL's L_AR over test episodes, per method (TAFL's figure).
- ``calibration.png``: the calibration's MAML accuracy under PGD against ε (the ε ladder).
- ``convergence.png``: robust accuracy against the attack's iterations, per method.
- ``clean_vs_robust.png``: clean against robust accuracy per method, with their intervals.
- ``adaptive.png``: the table of attacks through the adaptation as grouped bars.

Every legend entry is an artist drawn on the axes (a test checks it).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

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
    """Lay out, write (PNG, 120 dpi; a legend outside the axes included) and close a figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def clip_percent(ax: Any, x: bool = False) -> None:
    """Keep an accuracy axis within 0–100 % (a CI over two episodes can reach far beyond)."""
    lo, hi = ax.get_xlim() if x else ax.get_ylim()
    if lo < -2 or hi > 102:
        (ax.set_xlim if x else ax.set_ylim)(max(lo, -2.0), min(hi, 102.0))


def colors(n: int) -> list[Any]:
    """``n`` distinguishable colours (matplotlib's 10-colour cycle, then tab20 for more lines)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


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
    """Clean query accuracy against the fine-tune step (left), and at the last step the clean and the
    surrogate-attacked query of each method with their intervals (right, when the sweep ran the surrogate)."""
    ok = summary[summary["status"] == "ok"].copy()
    ft = ok[ok["scenario"] == "finetune"]
    if ft.empty or ft["finetune_step"].nunique() < 2:
        return None
    ok["row"] = row_labels(ok)
    ft = ok[(ok["scenario"] == "finetune") & (ok["query"] == "clean")]
    sur = ok[(ok["scenario"] == "surrogate") & (ok["support"] == "clean")]
    sur = sur[sur["eps_str"] == sur.loc[sur["query"] == "adv", "eps_str"].iloc[0]] if (sur["query"] == "adv").any() else sur.iloc[:0]
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if len(sur) else 1, figsize=(10, 4) if len(sur) else (6, 4), squeeze=False)
    ax = axes[0][0]
    names = sorted(ft["row"].unique())
    for name, color in zip(names, colors(len(names))):
        pts = ft[ft["row"] == name].groupby("finetune_step")["acc"].mean().sort_index()
        ax.plot(pts.index, pts.values, marker="o", ms=3, lw=1.1, color=color, label=str(name))
    ax.set_xlabel("fine-tune step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("clean query accuracy (%)")
    ax.set_title("accuracy through the fine-tuning", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    if len(sur):
        ax2 = axes[0][1]
        last = sur[sur["finetune_step"] == sur.groupby("trial_id")["finetune_step"].transform("max")]
        order = sorted(last["row"].unique())
        ys = np.arange(len(order))
        for query, marker, color, dy in (("clean", "o", "tab:blue", -0.12), ("adv", "x", "tab:red", 0.12)):
            pts = last[last["query"] == query].groupby("row")[["acc", "acc_ci95"]].mean().reindex(order)
            has = pts["acc"].notna().to_numpy()
            if has.any():
                ax2.errorbar(pts["acc"].to_numpy()[has], ys[has] + dy, xerr=pts["acc_ci95"].fillna(0).to_numpy()[has],
                             fmt=marker, color=color, ms=5, capsize=2, lw=0.8,
                             label="clean query" if query == "clean" else f"surrogate-FGSM query {last['eps_str'].iloc[0]}")
        ax2.set_yticks(ys, order, fontsize=7)
        ax2.invert_yaxis()
        ax2.set_xlabel("accuracy at the last fine-tune step (%), clean support, ± 95% CI")
        ax2.set_title("surrogate attack on the query (ADML Figs. 2–3)", fontsize=9)
        ax2.grid(alpha=0.3, axis="x")
        ax2.legend(fontsize=7, loc="lower left")
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


def calibration_curve(calibration: pd.DataFrame | None, manifest: dict[str, Any] | None, path: Path) -> Path | None:
    """The ε calibration (docs/protocols.md#epsilon-per-dataset): the grid's MAML under PGD against ε on validation episodes,
    its clean accuracy at ε = 0, the threshold and the chosen ε; beside it, when the surrogate table's ε
    was calibrated too, the surrogate-FGSM drop against ε and its chosen ε."""
    from advmeta.eps import parse_eps

    cal = (manifest or {}).get("calibration") or {}
    if calibration is not None and len(calibration):
        curve = calibration.sort_values("eps")
        eps = curve["eps"].to_numpy(dtype=float) * 255
        acc, ci = curve["acc"].to_numpy(dtype=float), curve["acc_ci95"].to_numpy(dtype=float)
        clean = float(curve["clean_acc"].iloc[0])
        chosen = curve.loc[curve["chosen"].astype(bool), "eps_str"]
        chosen_eps = str(chosen.iloc[0]) if len(chosen) else cal.get("eps")
    elif cal.get("curve"):
        pts = sorted(cal["curve"], key=lambda p: parse_eps(p["eps"]))
        eps = np.array([parse_eps(p["eps"]) * 255 for p in pts])
        acc = np.array([float(p["acc"]) for p in pts])
        ci = np.array([float(p.get("acc_ci95", np.nan)) for p in pts])
        clean, chosen_eps = float(pts[0].get("clean_acc", np.nan)), cal.get("eps")
    else:
        return None
    sur = cal.get("surrogate") or {}
    plt = _plt()
    fig, axes = plt.subplots(1, 2 if sur.get("curve") else 1, figsize=(10, 3.6) if sur.get("curve") else (5.5, 3.6),
                             squeeze=False)
    ax = axes[0][0]
    att = cal.get("attack", {})
    ax.errorbar(eps, acc, yerr=np.nan_to_num(ci), marker="o", capsize=3, lw=1.2,
                label=f"MAML under PGD-{att.get('steps', 20)}, ± 95% CI")
    if np.isfinite(clean):
        ax.plot([0.0], [clean], marker="s", ls="none", color="k", label="clean")
    ax.axhline(float(cal.get("threshold", 40)), color="grey", ls=":", lw=1, label=f"threshold {float(cal.get('threshold', 40)):g} %")
    if chosen_eps:
        ax.axvline(parse_eps(chosen_eps) * 255, color="tab:red", ls="--", lw=1, label=f"chosen ε = {chosen_eps}")
    ax.set_xlabel("ε (×1/255)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"ε calibration: {cal.get('n_episodes', '?')} {cal.get('split', 'val')} episodes", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if sur.get("curve"):
        ax2 = axes[0][1]
        pts = sorted(sur["curve"], key=lambda p: parse_eps(p["eps"]))
        x = np.array([parse_eps(p["eps"]) * 255 for p in pts])
        ax2.errorbar(x, [float(p["drop"]) for p in pts], yerr=[float(p.get("drop_ci95", 0) or 0) for p in pts],
                     marker="o", capsize=3, lw=1.2, color="tab:purple", label="clean − surrogate-FGSM query, ± 95% CI")
        ax2.axhline(float(sur.get("drop", 10)), color="grey", ls=":", lw=1, label=f"drop wanted {float(sur.get('drop', 10)):g} points")
        if sur.get("eps"):
            ax2.axvline(parse_eps(str(sur["eps"])) * 255, color="tab:red", ls="--", lw=1, label=f"chosen ε = {sur['eps']}")
        ax2.set_xlabel("ε (×1/255)")
        ax2.set_ylabel("accuracy drop (points)")
        ax2.set_title("the surrogate table's ε", fontsize=9)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7)
    return _save(fig, path)


_GAP = re.compile(r"PGD-(\d+)\D+?PGD-(\d+)(?:\s*×\s*(\d+)\s*restarts)?")


def convergence(summary: pd.DataFrame, checks: pd.DataFrame | None, path: Path) -> Path | None:
    """Robust accuracy against the attack's iterations, per method.

    With the summary's ``attack_iterations`` (an evaluation that escalates its attacks): each white-box
    attack's accuracy at the iterations it ended with, a ring around the rows that had not converged
    (upper bounds). Otherwise, from the ``converged`` masking check: the table's PGD row at its own
    iterations, and that accuracy minus the check's gap (the stronger PGD's, on the checked episodes).
    """
    ok = summary[(summary["status"] == "ok") & (summary["scenario"] == "whitebox") & (summary["query"] == "adv")].copy()
    if ok.empty:
        return None
    ok["row"] = row_labels(ok)
    plt = _plt()
    if "attack_iterations" in ok and ok["attack_iterations"].notna().any():
        rows = ok[ok["attack_iterations"].notna()]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        names = sorted(rows["row"].unique())
        for name, color in zip(names, colors(len(names))):
            sub = rows[rows["row"] == name].sort_values("attack_iterations")
            ax.errorbar(sub["attack_iterations"].astype(float), sub["acc"].astype(float),
                        yerr=sub["acc_ci95"].astype(float).fillna(0), fmt="o", ms=4, capsize=2, color=color, label=str(name))
        if "converged" in rows:
            bad = rows[rows["converged"].eq(False).fillna(False).astype(bool)]
            if len(bad):
                ax.scatter(bad["attack_iterations"].astype(float), bad["acc"].astype(float), s=110, facecolors="none",
                           edgecolors="tab:red", lw=1.2, label="not converged (an upper bound)")
        ax.set_xscale("log", base=2)
        ax.set_title("white-box attacks at the iterations they ended with (± 95% CI)", fontsize=9)
    else:
        conv = checks[checks["check"] == "converged"] if checks is not None and len(checks) else None
        if conv is None or conv.empty or conv["value"].isna().all():
            return None
        fig, ax = plt.subplots(figsize=(6.5, 4))
        drawn = []
        for r in conv[conv["value"].notna()].itertuples():
            m = _GAP.search(str(r.detail))
            if m is None:
                continue
            base, strong = int(m.group(1)), int(m.group(2))
            pgd = ok[(ok["trial_id"] == r.trial_id) & (ok["attack"] == "pgd") & (ok["eps_str"] == r.eps_str)]
            pgd = pgd[pgd["attack_params"].astype(str).str.contains(f'"steps": {base}[,}}]', regex=True)]
            if pgd.empty:
                continue
            drawn.append((str(pgd["row"].iloc[0]), base, strong, float(pgd["acc"].iloc[0]), float(r.value),
                          float(r.ci95) if r.ci95 is not None and not pd.isna(r.ci95) else 0.0,
                          bool(r.passed) if pd.notna(r.passed) else True))
        if not drawn:
            _plt().close(fig)
            return None
        names = sorted({d[0] for d in drawn})
        palette = dict(zip(names, colors(len(names))))
        for name, base, strong, acc, gap, ci, passed in drawn:
            ax.errorbar([base, strong], [acc, acc - gap], yerr=[0.0, ci], color=palette[name], marker="o", ms=4,
                        capsize=2, lw=1.1, ls="-" if passed else "--", label=name + ("" if passed else " (not converged)"))
        restarts = _GAP.search(str(conv["detail"].iloc[0]))
        ax.set_title(f"PGD against its iterations: the table's PGD row, and minus the gap to PGD-{drawn[0][2]}"
                     + (f" × {restarts.group(3)} restarts" if restarts and restarts.group(3) else "")
                     + f"\n(the masking check's, ± 95% CI, on its {int(conv['n_episodes'].max())} episodes)", fontsize=8)
    ax.set_xlabel("attack iterations")
    ax.set_ylabel("robust accuracy (%)")
    clip_percent(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def clean_vs_robust(summary: pd.DataFrame, path: Path) -> Path | None:
    """Clean against robust white-box accuracy, one point per trial with both intervals (± 95% CI).

    The robust number is of the attack that covers the most trials (the per-query worst case first,
    then AutoAttack, then PGD) at its most common settings and ε, so every point is comparable."""
    wb = summary[(summary["status"] == "ok") & (summary["scenario"] == "whitebox")].copy()
    if wb.empty:
        return None
    wb = wb[wb["finetune_step"] == wb.groupby("trial_id")["finetune_step"].transform("max")]
    wb["row"] = row_labels(wb)
    clean = wb[wb["attack"] == "none"].drop_duplicates("trial_id").set_index("trial_id")
    adv = wb[(wb["attack"] != "none") & (wb["query"] == "adv") & wb["trial_id"].isin(clean.index)]
    if adv.empty or clean.empty:
        return None
    rank = {"worst": 0, "autoattack": 1, "pgd": 2}
    cover = adv.groupby(["attack", "attack_params", "eps_str"])["trial_id"].nunique().reset_index()
    cover["pref"] = cover["attack"].map(rank).fillna(3)
    best = cover.sort_values(["trial_id", "pref"], ascending=[False, True]).iloc[0]
    pick = adv[(adv["attack"] == best["attack"]) & (adv["attack_params"] == best["attack_params"])
               & (adv["eps_str"] == best["eps_str"])].drop_duplicates("trial_id")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    names = sorted(pick["row"].unique())
    palette = dict(zip(names, colors(len(names))))
    seen: set[str] = set()
    for r in pick.itertuples():
        c = clean.loc[r.trial_id]
        ax.errorbar([float(c["acc"])], [float(r.acc)], xerr=[float(c["acc_ci95"]) if pd.notna(c["acc_ci95"]) else 0.0],
                    yerr=[float(r.acc_ci95) if pd.notna(r.acc_ci95) else 0.0], fmt="o", ms=5, capsize=2,
                    color=palette[r.row], label=None if r.row in seen else str(r.row))
        seen.add(str(r.row))
    steps = ""
    try:
        import json

        steps = f"-{json.loads(str(best['attack_params'])).get('steps')}" if json.loads(str(best["attack_params"])).get("steps") else ""
    except (TypeError, ValueError):
        pass
    ax.set_xlabel("clean accuracy (%)")
    ax.set_ylabel(f"robust accuracy: {best['attack']}{steps} at {best['eps_str']} (%)")
    ax.set_title("clean against robust accuracy per trial (± 95% CI)", fontsize=9)
    clip_percent(ax)
    clip_percent(ax, x=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)


def adaptive_chart(mean: pd.DataFrame, ci: pd.DataFrame, title: str, path: Path) -> Path | None:
    """A table as grouped bars: one group per row (method), one bar per column, ± its 95% CI."""
    if mean.empty:
        return None
    plt = _plt()
    rows, cols = [str(i) for i in mean.index], [str(c) for c in mean.columns]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) * max(1, len(cols)) / 3 + 3), 4))
    width = 0.8 / max(1, len(cols))
    x = np.arange(len(rows))
    for j, (col, color) in enumerate(zip(mean.columns, colors(len(cols)))):
        vals = mean[col].to_numpy(dtype=float)
        errs = np.nan_to_num(ci[col].to_numpy(dtype=float))
        if np.isfinite(vals).any():
            ax.bar(x + (j - (len(cols) - 1) / 2) * width, np.nan_to_num(vals), width, yerr=errs, capsize=2,
                   color=color, label=str(col), error_kw={"lw": 0.8})
    ax.set_xticks(x, rows, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(fig, path)
