"""Tables and figures of a sweep's results (no Ray): what ``advmeta report`` writes.

Tables (Markdown and LaTeX) give mean ± 95% CI with the best value of each column marked (within
each block of comparable rows): ADML's support × query table under the surrogate attack, the
white-box table (TAFL's, R-MAML's SA/RA), the L2L table. Figures (PNG): accuracy against ε,
the γ × k heatmap, accuracy against the fine-tune step (ADML Figures 2–3), and the KDE of
TAFL's L_AR per method.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advmeta.report_common import attacked_tables, row_labels
from advmeta.results import load, load_manifest


@dataclass
class Table:
    """One rendered table: ``mean``/``ci`` frames indexed by row labels with column labels."""

    title: str
    mean: pd.DataFrame
    ci: pd.DataFrame
    best: pd.DataFrame
    """Booleans: the best (highest) mean of its column within its block of rows."""


def _steps(params: Any) -> str:
    """``-10`` for a 10-step attack; AutoAttack run with some of its components says which."""
    try:
        settings = json.loads(params)
        steps, parts = settings.get("steps"), settings.get("components")
    except (TypeError, ValueError, AttributeError):
        return ""
    return (f"-{steps}" if steps else "") + (f" ({'+'.join(parts)})" if isinstance(parts, list) else "")


def _pivot(frame: pd.DataFrame, rows: list[str], cols: list[str], title: str, block: list[str]) -> Table:
    mean = frame.pivot_table(index=rows, columns=cols, values="acc", aggfunc="first", sort=False)
    ci = frame.pivot_table(index=rows, columns=cols, values="acc_ci95", aggfunc="first", sort=False)
    ci = ci.reindex(index=mean.index, columns=mean.columns)
    if block:
        grp = mean.groupby(level=block, sort=False)
        best = mean.eq(grp.transform("max")) & mean.notna()
    else:
        best = mean.eq(mean.max()) & mean.notna()
    return Table(title, mean, ci, best)


def _last_step(frame: pd.DataFrame) -> pd.DataFrame:
    last = frame.groupby("trial_id")["finetune_step"].transform("max")
    return frame[frame["finetune_step"] == last]


def _on_episodes_of(rows: pd.DataFrame, like: pd.DataFrame, episodes: pd.DataFrame | None) -> pd.DataFrame:
    """``rows`` with accuracy and CI recomputed over the episodes ``like``'s rows of the same trial
    ran on (from the per-episode table); rows without those episodes are dropped, so a column
    never mixes two episode sets. Without a per-episode table, ``rows`` of the same episode count."""
    if episodes is None or episodes.empty:
        n = rows["trial_id"].map(like.groupby("trial_id")["n_episodes"].max())
        return rows[rows["n_episodes"].eq(n) | rows["n_episodes"].isna() | n.isna()]
    from advmeta.results import SUMMARY_KEY
    from advmeta.stats import mean_ci95

    wanted = episodes.merge(like[["trial_id", "scenario", "attack_params", "eps_str", "finetune_step"]].drop_duplicates(),
                            on=["trial_id", "scenario", "attack_params", "eps_str", "finetune_step"])
    index = wanted.groupby("trial_id")["episode_index"].agg(lambda s: frozenset(s.astype(int)))
    key = [k for k in SUMMARY_KEY if k in episodes.columns]
    keep = []
    for i, row in rows.iterrows():
        eps_of = index.get(row["trial_id"])
        if eps_of is None:
            continue
        mine = episodes
        for k in key:
            mine = mine[mine[k] == row[k]]
        accs = mine.loc[mine["episode_index"].astype(int).isin(eps_of), "acc"].to_numpy(dtype=float)
        if len(accs) == len(eps_of):
            keep.append((i, *mean_ci95(accs), len(accs)))
    out = rows.loc[[k[0] for k in keep]].copy()
    out["acc"], out["acc_ci95"], out["n_episodes"] = ([k[j] for k in keep] for j in (1, 2, 3))
    return out


def tables(summary: pd.DataFrame, episodes: pd.DataFrame | None = None) -> list[Table]:
    """The report's tables from a summary frame (rows of failed trials are left out); with the
    per-episode table, the adaptive table's columns are recomputed on one set of episodes."""
    ok = summary[summary["status"] == "ok"].copy()
    if ok.empty:
        return []
    ok["row"] = row_labels(ok)
    out: list[Table] = []
    sur = _last_step(ok[ok["scenario"] == "surrogate"])
    if not sur.empty:
        sur = sur.assign(shots=sur["k_shot"].astype(str) + "-shot", row=row_labels(sur, shots=False),
                         col=sur["eps_str"] + " " + sur["query"] + " query")
        out.append(_pivot(sur, ["shots", "support", "row"], ["col"],
                          "Surrogate FGSM in support × query (ADML Tables 1–2)", ["shots", "support"]))
    wb = ok[ok["scenario"] == "whitebox"]
    if not wb.empty:
        wb = _last_step(wb)
        wb = wb.assign(row=row_labels(wb), col=np.where(wb["attack"] == "none", "clean",
                                    wb["attack"] + wb["attack_params"].map(_steps) + " " + wb["eps_str"]))
        out.append(_pivot(wb, ["row"], ["col"], "White-box attacks on the query (TAFL table, R-MAML SA/RA)", []))
    ada = _last_step(ok[ok["scenario"].isin(["support", "support+query"])])
    if not ada.empty:
        # Beside the query-only attacks of the same trials: what attacking the support adds. Every
        # column over the same episodes (those the support attacks ran on), so a row is paired.
        steps = ada["attack_params"].map(_steps)
        base = _last_step(ok[(ok["scenario"] == "whitebox") & ok["trial_id"].isin(ada["trial_id"])])
        base = base[(base["attack"] == "none") | (base["attack"] == "autoattack")
                    | ((base["attack"] == "pgd") & base["attack_params"].map(_steps).isin(set(steps)))]
        base = _on_episodes_of(base, ada, episodes)
        both = pd.concat([base, ada], ignore_index=True)
        label = np.where(both["attack"] == "none", "clean", np.where(
            both["scenario"] == "whitebox", "query " + both["attack"] + both["attack_params"].map(_steps),
            both["scenario"].astype(str) + both["attack_params"].map(_steps)))
        both = both.assign(row=row_labels(both), col=pd.Series(label, index=both.index).str.cat(
            np.where(both["attack"] == "none", "", both["eps_str"]), sep=" ").str.strip())
        n = sorted({int(v) for v in ada["n_episodes"].dropna()})
        out.append(_pivot(both, ["row"], ["col"], "Attacks through the adaptation: on the query, on the support "
                          "(clean query, through the fine-tuning), on both"
                          + (f" — every column on the same {'/'.join(map(str, n))} episodes" if n else ""), []))
    l2l = ok[ok["scenario"] == "l2l"]
    if not l2l.empty:
        l2l = l2l.assign(row=row_labels(l2l), col=np.where(l2l["attack"] == "none", "clean", l2l["attack"] + " " + l2l["eps_str"]))
        l2l = l2l[~l2l["attack_params"].astype(str).str.contains('"curve"')]
        out.append(_pivot(l2l, ["row"], ["col"], "L2L: accuracy under attack", []))
    return out


def _cell(m: float, c: float, best: bool, latex: bool) -> str:
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "–"
    ci = "" if c is None or (isinstance(c, float) and math.isnan(c)) else c
    if latex:
        num = f"\\textbf{{{m:.2f}}}" if best else f"{m:.2f}"
        return num + (f" $\\pm$ {ci:.2f}" if ci != "" else "")
    text = f"{m:.2f}" + (f" ± {ci:.2f}" if ci != "" else "")
    return f"**{text}**" if best else text


def _index_text(key: Any) -> list[str]:
    return [str(k) for k in key] if isinstance(key, tuple) else [str(key)]


def to_markdown(table: Table) -> str:
    """The table in GitHub Markdown (best of each column in bold)."""
    names = [str(n) for n in table.mean.index.names]
    cols = [str(c if not isinstance(c, tuple) else " ".join(map(str, c))) for c in table.mean.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(names + cols) + " |",
             "|" + "---|" * (len(names) + len(cols))]
    for key in table.mean.index:
        cells = [_cell(table.mean.at[key, c], table.ci.at[key, c], bool(table.best.at[key, c]), False)
                 for c in table.mean.columns]
        lines.append("| " + " | ".join(_index_text(key) + cells) + " |")
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    return s.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``tabular`` (booktabs rules; best of each column in bold)."""
    names = [str(n) for n in table.mean.index.names]
    cols = [str(c if not isinstance(c, tuple) else " ".join(map(str, c))) for c in table.mean.columns]
    lines = [f"% {table.title}", "\\begin{tabular}{" + "l" * len(names) + "c" * len(cols) + "}", "\\toprule",
             " & ".join(_tex(x) for x in names + cols) + " \\\\", "\\midrule"]
    for key in table.mean.index:
        cells = [_cell(table.mean.at[key, c], table.ci.at[key, c], bool(table.best.at[key, c]), True)
                 for c in table.mean.columns]
        lines.append(" & ".join([_tex(x) for x in _index_text(key)] + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``tables.tex`` and ``figures/*.png`` for the sweep in ``folder``.

    Returns:
        ``{"markdown": path, "latex": path, "figures": [paths], "tables": n}``.
    """
    from advmeta.atomic import write_text_atomic
    from advmeta.claims import evaluate_claims
    from advmeta.claims_io import claims_markdown, write_claims
    from advmeta.report_curves import curve_section, load_curves, overview_lines
    from advmeta.report_figures import figures
    from advmeta.report_html import extend

    summary, episodes = load(folder)
    curves = load_curves(folder)
    manifest = load_manifest(folder)
    out_dir = Path(out) if out is not None else Path(folder) / "report"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from advmeta.errors import ConfigError

        raise ConfigError(f"report folder {out_dir}: cannot create it ({err.strerror or err}); choose another --out") from None
    tabs = tables(summary, episodes)
    failed = summary[summary["status"] != "ok"]
    md = [f"# Results of `{Path(str(folder)).name}`", "",
          f"{len(set(summary['trial_id'].astype(str)) | set(curves['trial_id'].astype(str)))} trials, "
          f"{len(summary)} summary rows" + (f", {len(curves)} learning-curve rows" if len(curves) else "")
          + ("; accuracy in % as mean ± 95% CI over test episodes (Student t: t·s/√n); best of each column in bold."
             if len(summary) else "."), ""]
    md += smoke_banner(manifest)
    md += eps_section(manifest)
    checks = load_checks(folder)
    claims = evaluate_claims(summary, episodes, manifest, curves=curves, checks=checks)
    claim_paths = write_claims(claims, out_dir)
    md += [claims_markdown(claims), *seeds_note(claims, manifest),
           f"(The claims are also in `{Path(claim_paths['markdown']).name}` and "
           f"`{Path(claim_paths['parquet']).name}`.)", ""] + (["## Tables", ""] if tabs else [])
    for t in tabs:
        md.append(to_markdown(t))
    if len(failed):
        md += ["### Trials that did not finish", "", "| trial | method | status | error |", "|---|---|---|---|"]
        md += [f"| {r.trial_id} | {r.method} | {r.status} | {str(r.error)[:160]} |"
               for r in failed.drop_duplicates("trial_id").itertuples()]
        md.append("")
    md += masking_section(checks, trial_labels(manifest, summary))
    md += time_section(summary, checks, manifest)
    figs = figures(summary, episodes, out_dir / "figures")
    md += [f"![{p.stem}](figures/{p.name})" for p in figs]
    curve_md, curve_figs = curve_section(curves, out_dir)
    md += curve_md
    figs = figs + curve_figs
    md, figs = extend(folder, out_dir, md, figs, summary=summary, episodes=episodes, manifest=manifest, tables=tabs,
                      claims=claims, checks=checks, curves=curves)  # more figures, and report/index.html
    write_text_atomic(out_dir / "report.md", "\n".join(md) + "\n")
    write_text_atomic(out_dir / "overview.md", overview_markdown(summary, claims, manifest, checks)
                      + "\n".join(overview_lines(curves)) + ("\n" if len(curves) else ""))
    write_text_atomic(out_dir / "tables.tex", "\n".join(to_latex(t) for t in tabs))
    return {"markdown": out_dir / "report.md", "latex": out_dir / "tables.tex", "figures": figs, "tables": len(tabs),
            "overview": out_dir / "overview.md",
            "claims": claim_paths["markdown"], "claims_parquet": claim_paths["parquet"],
            "verdicts": claims["verdict"].value_counts().to_dict() if len(claims) else {},
            "masking_suspected": sorted(suspected_trials(checks)),
            "flags": flag_lines(checks, trial_labels(manifest, summary), summary)}


def time_section(summary: pd.DataFrame, checks: pd.DataFrame, manifest: dict[str, Any] | None) -> list[str]:
    """Where a sweep's time went: the calibration, each trial's training, each evaluation scenario and
    attack (escalation included), the checks and the claims' blocks — CPU-seconds of the trials'
    own processes (trials run side by side, so they add up to more than the wall time)."""
    ok = summary[summary["status"] == "ok"] if len(summary) else summary
    if ok.empty:
        return []
    manifest = manifest or {}
    trials = ok.drop_duplicates("trial_id")
    train = float(pd.to_numeric(trials["train_seconds"], errors="coerce").fillna(0).sum())
    rows = ok[ok["attack"].astype(str) != "worst"]  # a worst-case row's time is its attacks'
    ev = rows.assign(part=rows["scenario"].astype(str) + " " + rows["attack"].astype(str)).groupby("part")[
        "eval_seconds"].sum().sort_values(ascending=False)
    chk = checks.groupby("check")["seconds"].sum() if len(checks) else pd.Series(dtype=float)
    escalated = "converged" in ok and ok["converged"].notna().any()
    if escalated:  # the converged check's seconds are its attacks' escalation, counted with them
        chk = chk.drop("converged", errors="ignore")
    calib = manifest.get("calibration") or {}
    cal = float(calib.get("wall_seconds") or calib.get("seconds") or 0.0)
    blocks = float((manifest.get("sequential") or {}).get("seconds") or 0.0)
    total = train + float(ev.sum()) + float(chk.sum()) + blocks
    if not total > 0:  # no times recorded (rows written by hand, or by a run without clocks)
        return []
    wall = manifest.get("wall_seconds")
    lines = ["## Where the time went", "",
             "CPU-seconds in the trials' processes (trials run side by side: they add up to more than the wall time"
             + (f", {float(wall):.0f} s here" if wall is not None else "") + "); "
             + ("escalation to convergence is in each attack's evaluation (the `converged` check reads it)."
                if escalated else "this run predates escalation to convergence (its rows have no `converged`)."),
             "", "| part | seconds | share |", "|---|---|---|"]
    if cal:
        what = ("wall, before the trials" if calib.get("wall_seconds")
                else "wall: its MAML and the ladder; the surrogate trained beside it")
        lines.append(f"| ε calibration ({what}) | {cal:.0f} | – |")
    lines.append(f"| training, {len(trials)} trials | {train:.0f} | {100 * train / total:.0f} % |")
    lines += [f"| evaluation: {k} | {v:.0f} | {100 * v / total:.0f} % |" for k, v in ev.items() if v >= 0.5]
    lines += [f"| checks: {k} | {v:.0f} | {100 * v / total:.0f} % |" for k, v in chk.sort_values(ascending=False).items()
              if v >= 0.5]
    if blocks:
        lines.append(f"| claims' further episodes ({(manifest.get('sequential') or {}).get('blocks')} blocks) | "
                     f"{blocks:.0f} | {100 * blocks / total:.0f} % |")
    per = ok.groupby("trial_id").agg(method=("method", "first"), train=("train_seconds", "first"))
    per["eval"] = rows.groupby("trial_id")["eval_seconds"].sum()
    per = per.sort_values("train", ascending=False)
    lines += ["", "| trial | training s | evaluation s |", "|---|---|---|"]
    lines += [f"| {r.method} ({tid}) | {float(r.train):.0f} | {float(r.eval):.0f} |" for tid, r in per.iterrows()]
    return lines + [""]


def smoke_banner(manifest: dict[str, Any] | None) -> list[str]:
    """The first lines of a smoke run's report: it checks the pipeline, and nothing in it is judged."""
    if (manifest or {}).get("budget") != "smoke":
        return []
    trials = (manifest or {}).get("trials") or []
    its = [int(t.get("train", {}).get("iterations") or t.get("train", {}).get("epochs") or 0) for t in trials]
    eps = [int(e.get("episodes") or 0) for t in trials for e in t.get("evals") or []]
    facts = (f"Its trials train at most {max(its)} iterations and are tested on at most {max(eps)} episodes."
             if its and eps else "")
    return [f"> **Smoke budget — a pipeline check, not a result.** {facts} Its numbers are noise: no "
            "claim holds or fails here (`--budget quick` for numbers, `--budget paper` for the papers' protocol).", ""]


def seeds_note(claims: pd.DataFrame, manifest: dict[str, Any] | None) -> list[str]:
    """What the claims' intervals cover: a sentence when every claim rests on one training run."""
    acc = claims[claims["ci_method"].astype(str).ne("t over seeds")] if len(claims) else claims
    if acc.empty or (pd.to_numeric(acc["n_seeds"], errors="coerce").fillna(1) > 1).any():
        return []
    budget = (manifest or {}).get("budget")
    return [f"Each interval above covers the test episodes of **one training run** per method"
            + (f" (the {budget} budget trains one seed per setting)" if budget else "")
            + ": the variation between training runs is not in it. `--budget paper` trains 3 seeds, and its claims "
              "take their interval over the seeds.", ""]


def load_checks(folder: str | Path) -> pd.DataFrame:
    """The sweep's ``checks.parquet`` (an empty, typed frame when it has none)."""
    from advmeta.results import read_table

    return read_table(folder, "checks")


def suspected_trials(checks: pd.DataFrame) -> set[str]:
    """Trials with at least one failed check (either diagnosis)."""
    if checks.empty:
        return set()
    return set(checks.loc[checks["passed"].eq(False).fillna(False).astype(bool), "trial_id"].astype(str))


def diagnoses(checks: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """``{diagnosis: {trial_id: [failed checks]}}`` — ``not converged`` apart from ``masking
    suspected`` (a checks table written before the two were told apart says which by the check)."""
    from advmeta.checks import DIAGNOSES

    out: dict[str, dict[str, list[str]]] = {}
    if checks.empty:
        return out
    failed = checks[checks["passed"].eq(False).fillna(False).astype(bool)]
    for r in failed.itertuples():
        given = getattr(r, "diagnosis", None)
        kind = (str(given) if given is not None and not pd.isna(given) and str(given) else
                DIAGNOSES.get(str(r.check), "masking suspected"))
        out.setdefault(kind, {}).setdefault(str(r.trial_id), []).append(str(r.check))
    return out


def trial_labels(manifest: dict[str, Any] | None, summary: pd.DataFrame | None = None) -> dict[str, str]:
    """A readable name per trial: its method and the settings that tell it apart from the sweep's
    other trials of that method (shot, hyper-parameters, seed), e.g. ``tafl (γ=2, k=1)``."""
    trials = list((manifest or {}).get("trials") or [])
    by_method: dict[str, list[dict[str, Any]]] = {}
    for tr in trials:
        by_method.setdefault(str(tr.get("method")), []).append(tr)
    out: dict[str, str] = {}
    for method, group in by_method.items():
        def settings(tr: dict[str, Any]) -> dict[str, Any]:
            train = tr.get("train") or {}
            return {**{f"{k}-shot" if k == "k_shot" else k: v for k, v in train.items() if k in ("k_shot", "seed")},
                    **dict(tr.get("hparams") or {})}

        varying = [k for k in dict.fromkeys(k for tr in group for k in settings(tr))
                   if len({json.dumps(settings(tr).get(k), sort_keys=True, default=str) for tr in group}) > 1]
        for tr in group:
            st = settings(tr)
            parts = [f"{st[k]}-shot" if k == "k_shot-shot" else f"{k}={st.get(k)}" for k in varying]
            out[str(tr["trial_id"])] = method + (f" ({', '.join(parts)})" if parts else "")
    if summary is not None and len(summary):
        for tid, method in summary.drop_duplicates("trial_id")[["trial_id", "method"]].itertuples(index=False):
            out.setdefault(str(tid), str(method))
    return out


def flag_lines(checks: pd.DataFrame, labels: dict[str, str], summary: pd.DataFrame | None = None) -> list[str]:
    """One line per diagnosis naming each flagged trial by method and settings (the sweep's last
    lines): ``not converged`` from the rows whose attack still gained at the cap (the summary's
    ``converged``; from the checks for results without it), ``masking suspected`` from the checks."""
    stuck: dict[str, list[str]] = {}
    if summary is not None and "converged" in summary and len(summary):
        rows = summary[summary["converged"].eq(False).fillna(False).astype(bool)]
        for r in rows.itertuples():
            its = "" if pd.isna(r.attack_iterations) else f" at {int(r.attack_iterations)} iterations"
            where = "" if r.scenario == "whitebox" else f" ({r.scenario})"
            stuck.setdefault(str(r.trial_id), []).append(f"{r.attack}@{r.eps_str}{where}{its}")
    found = diagnoses(checks)
    for tid, names in found.pop("not converged", {}).items():
        stuck.setdefault(tid, names)
    lines = []
    if stuck:
        lines.append(f"not converged in {len(stuck)} trial(s): "
                     + "; ".join(f"{labels.get(t, t)} ({', '.join(dict.fromkeys(a))})" for t, a in stuck.items())
                     + " — still gaining at the cap: the claims resting on them are unreliable; remedy: more "
                       "iterations (a larger converge_cap)")
    for kind, trials in sorted(found.items()):
        eps = {str(t): str(e) for t, e in checks[["trial_id", "eps_str"]].drop_duplicates("trial_id").itertuples(index=False)}
        names = [f"{labels.get(t, t)} at {eps.get(t, '?')} ({', '.join(c)})" for t, c in trials.items()]
        lines.append(f"{kind} in {len(trials)} trial(s): {'; '.join(names)} — the claims resting on their white-box "
                     "rows are unreliable; remedy: another attack (black box, transfer, adaptive)")
    return lines


def masking_section(checks: pd.DataFrame, labels: dict[str, str] | None = None) -> list[str]:
    """Markdown lines: per trial, its checks and its flag (``not converged`` / ``masking suspected``)."""
    if checks.empty:
        return []
    labels = labels or {}
    names = list(dict.fromkeys(checks["check"].astype(str)))
    found = diagnoses(checks)
    lines = ["## Evaluation checks: convergence and gradient masking", "",
             "With every white-box evaluation, at its table's first ε (`checks.parquet`; advmeta.checks). `converged` "
             "reads every evaluated episode: every gradient attack was escalated (twice the iterations from a new "
             "random start) until a round took less than the tolerance, within the cap; the other checks run on the "
             "first episodes of the bank. A cell is the checked value and ✓ / ✗ against its threshold (– : not run). "
             "Two diagnoses, two remedies: **not converged** — the attack still gained at the cap: more iterations; "
             "**masking suspected** — any other ✗: another attack. A claim resting on a flagged row is unreliable.", "",
             "| trial | method | ε | " + " | ".join(names) + " | flag |", "|---" * (len(names) + 4) + "|"]
    for tid, sub in checks.groupby("trial_id", sort=False):
        by = {str(r.check): r for r in sub.itertuples()}
        cells = []
        for n in names:
            r = by.get(n)
            if r is None or pd.isna(r.passed):
                cells.append("–")
                continue
            v = float(r.value)
            text = f"{v:.1e}" if n == "deterministic" else f"{v:.1f}"
            if r.ci95 is not None and not pd.isna(r.ci95):
                text += f" ± {float(r.ci95):.1f}"
            cells.append(f"{text} {'✓' if bool(r.passed) else '✗'}")
        flags = [f"**{kind}** ({', '.join(trials[str(tid)])})" for kind, trials in sorted(found.items())
                 if str(tid) in trials]
        first = sub.iloc[0]
        lines.append(f"| {tid} | {labels.get(str(tid), first['method'])} | {first['eps_str']} | " + " | ".join(cells)
                     + f" | {'; '.join(flags) or 'none'} |")
    thresholds = checks.drop_duplicates("check").set_index("check")
    lines += ["", "Thresholds: " + "; ".join(f"{n} {float(thresholds.loc[n, 'threshold']):g}" for n in names)
              + ". What each value measures (first trial's wording):", ""]
    lines += [f"- `{n}`: {thresholds.loc[n, 'detail']}" for n in names]
    conv = checks[checks["check"].astype(str).eq("converged") & checks["passed"].notna()]
    if len(conv):
        lines += ["", "How far each trial's attacks were escalated (`converged`):", ""]
        lines += [f"- {labels.get(str(r.trial_id), r.method)}: {r.detail}" for r in conv.itertuples()]
    return lines + [""]


_OVERVIEW_COLUMNS = (
    ("clean", "finetune", "clean", "clean", "none"), ("AutoAttack", "whitebox", "clean", "adv", "autoattack"),
    ("worst wb", "whitebox", "clean", "adv", "worst"), ("PGD wb", "whitebox", "clean", "adv", "pgd"),
    ("support", "support", "adv", "clean", "pgd"), ("support+query", "support+query", "adv", "adv", "pgd"),
    ("sur clean/clean", "surrogate", "clean", "clean", "none"),
    ("sur clean/adv", "surrogate", "clean", "adv", "transfer"), ("sur adv/adv", "surrogate", "adv", "adv", "transfer"),
    ("l2l clean", "l2l", None, None, "none"), ("l2l pgd-20", "l2l", None, None, "pgd-20"))


def overview_markdown(summary: pd.DataFrame, claims: pd.DataFrame, manifest: dict[str, Any] | None,
                      checks: pd.DataFrame | None = None) -> str:
    """A page a README can show as is: the verdicts, each table's ε, and accuracy per method.

    The accuracy table has one row per trial (method × shot) and one column per kind of row
    (clean after fine-tuning; AutoAttack, the per-query worst case and PGD, white-box, at the
    table's ε; PGD through the fine-tuning on the support, and on support and query; ADML's surrogate
    table, support/query; the L2L table), at the last fine-tune step.
    """
    from advmeta.claims_io import format_value

    lines = ["| paper | claim | value ± 95% CI | test | verdict | decided by |", "|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        val = format_value(r)
        group = f" ({r.group})" if r.group else ""
        decided = getattr(r, "decided_by", None)
        decided = "" if decided is None or pd.isna(decided) else str(decided)
        lines.append(f"| {r.paper} | {r.claim}{group} | {val} | {r.op} {r.threshold:g} | **{r.verdict}** | {decided} |")
    if manifest:
        te = attacked_tables(manifest)
        lines += [] if not te else ["", "ε of each table: " + "; ".join(f"{k} {', '.join(v.get('eps', [])) or '(grid)'} ({v.get('source')})"
                                                        for k, v in te.items()) + "."]
        if manifest.get("wall_seconds") is not None:
            lines += [] if te else [""]
            lines.append(f"Wall time {float(manifest['wall_seconds']) / 60:.1f} min on {manifest.get('cpus', '?')} CPUs "
                         f"(load average {', '.join(f'{x:.2f}' for x in manifest.get('load_average', []))}).")
    ok = _last_step(summary[summary["status"] == "ok"]) if len(summary) else summary
    checked = set() if checks is None or checks.empty else set(checks["trial_id"].astype(str))
    suspected = suspected_trials(checks) if checks is not None else set()
    if len(ok):
        head = [c[0] for c in _OVERVIEW_COLUMNS]
        lines += ["", "| method | k_shot | " + " | ".join(head) + " | train s | masking |", "|---" * (len(head) + 4) + "|"]
        for tid, sub in ok.groupby("trial_id", sort=False):
            cells = []
            for _, scen, sup, qry, att in _OVERVIEW_COLUMNS:
                m = (sub["scenario"] == scen) & (sub["attack"] == att)
                if sup is not None:
                    m &= (sub["support"] == sup) & (sub["query"] == qry)
                hit = sub[m]
                cells.append("–" if hit.empty else f"{hit['acc'].iloc[0]:.1f} ± {hit['acc_ci95'].iloc[0]:.1f}"
                             + _effort(hit.iloc[0]))
            first = sub.iloc[0]
            shot = "" if pd.isna(first["k_shot"]) else str(int(first["k_shot"]))
            flag = "suspected" if tid in suspected else ("none" if tid in checked else "–")
            lines.append(f"| {first['method']} | {shot} | " + " | ".join(cells)
                         + f" | {float(first['train_seconds']):.0f} | {flag} |")
        if "converged" in ok.columns:
            lines += ["", "[N it]: the attack's iterations behind the number, escalated until doubling them (with a restart) "
                          "changed it by less than the tolerance; *not converged*: still gaining at the cap (an upper "
                          "bound); *not checked*: not escalated (no claim reads it at this budget)."]
    return "\n".join(lines) + "\n"


def _effort(row: pd.Series) -> str:
    """`` [40 it]`` after an attacked cell: its iterations and whether escalation converged."""
    its = row.get("attack_iterations")
    if its is None or pd.isna(its):
        return ""
    conv = row.get("converged")
    state = ", not checked" if conv is None or pd.isna(conv) else ("" if bool(conv) else ", not converged")
    return f" [{int(its)} it{state}]"


_SOURCE_WORDS = {"paper": "the papers' ε on this dataset", "calibrated": "calibrated on the grid's MAML",
                 "user": "given with --eps", "grid": "the grid file's own values"}


def eps_section(manifest: dict[str, Any] | None) -> list[str]:
    """Markdown lines: each table's ε and where it came from, and the calibration curve."""
    if not manifest:
        return []
    wall = ([f"Wall time of the sweep's last run: {float(manifest['wall_seconds']) / 60:.1f} min "
             f"on {manifest.get('cpus', '?')} CPUs."] if manifest.get("wall_seconds") is not None else [])
    table_eps = attacked_tables(manifest)
    if not table_eps:  # a sweep that attacks nothing (GAIL's): its wall time only
        return wall + [""] if wall else []
    lines = ["## ε of each table", "", "| table | ε | source |", "|---|---|---|"]
    for name, te in table_eps.items():
        eps = ", ".join(te.get("eps", [])) or "(the grid's own)"
        lines.append(f"| {name} | {eps} | {te.get('source', '')} ({_SOURCE_WORDS.get(te.get('source', ''), '')}) |")
    cal = manifest.get("calibration")
    if cal:
        att = cal.get("attack", {})
        lines += ["", f"Calibration (docs/protocols.md#epsilon-per-dataset): the smallest ε of the ladder at which the grid's own MAML "
                      f"5-way {manifest.get('dataset', '')} model falls below {cal.get('threshold', 40):g} % under "
                      f"PGD-{att.get('steps', 20)} (step max(2/255, ε/4)) on {cal.get('n_episodes')} "
                      f"{cal.get('split', 'val')} episodes ({att.get('search', 'bisect')} search over the ladder); "
                      f"chosen: **{cal.get('eps')}**.", "",
                  "| ε | MAML PGD accuracy (%) | clean (%) |", "|---|---|---|"]
        lines += [f"| {p['eps']} | {p['acc']:.1f} ± {p['acc_ci95']:.1f} | {p['clean_acc']:.1f} |"
                  for p in cal.get("curve", [])]
        sur = cal.get("surrogate")
        if sur:
            how = "reached" if sur.get("reached") else "not reached at any rung: the top rung is used"
            lines += ["", f"The surrogate table's ε: the first of ε*·(1, 1.25, 1.5, 1.75, 2) at which the same MAML "
                          f"loses ≥ {float(sur.get('drop', 10)):g} points (clean query minus the surrogate's FGSM "
                          f"query, clean support, paired over {sur.get('n_episodes')} {sur.get('split', 'val')} "
                          f"episodes); chosen: **{sur.get('eps')}** ({how}). ADML and MAML-AD train at it.", "",
                      "| ε | MAML clean query (%) | surrogate-FGSM query (%) | drop (points) |", "|---|---|---|---|"]
            lines += [f"| {p['eps']} | {p['clean_acc']:.1f} | {p['adv_acc']:.1f} | {p['drop']:.1f} ± {p['drop_ci95']:.1f} |"
                      for p in sur.get("curve", [])]
    dropped = manifest.get("dropped_shots")
    if dropped:
        lines += ["", f"Left out at the {manifest.get('budget', '')} budget: k-shot {', '.join(map(str, dropped))} "
                      "(`--budget paper` runs every shot of the grid)."]
    if wall:
        lines += ["", *wall]
    return lines + [""]
