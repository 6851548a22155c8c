"""The reference parts of ``docs/``, generated from the code and the data files they describe.

Each generated part of a page sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``:
the claims (``advmeta/plan/claims/*.toml``), every learner's hyper-parameters and per-dataset defaults
(their ``Config``), the attacks and their declared facts (the registry), the papers' ε per table
(``advmeta/plan/grids/*.toml``), the calibration rule's constants, the budgets (``advmeta/plan/budgets.py``) and
the committed runs' wall times (``results/*/sweep.json``). ``python -m advmeta.reference``
rewrites them; ``--check`` exits 1 naming any that is out of date (a test runs it), so no
number in those parts is typed by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# page -> the generated parts it holds, in order
PAGES: dict[str, tuple[str, ...]] = {
    "docs/claims.md": ("claims",),
    "docs/methods.md": ("learner-defaults",),
    "docs/attacks.md": ("attacks",),
    "docs/protocols.md": ("calibration", "paper-eps", "budgets", "runs"),
}


def _cell(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _built_in(module: str) -> bool:
    """Part of advmeta (a plugin from ADVMETA_PLUGINS is not documented here)."""
    return module.startswith("advmeta.")


def claims_markdown() -> str:
    """Every shipped claim: its paper, the grid tables whose rows test it, the value and the threshold."""
    from advmeta.claims import load_claims
    from advmeta.plan.grids import grid_names, load_grid

    grids_of: dict[str, list[str]] = {}
    for g in grid_names():
        for table in load_grid(g)[1].get("tables", []):
            grids_of.setdefault(str(table.get("name")), []).append(g)
    lines: list[str] = []
    paper = None
    for c in load_claims():
        if c["paper"] != paper:
            paper = c["paper"]
            lines += ["" if lines else "", f"### {paper}", "", f"{c['title']}", "",
                      "| id | claim | grid table (grids) | value | holds when | per | note |",
                      "|---|---|---|---|---|---|---|"]
        tables = ", ".join(f"`{t}` ({', '.join(grids_of.get(t, [])) or 'no shipped grid'})" for t in c["tables"])
        value = ("peak of " if c.get("kind") == "peak" else "") + f"`{c['value']}`" + (
            f" along `{c['along']}`" if c.get("kind") == "peak" else "")
        lines.append(f"| `{c['id']}` | {_cell(c['claim'])} | {tables} | {_cell(value)} | value {c['op']} "
                     f"{c['threshold']:g} | {_cell(c.get('for_each', ''))} | {_cell(c.get('note', ''))} |")
    return "\n".join(lines).strip()


def _value(v: object) -> str:
    return f"`{v!r}`" if isinstance(v, str) else f"`{v}`"


def learner_defaults_markdown() -> str:
    """Every built-in learner's hyper-parameters: default, the values that differ per dataset, meaning."""
    from advmeta.hparams import dataset_defaults
    from advmeta.learners import get_learner, learner_names

    datasets = sorted({d for m in learner_names() for k in get_learner(m).Config.__mro__
                       for d in vars(k).get("DATASET_DEFAULTS", {})})
    lines: list[str] = []
    for method in learner_names():
        cls = get_learner(method)
        if not _built_in(cls.__module__):
            continue
        on = {d: dataset_defaults(cls.Config, d) for d in datasets}
        head = "| field | default | " + " | ".join(f"on {d}" for d in datasets) + " | meaning |"
        lines += [f"#### `{method}` — `{cls.Config.__name__}` ({cls.__module__.replace('.', '/')}.py)", "",
                  head, "|" + "---|" * (3 + len(datasets))]
        for f in dataclasses.fields(cls.Config):
            default = f.default if f.default is not dataclasses.MISSING else "(factory)"
            per = " | ".join(_value(on[d][f.name]) if f.name in on[d] else "" for d in datasets)
            lines.append(f"| `{f.name}` | {_value(default)} | {per} | {_cell(f.metadata.get('doc', ''))} |")
        lines.append("")
    return "\n".join(lines).strip()


def attacks_markdown() -> str:
    """Every built-in attack and what it declares (:class:`advmeta.attacks.AttackInfo`)."""
    from advmeta.attacks import attack_info, attack_names, get_attack

    lines = ["| attack | norms | bounded | random | iterative | gradient-free | classes ≥ | needs | at meta-test | file |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in attack_names():
        fn = get_attack(name)
        if not _built_in(fn.__module__):
            continue
        i = attack_info(name)
        yes = {True: "yes", False: ""}
        test = ", ".join(f"{k}={v}" for k, v in i.test_params)
        lines.append(f"| `{name}` | {', '.join(i.norms)} | {yes[i.bounded]} | {yes[i.stochastic]} | {yes[i.iterative]} "
                     f"| {yes[i.gradient_free]} | {i.min_classes} | {', '.join(i.requires)} | {_cell(test)} "
                     f"| {fn.__module__.replace('.', '/')}.py |")
    return "\n".join(lines)


def calibration_markdown() -> str:
    """The calibration rules' constants (:mod:`advmeta.calibration.search`)."""
    from advmeta.calibration import search as c

    return "\n".join([
        "| constant | value | where |", "|---|---|---|",
        f"| ladder of ε* | {', '.join(c.LADDER)} | `advmeta.calibration.search.LADDER` |",
        f"| MAML's accuracy under PGD below (%) | {c.THRESHOLD:g} | `advmeta.calibration.search.THRESHOLD` |",
        f"| surrogate rule: MAML's drop at least (points) | {c.SURROGATE_DROP:g} | `advmeta.calibration.search.SURROGATE_DROP` |",
        f"| surrogate rule: factors of ε* tried | {', '.join(f'{x:g}' for x in c.SURROGATE_FACTORS)} "
        "| `advmeta.calibration.search.SURROGATE_FACTORS` |"])


def paper_eps_markdown() -> str:
    """The papers' ε of every shipped grid table, per dataset (``eps_paper``), and its calibration rule."""
    from advmeta.plan.grids import grid_names, load_grid

    lines = ["| grid | table | ε on the papers' datasets | elsewhere |", "|---|---|---|---|"]
    for g in grid_names():
        for t in load_grid(g)[1].get("tables", []):
            paper = t.get("eps_paper")
            if not paper:
                continue
            where = "; ".join(f"{d}: {', '.join(e)}" for d, e in paper.items())
            rule = "calibrated, surrogate rule" if t.get("calibrate") == "surrogate" else "calibrated (ε*)"
            ratios = t.get("calibrated_ratios")
            if ratios:
                rule += f"; at `paper` also ε*·{', '.join(f'{r:g}' for r in ratios[1:])}"
            lines.append(f"| {g} | `{t['name']}` | {where} | {rule} |")
    return "\n".join(lines)


_BUDGET_ROWS = (
    ("iterations", "meta-training iterations (clean learners)"),
    ("adversarial_iterations", "at most, for adversarially trained learners"),
    ("iterations_by_method", "per method"),
    ("iterations_by_shot", "per k-shot"),
    ("meta_batch", "tasks per meta-update"),
    ("train_q_query", "training queries per class"),
    ("q_query", "test queries per class"),
    ("image_size", "image side (None: the dataset's)"),
    ("inner_steps", "inner steps (None: the learner's default on the dataset)"),
    ("test_inner_steps", "fine-tune steps at test"),
    ("test_episodes", "test episodes per evaluation"),
    ("whitebox_episodes", "… of white-box evaluations"),
    ("adaptive_episodes", "… of AutoAttack and the attacks through adaptation"),
    ("attack_steps", "steps of iterative test attacks"),
    ("calibration_episodes", "validation episodes per calibration rung"),
    ("surrogate_steps", "training steps of ADML's surrogate"),
    ("shots", "k-shot values kept (None: all)"),
    ("l2l_epochs", "epochs of an L2L trainer"),
    ("l2l_classifier_kwargs", "its WRN (depth, widen)"),
    ("gail_iterations", "GAIL iterations"),
    ("by_dataset", "changes on a dataset"),
)


def budgets_markdown() -> str:
    """The budgets' main fields side by side (every field, with why: ``advmeta/plan/budgets.py``)."""
    from advmeta.plan.budgets import BUDGETS

    names = list(BUDGETS)
    lines = ["| field | meaning | " + " | ".join(f"`{n}`" for n in names) + " |", "|" + "---|" * (2 + len(names))]
    for field, meaning in _BUDGET_ROWS:
        if not all(hasattr(b, field) for b in BUDGETS.values()):
            continue
        cells = []
        for b in BUDGETS.values():
            v = getattr(b, field)
            cells.append(_cell(", ".join(f"{k}: {w}" for k, w in v) if isinstance(v, tuple) and v and
                               isinstance(v[0], tuple) else v if v not in ((), None) else "–"))
        lines.append(f"| `{field}` | {meaning} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_markdown() -> str:
    """The committed runs (``results/*/sweep.json``): the command, its budget and dataset, its trials
    and the wall time the run measured on its machine."""
    lines = ["| folder | command | budget | dataset | trials | wall time (min) | CPUs | load average (1 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for path in sorted((REPO / "results").glob("*/sweep.json")):
        m = json.loads(path.read_text())
        wall = m.get("wall_seconds_total") or m.get("wall_seconds")
        load = (m.get("load_average") or [None])[0]
        lines.append(f"| [`results/{path.parent.name}/`](../results/{path.parent.name}/) | `{m.get('command', '')}` "
                     f"| {m.get('budget', '')} | {m.get('dataset', '')} | {len(m.get('trials', []))} "
                     f"| {wall / 60:.1f} | {m.get('cpus', '')} | {'' if load is None else f'{load:.2f}'} |")
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[], str]] = {
    "claims": claims_markdown,
    "learner-defaults": learner_defaults_markdown,
    "attacks": attacks_markdown,
    "calibration": calibration_markdown,
    "paper-eps": paper_eps_markdown,
    "budgets": budgets_markdown,
    "runs": runs_markdown,
}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->\n)(.*?)(<!-- end: {re.escape(name)} -->)", re.S)


def sync(repo: Path = REPO, check: bool = False) -> list[str]:
    """Rewrite (or with ``check`` only compare) every generated part of every page.

    Returns:
        ``page: part`` of each part that was (or, with ``check``, is) out of date or missing.
    """
    stale: list[str] = []
    for page, names in PAGES.items():
        path = repo / page
        text = path.read_text() if path.is_file() else ""
        new = text
        for name in names:
            body = GENERATORS[name]().rstrip() + "\n"
            found = _block(name).search(new)
            if found is None:
                stale.append(f"{page}: {name} (no '<!-- generated: {name} -->' … '<!-- end: {name} -->' block)")
                continue
            if found.group(2) != body:
                stale.append(f"{page}: {name}")
                new = new[:found.start(2)] + body + new[found.end(2):]
        if not check and new != text:
            path.write_text(new)
    return stale


def main(argv: list[str] | None = None) -> int:
    """``python -m advmeta.reference [--check]``."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = sync(check=check)
    for s in stale:
        print(("out of date: " if check else "rewrote: ") + s)
    if check and stale:
        print("regenerate with: python -m advmeta.reference")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

