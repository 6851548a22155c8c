"""The papers' claims, checked against a sweep's results (pandas only: no Ray, no torch).

Claims are data, one TOML file per paper in ``advmeta/plan/claims/`` (shipped inside ``advmeta.tune``)::

    paper = "TAFL"
    title = "Hou et al., ICPR 2020: Task-based Adversarial Focal Loss"
    [metrics.robust]            # a named row selector, called as robust(<method>) in a value
    scenario = "whitebox"       # keys: summary columns (query, attack, k_shot, hp_*, …), steps (from
    attack = "worst"            # attack_params), eps = "table" | "clean" (attack none) | "8/255";
    eps = "table"               # quantity = "acc" (default), a column, or "col / col"
    [metrics.drop]              # or a weighted sum of selectors
    terms = [{ weight = 1, query = "clean", attack = "none" }, { weight = -1, query = "adv", attack = "transfer" }]
    [[claims]]
    id = "tafl-ge-aq"
    claim = "TAFL's robust accuracy is at least AQ's"
    table = "tafl"              # or a list: the first one the manifest knows (table_eps or trials' tables)
    value = "robust(tafl) - robust(aq)"   # ± c*metric(method) …, or A / B: a ratio, no CI
    op = ">="                   # >=, >, <=, <
    threshold = 0
    # optional: for_each = "k_shot" (a verdict per value), where = {…} and where_by_table = {t = {…}}
    # (added to every selector), kind = "peak" with along = "hp_gamma", note = "…" (shown when untestable)

A metric with ``source = "curves"`` reads the ``curves`` table (learning curves, one row per trial
and iteration) instead: its ``quantity`` is a per-trial statistic of the normalised reward
(:data:`CURVE_QUANTITIES`), a selector's value is its mean over the matching trials (the seeds)
with a Student-t 95 % CI, and a sum's CI is √Σw²ci² (the methods' seeds are independent runs).

``eps = "table"`` is the table's primary ε from the manifest's ``table_eps``, else (said in the
detail) the largest attacked ε of the matching rows. Rows used: status ``ok``, each trial's last
fine-tune step (whitebox, surrogate, finetune), no curve rows, and only the manifest's trials of
the table when it lists them. A selector matching several trials is ambiguous, except in a peak
claim (best interior cell − larger end cell; cells average their trials). A sum's CI is paired
(1.96·sd/√n of per-episode sums) when every term's episodes share one index set, else √Σw²ci².
"""

from __future__ import annotations

import functools
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from advmeta.eps import format_eps, parse_eps
from advmeta.errors import ConfigError
from advmeta.results import CURVE_COLUMNS, SUMMARY_COLUMNS
from advmeta.stats import SequentialRule, mean_ci95, verdict

OPS = (">=", ">", "<=", "<")
COLUMNS = ["paper", "title", "claim_id", "claim", "table", "group", "k_shot", "rows", "value", "ci95",
           "ci_method", "op", "threshold", "verdict", "reliable", "decided_by", "n_episodes", "n_seeds",
           "attack_iterations", "trial_ids", "row_keys", "detail"]
VERDICTS = ("holds", "fails", "inconclusive", "unreliable")
"""``unreliable``: the claim rests on a row the tool itself flags — an attack that had not converged
at its cap, or a trial whose masking checks failed at that ε (the detail names which); whatever
its interval says, it is neither held nor failed."""
_WHITEBOX = ("whitebox", "support", "support+query", "l2l")  # scenarios whose rows are gradient attacks
KNOWN = frozenset(c.name for c in SUMMARY_COLUMNS) | {"eps", "steps"}
CURVE_KNOWN = frozenset(c.name for c in CURVE_COLUMNS)
CURVE_QUANTITIES = ("late_drop", "final", "peak")
"""Per-trial statistics of a learning curve, on the normalised reward r̃ = (reward − random) /
(expert − random) (0: the random policy, 1: the expert): ``final`` the mean r̃ of the last tenth
of the iterations; ``peak`` the maximum of r̃ smoothed by a trailing mean over a twentieth of them;
``late_drop`` = peak − final, how far the run fell from its best by the end."""
_KEYS = {"id", "claim", "value", "op", "threshold", "table", "for_each", "where", "where_by_table", "kind", "along",
         "note"}
_CALL = re.compile(r"\s*([+-]?)\s*(?:(\d+\.?\d*|\.\d+)\s*\*\s*)?([A-Za-z_]\w*)\(\s*([\w.-]+)\s*\)\s*")
_EP_KEY = ["scenario", "support", "query", "attack", "eps_str", "finetune_step"]


@dataclass(frozen=True)
class Term:
    """``weight`` × ``quantity`` of the one row that ``where`` selects (of the trials it selects,
    averaged, when ``source`` is ``curves``)."""

    weight: float
    where: dict[str, Any]
    quantity: str = "acc"
    source: str = "summary"


def claims_dir() -> Path:
    """The shipped claim files' folder (``advmeta/plan/claims``, beside the grids they are about)."""
    return Path(__file__).resolve().parent / "plan" / "claims"


def _check(keys: Sequence[Any], origin: str, known: frozenset[str] = KNOWN, what: str = "columns") -> None:
    if bad := [k for k in keys if k not in known and not re.fullmatch(r"hp_\w+", str(k))]:
        raise ConfigError(f"{origin}: unknown {what} {bad}")


def _linear(text: str, metrics: Mapping[str, Any], origin: str) -> list[Term]:
    terms: list[Term] = []
    pos = 0
    while pos < len(text) or not terms:
        m = _CALL.match(text, pos)
        if m is None or (terms and not m.group(1)):
            raise ConfigError(f"{origin}: cannot read value {text!r} at {text[pos:]!r}")
        if m.group(3) not in metrics:
            raise ConfigError(f"{origin}: unknown metric {m.group(3)!r} (define it under [metrics])")
        metric = dict(metrics[m.group(3)])
        source = str(metric.pop("source", "summary"))
        quantity, coef = str(metric.pop("quantity", "acc")), float(m.group(2) or 1) * (-1 if m.group(1) == "-" else 1)
        for sub in metric.pop("terms", [{}]):
            sub = dict(sub)
            terms.append(Term(coef * float(sub.pop("weight", 1.0)), {**metric, **sub, "method": m.group(4)}, quantity,
                              source))
        pos = m.end()
    return terms


def load_claims(paths: Sequence[str | Path] | None = None) -> list[dict[str, Any]]:
    """Parse and check claim files (default: the shipped ``advmeta/plan/claims/*.toml``, by file name).

    Returns:
        One dict per claim: its keys plus ``paper``, ``title``, ``tables`` (a list), ``terms`` and
        ``den`` (a ratio's denominator terms, else None).

    Raises:
        ConfigError: bad TOML, a missing or unknown key, an unknown op, metric or column.
    """
    out: list[dict[str, Any]] = []
    for path in map(Path, paths if paths is not None else sorted(claims_dir().glob("*.toml"))):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from None
        metrics = dict(data.get("metrics", {}))
        for name, met in metrics.items():
            if met.get("source", "summary") == "curves":
                if met.get("quantity") not in CURVE_QUANTITIES or "terms" in met:
                    raise ConfigError(f"{path.name} metric {name}: a curves metric needs quantity one of "
                                      f"{', '.join(CURVE_QUANTITIES)} (and no terms)")
                _check([k for k in met if k not in ("source", "quantity")], f"{path.name} metric {name}",
                       CURVE_KNOWN, "curves columns")
                continue
            if met.get("source", "summary") != "summary":
                raise ConfigError(f"{path.name} metric {name}: source must be summary or curves")
            keys = [k for k in met if k not in ("quantity", "terms", "source")] + [k for t in met.get("terms", []) for k in t]
            _check([k for k in keys if k != "weight"] + str(met.get("quantity", "acc")).replace(" ", "").split("/"),
                   f"{path.name} metric {name}")
        for i, claim in enumerate(data.get("claims", [])):
            origin = f"{path.name} claim {claim.get('id', i)}"
            if missing := {"id", "claim", "value", "op", "threshold"} - set(claim):
                raise ConfigError(f"{origin}: missing {sorted(missing)}")
            if unknown := set(claim) - _KEYS:
                raise ConfigError(f"{origin}: unknown keys {sorted(unknown)}")
            if claim["op"] not in OPS or claim.get("kind", "sum") not in ("sum", "peak"):
                raise ConfigError(f"{origin}: op must be one of {OPS} and kind sum or peak")
            sides = [_linear(s, metrics, origin) for s in str(claim["value"]).split("/", 1)]
            if len({t.source for side in sides for t in side}) > 1 or (sides[0][0].source == "curves" and (
                    len(sides) > 1 or claim.get("kind", "sum") != "sum")):
                raise ConfigError(f"{origin}: a value mixes curves and summary metrics, or divides or peaks curves")
            if sides[0][0].source == "curves":
                _check([claim.get("for_each", "env"), *claim.get("where", {})], origin, CURVE_KNOWN, "curves columns")
                out.append({**claim, "paper": data.get("paper", path.stem), "title": data.get("title", ""),
                            "tables": [claim["table"]] if isinstance(claim.get("table", []), str)
                            else list(claim.get("table", [])), "terms": sides[0], "den": None})
                continue
            if claim.get("kind") == "peak" and (len(sides) > 1 or len(sides[0]) > 1 or "along" not in claim):
                raise ConfigError(f"{origin}: a peak needs along and a value of one metric(method)")
            _check([claim.get("along", "k_shot"), claim.get("for_each", "k_shot"), *claim.get("where", {}),
                    *[k for w in claim.get("where_by_table", {}).values() for k in w]], origin)
            tables = claim.get("table", [])
            out.append({**claim, "paper": data.get("paper", path.stem), "title": data.get("title", ""),
                        "tables": [tables] if isinstance(tables, str) else list(tables), "terms": sides[0],
                        "den": sides[1] if len(sides) == 2 else None})
    return out


@functools.lru_cache(maxsize=1)
def _shipped_claims() -> list[dict[str, Any]]:
    """The shipped claim files, parsed once per process (planning asks for every trial's evals)."""
    return load_claims()


def claimed_attacks(method: str, attacks: Sequence[str], claims: Sequence[Mapping[str, Any]] | None = None
                    ) -> tuple[str, ...]:
    """The attacks of a ``method``'s evaluation whose rows a claim reads: of the white-box
    ``attacks`` those a claim's term names for the method (all of them for ``worst``, their
    per-query worst case, which an evaluation of several attacks writes), and ``support`` / ``support+query`` when a term reads those scenarios
    (a quick sweep escalates only these to convergence: ``CheckSettings.converge_scope``)."""
    out: set[str] = set()
    for claim in _shipped_claims() if claims is None else claims:
        for term in [*claim["terms"], *(claim.get("den") or [])]:
            where = term.where
            if term.source != "summary" or where.get("method") != method:
                continue
            attack, scenario = str(where.get("attack", "")), str(where.get("scenario", "whitebox"))
            if scenario in ("support", "support+query"):
                out.add(scenario)
            elif scenario == "whitebox" and attack == "worst" and len(attacks) > 1:  # else no worst row
                out.update(attacks)
            elif scenario == "whitebox" and attack in attacks:
                out.add(attack)
    return tuple(a for a in (*attacks, "support", "support+query") if a in out)


def last_tenth(n: int) -> int:
    """How many final iterations a curve's "final" value averages: the last tenth (at least one)."""
    return max(1, n // 10)


def curve_statistics(curve: pd.DataFrame) -> dict[str, float]:
    """``final``, ``peak`` and ``late_drop`` (:data:`CURVE_QUANTITIES`) of one trial's curve rows."""
    c = curve.sort_values("iteration")
    gap = float(c["expert_reward"].iloc[0]) - float(c["random_reward"].iloc[0])
    if not gap > 0:
        return {q: math.nan for q in CURVE_QUANTITIES}
    norm = (c["reward"].astype(float).to_numpy() - float(c["random_reward"].iloc[0])) / gap
    n = len(norm)
    window = max(1, round(n / 20))
    smooth = np.convolve(norm, np.ones(window) / window, mode="valid")
    final = float(norm[-last_tenth(n):].mean())
    peak = float(smooth.max())
    return {"final": final, "peak": peak, "late_drop": peak - final}


def _curve_claim(claim: dict[str, Any], curves: pd.DataFrame, ids: list[str] | None) -> list[dict[str, Any]]:
    """A claim on learning curves: per ``for_each`` group, Σ w · mean over trials, t-based CI."""
    rows = curves if ids is None else curves[curves["trial_id"].astype(str).isin(ids)]
    rows = rows[_mask(rows, claim.get("where", {}))] if len(rows) else rows
    fe = claim.get("for_each", "env")
    groups = sorted(rows[fe].dropna().astype(str).unique().tolist()) if fe in rows and len(rows) else [None]
    out = []
    for g in groups:
        sub = rows if g is None else rows[rows[fe].astype(str).eq(g)]
        value, var, parts, notes, seeds = 0.0, 0.0, [], [], []
        for term in claim["terms"]:
            mine = sub[_mask(sub, term.where)] if len(sub) else sub
            stats = [curve_statistics(t)[term.quantity] for _, t in mine.groupby("trial_id", sort=True)]
            stats = [x for x in stats if math.isfinite(x)]
            label = f"{term.quantity}({term.where.get('method')})"
            if len(stats) < 2:
                notes.append(f"{label}: {len(stats)} finished trial(s); a CI needs ≥ 2 seeds")
                value = math.nan
                continue
            mean, ci = mean_ci95(stats)
            value += term.weight * mean
            var += (term.weight * ci) ** 2
            seeds.append(len(stats))
            sign = "−" if term.weight < 0 else "+"
            parts.append(f"{sign} {label} {mean:.3f} ± {ci:.3f}")
        ci95 = math.sqrt(var) if math.isfinite(value) else math.nan
        verd = verdict(value, ci95, claim["op"], float(claim["threshold"]))
        notes.insert(0, "normalised reward: 0 = random policy, 1 = expert; over "
                        + (f"{min(seeds)}–{max(seeds)}" if seeds and min(seeds) != max(seeds) else f"{seeds[0] if seeds else 0}")
                        + " seeds (Student-t 95 % CI)")
        out.append({"paper": claim["paper"], "title": claim["title"], "claim_id": claim["id"], "claim": claim["claim"],
                    "table": (claim["tables"] or [None])[0], "group": "" if g is None else f"{fe}={g}",
                    "k_shot": None, "op": claim["op"], "threshold": float(claim["threshold"]), "verdict": verd,
                    "n_episodes": None, "rows": " ".join(parts).lstrip("+ "), "value": value, "ci95": ci95,
                    "ci_method": "t over seeds", "detail": "; ".join(notes), "reliable": True,
                    "decided_by": f"{min(seeds) if seeds else 0} training seeds (learning curves)",
                    "n_seeds": min(seeds) if seeds else 0, "attack_iterations": None,
                    "trial_ids": " ".join(sorted(set(sub["trial_id"].astype(str)))) if len(sub) else "",
                    "row_keys": "[]"})
    return out


def prepare(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows claims use: ok, each trial's last fine-tune step, no curve rows; adds ``steps``."""
    ok = summary[summary["status"].astype("string").eq("ok").fillna(False)].reset_index(drop=True)
    step = pd.to_numeric(ok["finetune_step"], errors="coerce").astype(float)
    staged = ok["scenario"].isin(["whitebox", "surrogate", "finetune"]).to_numpy(dtype=bool)
    last = step[staged].groupby(ok.loc[staged, "trial_id"], dropna=False).transform("max").reindex(ok.index)
    params = []  # plain dicts: pandas would turn the JSON into Arrow structs
    for text in ok["attack_params"].tolist():
        try:
            params.append(p if isinstance(p := json.loads(text), dict) else {})
        except (TypeError, ValueError):
            params.append({})
    ok["steps"] = pd.to_numeric(pd.Series([p.get("steps") for p in params], dtype=object), errors="coerce")
    keep = (~staged | (step == last).to_numpy(dtype=bool)) & ~np.array([p.get("curve") is not None for p in params], dtype=bool)
    return ok[keep].reset_index(drop=True)


def _mask(rows: pd.DataFrame, where: Mapping[str, Any]) -> pd.Series:
    mask = pd.Series(True, index=rows.index)
    for key, want in where.items():
        if key == "eps" and want in ("clean", "table"):  # "table" is left only when no ε is known
            mask &= rows["attack"].eq("none").fillna(False) if want == "clean" else False
        elif key == "eps":
            mask &= pd.Series(np.isclose(rows["eps"].astype(float), parse_eps(want), rtol=0, atol=1e-9), rows.index)
        elif key not in rows:
            mask &= False
        elif isinstance(want, (int, float)) and not isinstance(want, bool):
            mask &= (pd.to_numeric(rows[key], errors="coerce") - float(want)).abs().lt(1e-9).fillna(False)
        else:
            mask &= rows[key].astype("string").str.lower().eq(str(want).lower()).fillna(False)
    return mask


def _qty(rows: pd.DataFrame, quantity: str) -> pd.Series:
    cols = quantity.replace(" ", "").split("/")
    return rows[cols[0]].astype(float) / (rows[cols[1]].astype(float) if len(cols) == 2 else 1.0)


def _label(term: Term, row: pd.Series | None = None) -> str:
    """``tafl worst@2/255``, ``maml clean``, ``adml clean/adv transfer@2/255`` (a row's, or a selector's)."""
    get = term.where.get if row is None else row.get
    if term.quantity != "acc":
        return f"{get('method')} ({term.quantity.replace(' ', '')})"
    attack, steps, eps = str(get("attack") or "any"), get("steps"), get("eps_str" if row is not None else "eps")
    attack += f"-{int(steps)}" if attack == "pgd" and steps is not None and not pd.isna(steps) else ""
    text = f"{get('method')} " + (f"{get('support')}/{get('query')} " if get("scenario") == "surrogate" else "")
    text += "clean" if attack == "none" and get("scenario") != "surrogate" else attack
    return text + (f"@{eps}" if eps and eps != "clean" and (attack != "none" or get("scenario") == "surrogate") else "")


def _text(items: Sequence[tuple[float, Term, pd.Series | None]]) -> str:
    return " ".join(f"{'−' if w < 0 else '+'} {'' if abs(w) == 1 else f'{abs(w):g}·'}{_label(t, r)}"
                    for w, t, r in items if w != 0).lstrip("+ ")


def _one(rows: pd.DataFrame, term: Term, peak: bool = False) -> tuple[pd.DataFrame | None, str]:
    """The row a term selects — one per trial when ``peak``, or one per seed when the matching
    trials differ only in their seed (independent training runs of one setting) — or None and why not."""
    if rows.empty:
        return None, f"no rows for {_label(term)}"
    if rows["trial_id"].nunique(dropna=False) > 1 and not peak:
        differ = [c for c in rows if (c.startswith("hp_") or c in ("k_shot", "dataset", "n_way", "seed"))
                  and rows[c].astype("string").nunique(dropna=False) > 1] or ["their settings"]
        n = rows["trial_id"].nunique(dropna=False)
        if differ != ["seed"] or rows.groupby("seed")["trial_id"].nunique().gt(1).any():
            return None, f"ambiguous rows: {_label(term)} matches {n} trials (differing in {', '.join(differ)})"
    keep = []
    for tid, trial in rows.groupby("trial_id", sort=True, dropna=False):
        if _qty(trial, term.quantity).nunique(dropna=False) > 1:
            return None, f"ambiguous rows: {_label(term)} matches {len(trial)} different rows of trial {tid}"
        keep.append(trial.index[0])
    return rows.loc[keep], ""


def _episode_series(row: pd.Series, by_trial: Mapping[str, pd.DataFrame]) -> pd.Series | None:
    """A summary row's per-episode accuracies, by episode index (None when not recorded once each)."""
    ep = by_trial.get(str(row["trial_id"]), pd.DataFrame())
    for col in _EP_KEY if len(ep) else ():
        same = ep[col].isna() if pd.isna(row[col]) else ep[col].astype("string").eq(str(row[col])).fillna(False)
        ep = ep[same]
    if ep.empty or ep["episode_index"].duplicated().any():
        return None
    return ep.set_index("episode_index")["acc"].astype(float).sort_index()


def _paired(items: Sequence[tuple[float, Term, pd.Series]], by_trial: Mapping[str, pd.DataFrame],
            rule: SequentialRule) -> tuple[float, float, int] | None:
    """Value, half-width and episodes of Σ w·acc over the episodes that every term's row ran on
    (their common episode indices: a row that another claim extended with a block keeps only the
    episodes this claim's other rows share): the interval of the per-episode sums, at ``rule``'s level."""
    series: list[tuple[float, pd.Series]] = []
    for weight, _, row in items:
        acc = _episode_series(row, by_trial)
        if acc is None:
            return None
        series.append((weight, acc))
    if not series:
        return None
    common = series[0][1].index
    for _, acc in series[1:]:
        common = common.intersection(acc.index)
    if len(common) < 2:
        return None
    total = series[0][0] * series[0][1].reindex(common)
    for weight, acc in series[1:]:
        total = total + weight * acc.reindex(common)
    mean, ci = rule.interval(total.to_numpy())
    return mean, ci, len(total)


def _seeded(sides: list[list[tuple[float, Term, pd.DataFrame]]], ratio: bool) -> dict[str, Any]:
    """Value and interval over training seeds: each seed's Σ w·quantity (or ratio of sums) from
    its own trials, then the Student-t interval of those per-seed values — it holds the variation
    between training runs as well as the test episodes' (each seed's value averages its episodes)."""
    seed_sets = [set(pd.to_numeric(rows["seed"]).astype(int)) for side in sides for _, _, rows in side]
    seeds = sorted(set.intersection(*seed_sets)) if seed_sets else []
    per_seed = []
    for sd in seeds:
        parts = []
        for side in sides:
            total = 0.0
            for w, t, rows in side:
                one = rows[pd.to_numeric(rows["seed"]).astype(int) == sd]
                total += w * float(_qty(one, t.quantity).iloc[0])
            parts.append(total)
        per_seed.append(parts[0] / parts[1] if ratio else parts[0])
    mean, ci = mean_ci95(per_seed)
    missing = sorted(set.union(*seed_sets) - set(seeds)) if seed_sets else []
    return {"value": mean, "ci95": ci, "n_seeds": len(seeds), "ci_method": "t over seeds",
            "detail": (f"interval over {len(seeds)} training seeds (each seed's value over its test episodes)"
                       + (f"; seeds {missing} lack a side and are left out" if missing else ""))}


def _sum(rows: pd.DataFrame, num: list[Term], den: list[Term] | None,
         by_trial: Mapping[str, pd.DataFrame], rule: SequentialRule) -> dict[str, Any]:
    """Value and CI of a weighted sum of the terms' rows, or of the ratio of two such sums; the
    rows used are in ``used``."""
    sides: list[dict[Any, list[Any]]] = []
    seeded: list[list[tuple[float, Term, pd.DataFrame]]] = []
    errors = []
    for terms in (num, den or []):
        sides.append({})  # row index -> [summed weight, term, row]: a row counted twice is one row in the CI
        seeded.append([])
        for term in terms:
            one, why = _one(rows[_mask(rows, term.where)], term)
            errors += [why] if one is None else []
            if one is not None:
                sides[-1].setdefault(one.index[0], [0.0, term, one.iloc[0]])[0] += term.weight
                seeded[-1].append((term.weight, term, one))
    if errors:
        text = " / ".join(_text([(t.weight, t, None) for t in terms]) for terms in (num, den) if terms)
        return {"value": math.nan, "ci95": math.nan, "ci_method": "", "rows": text, "detail": "; ".join(errors),
                "used": rows.iloc[:0]}
    items = [[(w, t, r) for w, t, r in side.values()] for side in sides]  # (summed weight, term, row)
    flat = items[0] + items[1]
    used = pd.concat([one for side in seeded for _, _, one in side])
    shot = next(iter(shots)) if len(shots := {str(r["k_shot"]) for *_, r in flat}) == 1 else ""
    out = {"rows": " / ".join(_text(part) for part in items if part) + (f", {shot}-shot" if shot.isdigit() else ""),
           "detail": "", "used": used,
           "n_episodes": min((int(r["n_episodes"]) for *_, r in flat if not pd.isna(r["n_episodes"])), default=None)}
    if any(len(one) > 1 for side in seeded for _, _, one in side):
        return {**out, **_seeded([s for s in seeded if s], bool(den))}
    value = [sum(w * float(_qty(r.to_frame().T, t.quantity).iloc[0]) for w, t, r in part) for part in items]
    out = {**out, "value": value[0], "ci_method": "independent"}
    if den:
        return {**out, "value": value[0] / value[1], "ci95": 0.0, "ci_method": "none (ratio)", "n_episodes": None}
    if any(t.quantity != "acc" for _, t, _ in flat):
        return {**out, "ci95": 0.0, "ci_method": "none (not an accuracy)"}
    if (paired := _paired([i for i in flat if i[0] != 0], by_trial, rule)) is not None:
        method = "paired" if rule.looks == 1 else f"paired, look {rule.looks} of its sequence (level {rule.level:.4f})"
        return {**out, "value": paired[0], "ci95": paired[1], "ci_method": method, "n_episodes": paired[2]}
    return {**out, "ci95": math.sqrt(sum(w * w * float(r["acc_ci95"]) ** 2 for w, _, r in flat))}


def _peak(claim: dict[str, Any], rows: pd.DataFrame, term: Term) -> dict[str, Any]:
    """Best interior cell − the larger end cell along ``claim["along"]``; CI √(ci₁² + ci₂²)."""
    along = claim["along"]
    one, why = _one(rows[_mask(rows, term.where)], term, peak=True)
    base = {"value": math.nan, "ci95": math.nan, "ci_method": "peak", "rows": f"{_label(term)} along {along}",
            "used": rows.iloc[:0]}
    if one is None:
        return {**base, "detail": why}
    base["used"] = one
    if along not in one:
        return {**base, "detail": f"a peak along {along} needs that column; the rows have none"}
    one = one.assign(_q=_qty(one, term.quantity), _ci=one["acc_ci95"].astype(float) ** 2)
    cells = one.groupby(pd.to_numeric(one[along], errors="coerce"), sort=True).agg(
        q=("_q", "mean"), ci=("_ci", "sum"), n=("_q", "size"), ep=("n_episodes", "min"))
    cells["ci"] = np.sqrt(cells["ci"]) / cells["n"]  # the CI of a mean of independent cells
    if len(cells) < 3:
        return {**base, "detail": f"a peak along {along} needs ≥ 3 distinct values; the matching rows have "
                                  f"{len(cells)} ({', '.join(f'{v:g}' for v in cells.index)})"}
    best, end = cells.iloc[1:-1]["q"].idxmax(), cells.iloc[[0, -1]]["q"].idxmax()
    return {**base, "value": float(cells.at[best, "q"] - cells.at[end, "q"]), "n_episodes": cells["ep"].min(),
            "ci95": float(math.hypot(cells.at[best, "ci"], cells.at[end, "ci"])),
            "rows": f"{_label(term, one.iloc[0])}: {along}={best:g} (best interior) − {along}={end:g} (larger end)",
            "detail": f"{len(cells)} values of {along}; a cell averages up to {int(cells['n'].max())} trial(s)"}


def _table(claim: dict[str, Any], manifest: Mapping[str, Any] | None) -> tuple[str | None, Any, list[str] | None]:
    """The claim's table, its ``table_eps`` entry (or None) and the manifest's trials of it (or None)."""
    table_eps, trials = dict((manifest or {}).get("table_eps") or {}), list((manifest or {}).get("trials") or [])
    listed = {t for tr in trials for t in tr.get("table") or []}
    name = next((t for t in claim["tables"] if t in table_eps or t in listed), (claim["tables"] or [None])[0])
    ids = sorted(str(tr["trial_id"]) for tr in trials if name in (tr.get("table") or [])) if name in listed else None
    return name, table_eps.get(name), ids


def _row_label(r: pd.Series) -> str:
    attack = str(r.get("attack"))
    steps = r.get("steps")
    attack += f"-{int(steps)}" if attack == "pgd" and steps is not None and not pd.isna(steps) else ""
    shot = "" if pd.isna(r.get("k_shot")) else f", {int(r['k_shot'])}-shot"
    scen = "" if r.get("scenario") in ("whitebox", "l2l") else f" ({r.get('scenario')})"
    return f"{r.get('method')} {attack}@{r.get('eps_str')}{scen}{shot}"


def unreliable_reasons(used: pd.DataFrame, checks: pd.DataFrame | None) -> list[str]:
    """Why the rows ``used`` cannot carry a verdict: an attacked row whose attack had not converged
    (``converged`` false; for results written before escalation, the trial's ``converged`` check),
    or whose trial failed a masking check at that ε. Empty when every row can."""
    reasons: list[str] = []
    bad_checks = pd.DataFrame() if checks is None or checks.empty else checks[
        checks["passed"].eq(False).fillna(False).astype(bool)]
    for _, r in used.drop_duplicates(subset=[c for c in ("trial_id", *_EP_KEY) if c in used]).iterrows():
        if r.get("scenario") not in _WHITEBOX or str(r.get("attack")) in ("none", "transfer", "square"):
            continue
        label = _row_label(r)
        mine = bad_checks[(bad_checks["trial_id"].astype(str) == str(r["trial_id"]))
                          & (bad_checks["eps_str"].astype(str) == str(r.get("eps_str")))] if len(bad_checks) else bad_checks
        masking = [str(c) for c in mine.get("check", pd.Series(dtype=str)) if str(c) != "converged"]
        converged = r.get("converged")
        if converged is not None and not pd.isna(converged):
            if not bool(converged):
                its = r.get("attack_iterations")
                reasons.append(f"{label}: not converged (still gaining at {int(its) if not pd.isna(its) else '?'} "
                               "iterations, the cap)")
        elif len(mine) and "converged" in set(mine["check"].astype(str)):
            reasons.append(f"{label}: not converged (the trial's converged check failed)")
        elif r.get("scenario") in ("whitebox", "l2l") and str(r.get("attack")) != "fgsm" and not (
                checks is not None and len(checks) and (
                    (checks["trial_id"].astype(str) == str(r["trial_id"])) & (checks["check"] == "converged")
                    & checks["passed"].eq(True).fillna(False).astype(bool)).any()):
            reasons.append(f"{label}: convergence not checked")
        if masking:
            reasons.append(f"{label}: masking suspected ({', '.join(masking)})")
    return list(dict.fromkeys(reasons))


ROW_KEY = ("trial_id", *_EP_KEY, "attack_params")
"""What names one summary row: its trial, scenario, support, query, attack, ε, fine-tune step and settings."""


def row_keys(used: pd.DataFrame) -> str:
    """JSON list of the summary rows a claim rests on, by :data:`ROW_KEY` (claims.parquet ``row_keys``)."""
    if used.empty:
        return "[]"
    keys = used[[c for c in ROW_KEY if c in used]].drop_duplicates()
    return json.dumps([{k: (None if pd.isna(v) else int(v) if k == "finetune_step" else str(v))
                        for k, v in r.items()} for r in keys.to_dict("records")], sort_keys=True)


def _decided_by(res: Mapping[str, Any], used: pd.DataFrame, rule: SequentialRule) -> str:
    """What a verdict rests on: episodes (paired or not), seeds, attack iterations, looks."""
    n, seeds, method = res.get("n_episodes"), res.get("n_seeds"), str(res.get("ci_method", ""))
    if n is None or pd.isna(n):
        text = "no interval" if method.startswith("none") else "–"
    elif seeds:
        text = f"{seeds} training seeds × {int(n)} test episodes"
    elif method.startswith("paired"):
        text = f"{int(n)} paired episodes" + (f" ({rule.looks} planned looks)" if rule.looks > 1 else "")
    else:
        text = f"{int(n)} episodes per row (independent)"
    if "attack_iterations" in used and used["attack_iterations"].notna().any():
        top = used.loc[used["attack_iterations"].notna()]
        best = top.loc[top["attack_iterations"].astype(float).idxmax()]
        text += f"; attacks up to {int(best['attack_iterations'])} iterations ({best['attack']})"
    return text


def _evaluate(claim: dict[str, Any], rows: pd.DataFrame, manifest: Mapping[str, Any] | None,
              by_trial: Mapping[str, pd.DataFrame], curves: pd.DataFrame | None = None,
              checks: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    name, entry, ids = _table(claim, manifest)
    if claim["terms"][0].source == "curves":
        return _curve_claim(claim, curves if curves is not None else pd.DataFrame(columns=["trial_id"]), ids)
    rule = SequentialRule(looks=int(((manifest or {}).get("sequential") or {}).get("looks", 1)))
    rows = rows if ids is None else rows[rows["trial_id"].astype(str).isin(ids)]
    where = {**claim.get("where", {}), **claim.get("where_by_table", {}).get(name, {})}
    terms = [Term(t.weight, {**t.where, **where}, t.quantity) for t in claim["terms"] + (claim["den"] or [])]
    cand = rows[np.logical_or.reduce([_mask(rows, {k: v for k, v in t.where.items() if k != "eps"}) for t in terms])]
    fe = claim.get("for_each")
    groups = sorted(cand[fe].dropna().unique().tolist()) if fe in cand and cand[fe].notna().any() else [None]
    out = []
    for g in groups:
        # a group g is a value of column fe, so fe is a str whenever g is not None
        sub, notes, eps = cand if g is None else cand[_mask(cand, {cast(str, fe): g})], [], None
        if entry and entry.get("eps") and re.fullmatch(r"[\d.]+(/[\d.]+)?", str(entry["eps"][0]).strip()):
            eps = parse_eps(entry["eps"][0])  # (a calibrated ε still pending reads "eps*": not used)
            notes.append(f"ε {format_eps(eps)}: table {name}'s primary ε ({entry.get('source', '?')})")
        elif (hit := sub["attack"].ne("none").fillna(False)).any() and any(t.where.get("eps") == "table"
                                                                          for t in terms):
            eps = float(sub.loc[hit, "eps"].astype(float).max())
            notes.append(f"no manifest ε for table {name}: used the largest attacked ε of the rows, "
                         f"{format_eps(eps)}")
        resolved = {"eps": format_eps(eps)} if eps is not None else {}
        fixed = [Term(t.weight, {**t.where, **resolved} if t.where.get("eps") == "table" else t.where, t.quantity)
                 for t in terms]
        num, den = fixed[: len(claim["terms"])], fixed[len(claim["terms"]):]
        res = _peak(claim, sub, fixed[0]) if claim.get("kind") == "peak" else _sum(sub, num, den, by_trial, rule)
        verd = verdict(res["value"], res["ci95"], claim["op"], float(claim["threshold"]))
        used: pd.DataFrame = res["used"]
        reasons = unreliable_reasons(used, checks)
        if reasons and not math.isnan(res["value"]):
            notes.insert(0, f"unreliable ({'; '.join(reasons)}); the interval alone would say {verd}")
            verd = "unreliable"
        notes += [res["detail"]] + ([claim["note"]] if math.isnan(res["value"]) and claim.get("note") else [])
        its = pd.to_numeric(used["attack_iterations"], errors="coerce") if "attack_iterations" in used else None
        out.append({"paper": claim["paper"], "title": claim["title"], "claim_id": claim["id"], "claim": claim["claim"],
                    "table": name, "group": "" if g is None else f"{fe}={g}",
                    "k_shot": g if fe == "k_shot" else where.get("k_shot"), "op": claim["op"],
                    "threshold": float(claim["threshold"]), "verdict": verd, "n_episodes": res.get("n_episodes"),
                    "reliable": not reasons and len(used) > 0 and not math.isnan(res["value"]), "decided_by": _decided_by(res, used, rule),
                    "n_seeds": res.get("n_seeds") or (used["seed"].nunique() if len(used) else None),
                    "attack_iterations": None if its is None or its.isna().all() else int(its.max()),
                    # rows of a results folder written before trials had ids (the L2L script's) name none
                    "trial_ids": " ".join(sorted({t for t in used["trial_id"] if isinstance(t, str) and t}))
                    if len(used) and "trial_id" in used else "",
                    "row_keys": row_keys(used),
                    **{k: res[k] for k in ("rows", "value", "ci95", "ci_method")},
                    "detail": "; ".join(n for n in notes if n)})
    return out


def _any_ok(summary: pd.DataFrame) -> bool:
    return bool(len(summary)) and bool(summary["status"].astype("string").eq("ok").fillna(False).any())


def evaluate_claims(summary: pd.DataFrame, episodes: pd.DataFrame | None = None,
                    manifest: Mapping[str, Any] | None = None,
                    claim_files: Sequence[str | Path] | None = None,
                    curves: pd.DataFrame | None = None, checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Check every claim of the claim files against a sweep's results.

    Args:
        summary: the sweep's ``summary`` rows (the schema of :mod:`advmeta.results`).
        episodes: its per-episode rows; None or empty: every CI from the rows' ``acc_ci95``.
        manifest: its ``sweep.json`` (``table_eps``; ``trials`` with their ``table`` lists), or None.
        claim_files: TOML files to check (default: the shipped ``advmeta/plan/claims/*.toml``).
        curves: its learning curves (``curves.parquet``), for the claims on them.
        checks: its ``checks.parquet``: a claim resting on a row of a trial that failed a check at
            that ε is ``unreliable`` (as is one on a row whose attack had not converged).

    Returns:
        One row per claim and ``for_each`` value, columns :data:`COLUMNS`, in file, claim and value order.
    """
    rows = prepare(summary) if len(summary) else summary.assign(steps=pd.Series(dtype=float))
    eps = episodes if episodes is not None and len(episodes) else pd.DataFrame(columns=["trial_id"])
    by_trial = {str(k): v for k, v in eps.groupby("trial_id", sort=False)}
    have_curves = curves is not None and len(curves) > 0
    # A sweep is checked against the claims on what it produced: a sweep of learning curves only
    # (the gail grid) is not listed every accuracy claim as untestable, nor an accuracy sweep the curve claims.
    wanted = [c for c in load_claims(claim_files)
              if (c["terms"][0].source == "curves" and have_curves) or (c["terms"][0].source != "curves" and (
                  _any_ok(summary) or not have_curves))]
    searched = (manifest or {}).get("method") if not (manifest or {}).get("grid") else None
    if searched:  # an `advmeta tune` search: only the claims about its own method
        wanted = [c for c in wanted if searched in {t.where.get("method") for t in c["terms"] + (c["den"] or [])}]
    frame = pd.DataFrame([r for c in wanted for r in _evaluate(c, rows, manifest, by_trial, curves, checks)], columns=COLUMNS)
    for col, dtype in {"value": "float64", "ci95": "float64", "threshold": "float64", "k_shot": "Int64",
                       "n_episodes": "Int64", "n_seeds": "Int64", "attack_iterations": "Int64"}.items():
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(dtype)
    frame["reliable"] = frame["reliable"].astype("boolean")
    if (manifest or {}).get("budget") == "smoke" and len(frame):  # a pipeline check: nothing is judged
        judged = frame["verdict"].isin(["holds", "fails"])
        frame.loc[judged, "detail"] = ("smoke budget: it checks the pipeline, its numbers are noise — not judged "
                                       "(the interval said " + frame.loc[judged, "verdict"] + "); "
                                       + frame.loc[judged, "detail"].astype(str))
        frame.loc[judged, "verdict"] = "inconclusive"
    return frame
