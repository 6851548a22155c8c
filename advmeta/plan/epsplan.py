"""Which ε each table of a grid is evaluated (and its adversarial methods trained) at, and why.

docs/protocols.md#epsilon-per-dataset: the papers' ε belong to their datasets. A grid table names them per dataset::

    [[tables]]
    name = "tafl"
    eps_paper = { miniimagenet = ["2/255"], cifar-fs = ["8/255"] }
    [[tables.evals]]
    eps = "table"              # the table's ε, resolved here

On a dataset the table names, its ε is the papers' (source ``paper``). Elsewhere (Omniglot,
glyphs, a user's dataset) it is calibrated (``calibrated``, :mod:`advmeta.calibration.search`), and every
adversarial method of the table trains at it. ``--eps`` on the command line wins over both
(``user``); an eval that lists its own ε keeps them (``grid``). The ``quick`` and ``smoke``
budgets keep only each table's first ε (a second, smaller ε — ADML's 0.2/255 — moves nothing at
that budget); ``paper`` keeps them all, and on a calibrated dataset adds the table's
``calibrated_ratios`` (ADML: ε* and ε*/10, the paper's 2 : 0.2).

A table with ``calibrate = "surrogate"`` (ADML's) is calibrated by its own question instead:
its ε is the first of ε*·(1 … 2) at which the grid's MAML loses at least 10 points to the
fixed surrogate's FGSM (:func:`advmeta.calibration.search.calibrate_surrogate`), and the methods that
train on the surrogate's images (ADML, MAML-AD) train at that ε in every table; the others
keep ε*, so a trial shared by two tables stays one trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advmeta.eps import PENDING, TABLE, Epsilon
from advmeta.errors import ConfigError

RULES = ("pgd", "surrogate")
"""How a table's ε is calibrated: MAML's PGD-20 below 40 % (ε*), or MAML's drop under the surrogate."""


@dataclass(frozen=True)
class TableEps:
    """The ε of one table.

    Attributes:
        eps: the ε values, primary first (:class:`~advmeta.eps.Epsilon` s); ``(PENDING,)`` until calibrated.
        source: ``paper`` | ``calibrated`` | ``user`` | ``grid``.
    """

    eps: tuple[Epsilon | str, ...]
    source: str
    rule: str = "pgd"
    train: Epsilon | None = None

    @property
    def primary(self) -> Epsilon | str:
        """The first ε (the one the surrogate-trained methods train at under the surrogate rule)."""
        return self.eps[0]

    @property
    def train_eps(self) -> Epsilon | str | None:
        """The ε the table's PGD-trained methods train at: ε* under the surrogate rule, else the
        first (None for a table whose evals list their own ε)."""
        return self.train or (self.eps[0] if self.eps else None)

    @property
    def trains_methods(self) -> bool:
        """Whether the table's adversarial methods train at this ε (calibrated or user ε)."""
        return self.source in ("calibrated", "user")

    def to_dict(self) -> dict[str, Any]:
        train = self.train_eps
        return {"eps": [str(e) for e in self.eps], "source": self.source, "rule": self.rule,
                "train_eps": str(train) if train is not None else None}


def table_rule(table: Mapping[str, Any]) -> str:
    """The table's calibration rule (``calibrate``, default ``pgd``).

    Raises:
        ConfigError: an unknown rule.
    """
    rule = str(table.get("calibrate", "pgd"))
    if rule not in RULES:
        raise ConfigError(f"table {table.get('name', 'table')!r}: calibrate must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def surrogate_tables(data: Mapping[str, Any], dataset: str, user_eps: Sequence[Epsilon | str] | None) -> list[str]:
    """Names of the tables whose ε is calibrated by the surrogate rule on ``dataset``."""
    cal = set(needs_calibration(data, dataset, user_eps))
    return [str(t.get("name", "table")) for t in data["tables"]
            if str(t.get("name", "table")) in cal and table_rule(t) == "surrogate"]


def _uses_table_eps(table: Mapping[str, Any]) -> bool:
    evals = table.get("evals", table.get("eval", []))
    evals = evals if isinstance(evals, list) else [evals]
    return any(isinstance(ev, Mapping) and ev.get("eps") == TABLE for ev in evals)


def needs_calibration(data: Mapping[str, Any], dataset: str, user_eps: Sequence[Epsilon | str] | None) -> list[str]:
    """Names of the tables whose ε must be calibrated on ``dataset``."""
    if user_eps:
        return []
    out = []
    for table in data["tables"]:
        paper = dict(table.get("eps_paper", {}))
        if _uses_table_eps(table) and dataset not in paper:
            out.append(str(table.get("name", "table")))
    return out


def plan(data: Mapping[str, Any], dataset: str, budget: str, user_eps: Sequence[Epsilon | str] | None = None,
         calibrated: str | None = None, surrogate: str | None = None) -> dict[str, TableEps]:
    """The ε of every table of a grid.

    Args:
        data: the parsed grid.
        dataset: the sweep's few-shot dataset.
        budget: the budget level (``quick``/``smoke`` keep one ε per table).
        user_eps: ``--eps`` values (win over the papers' and the calibrated ε).
        calibrated: the calibrated ε* (None: not known yet, the tables that need it get
            :data:`PENDING`).
        surrogate: the surrogate rule's ε (tables with ``calibrate = "surrogate"``; None: such
            a table takes ε*, or :data:`PENDING` while ε* is unknown).

    Raises:
        ConfigError: a malformed ``eps_paper`` or ``calibrated_ratios``, or a bad ε.
    """
    user = tuple(Epsilon(e) for e in user_eps) if user_eps else ()
    out: dict[str, TableEps] = {}
    for table in data["tables"]:
        name = str(table.get("name", "table"))
        rule = table_rule(table)
        paper = table.get("eps_paper", {})
        if not isinstance(paper, Mapping):
            raise ConfigError(f"table {name!r}: eps_paper must map datasets to lists of ε")
        if not _uses_table_eps(table):
            out[name] = TableEps((), "grid")
            continue
        values: tuple[Epsilon | str, ...]
        if user:
            values, source = user, "user"
        elif dataset in paper:
            values, source = tuple(Epsilon(e) for e in as_list(paper[dataset])), "paper"
        elif calibrated is None:
            values, source = (PENDING,), "calibrated"
        else:
            ratios = [float(r) for r in as_list(table.get("calibrated_ratios", [1.0]))]
            if not ratios or ratios[0] != 1.0 or any(r <= 0 for r in ratios):
                raise ConfigError(f"table {name!r}: calibrated_ratios must start with 1 and be > 0")
            star = Epsilon(surrogate if rule == "surrogate" and surrogate is not None else calibrated)
            values, source = tuple(Epsilon(star * r) for r in ratios), "calibrated"
        if budget != "paper":
            values = values[:1]
        if source == "calibrated" and rule == "surrogate" and calibrated is not None:
            out[name] = TableEps(values, source, rule, Epsilon(calibrated))
        else:
            out[name] = TableEps(values, source, rule if source == "calibrated" else "pgd")
    return out


def as_list(v: Any) -> list[Any]:
    """A grid value that may be one item or a list of them, as a list."""
    return list(v) if isinstance(v, (list, tuple)) else [v]


def method_eps_overrides(fields: Mapping[str, Any], eps: Epsilon | str) -> dict[str, Any]:
    """The hyper-parameters that make a method train at ``eps`` (calibrated or user ε).

    The method's training budget — its field typed ``Eps`` (``train_eps`` of the meta-learners,
    ``eps`` of the L2L trainers) — becomes ``eps``; a fixed training step size (a field typed
    ``EpsStep`` whose default is not ``"eps"``: AQ-ProtoNet's 2/255, PGM's 2/255) follows it as
    max(2/255, ε/4), so a multi-step attack still reaches the boundary of the larger ball.
    """
    from advmeta.attacks import auto_step_size

    step = PENDING if eps == PENDING else auto_step_size(Epsilon(eps))
    out: dict[str, Any] = {}
    for name, f in fields.items():
        if f.type.budget:
            out[name] = eps
        elif f.type.step and f.default != "eps":  # a fixed step size
            out[name] = step
    return out
