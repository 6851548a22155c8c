"""Grids expand to the expected trials; bad grids are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from advmeta.errors import ConfigError
from advmeta.learners import learner_names
from advmeta.plan.budgets import BUDGETS, get_budget
from advmeta.plan.grids import expand, grid_names, load_grid

SMOKE = get_budget("smoke")


def _expand(name: str, **kw: object) -> list:  # type: ignore[type-arg]
    grid, data = load_grid(name)
    return expand(grid, data, SMOKE, dataset="omniglot", seed=0, **kw)  # type: ignore[arg-type]


def test_shipped_grids() -> None:
    assert {"paper-tables", "tafl", "epsilon", "methods"} <= set(grid_names())


def test_paper_tables_trials() -> None:
    specs = _expand("paper-tables")
    meta = [s for s in specs if s.family == "meta"]
    # ADML table: 13 learners × {1, 5}-shot; the TAFL and R-MAML tables' 1-shot trials are the
    # same training runs (merged, evaluated for each table); plus the five L2L trainers.
    assert len(meta) == 26
    assert sorted(s.method for s in specs if s.family == "l2l") == sorted(
        ["plain", "pgm", "naive-l2l", "grad-l2l", "2step-l2l"])
    assert len({s.trial_id for s in specs}) == len(specs) == 31
    maml1 = next(s for s in meta if s.method == "maml" and s.train["k_shot"] == 1)
    assert set(maml1.table) == {"adml", "tafl", "rmaml", "adaptive"}
    assert {e["scenario"] for e in maml1.evals} == {"surrogate", "whitebox", "support", "support+query"}
    # the adaptive table adds evaluations to its seven methods' trials, never a training
    adaptive = {s.method for s in meta if "adaptive" in s.table}
    assert adaptive == {"maml", "aq", "tafl", "rmaml-out", "protonet", "aq-protonet", "adml"}
    assert all(len(s.table) > 1 for s in meta if "adaptive" in s.table)
    adml = [s for s in meta if s.method == "adml"]
    assert all(s.hparams["first_order"] is False for s in adml)
    surrogate = next(e for e in maml1.evals if e["scenario"] == "surrogate")
    # Omniglot has no paper ε: pending calibration until the sweep measures it.
    assert surrogate["support"] == ["clean", "adv40", "adv"] and surrogate["eps"] == ["eps*"]
    assert surrogate["eps_source"] == "calibrated"


def test_paper_tables_follow_the_dataset() -> None:
    """The papers' ε on mini-ImageNet (both of ADML's at the paper budget); calibrated elsewhere."""
    from advmeta.plan.epsplan import plan

    grid, data = load_grid("paper-tables")
    paper = plan(data, "miniimagenet", "paper")
    assert tuple(map(str, paper["adml"].eps)) == ("2/255", "0.2/255") and paper["adml"].source == "paper"
    assert tuple(map(str, plan(data, "miniimagenet", "quick")["adml"].eps)) == ("2/255",)  # quick: one ε per table
    assert tuple(map(str, paper["tafl"].eps)) == ("2/255",) and tuple(map(str, paper["l2l"].eps)) == ("8/255",)
    cal = plan(data, "omniglot", "paper", calibrated="32/255")
    assert tuple(map(str, cal["adml"].eps)) == ("32/255", "3.2/255") and cal["tafl"].source == "calibrated"
    user = plan(data, "miniimagenet", "quick", user_eps=["4/255"])
    assert {t.source for t in user.values()} == {"user"} and tuple(map(str, user["adml"].eps)) == ("4/255",)
    specs = expand(grid, data, SMOKE, dataset="omniglot", seed=0, table_eps=cal)
    aq = next(s for s in specs if s.method == "aq" and s.train["k_shot"] == 1)
    assert aq.hparams["train_eps"] == "32/255"  # adversarial methods train at the calibrated ε
    aqp = next(s for s in specs if s.method == "aq-protonet" and s.train["k_shot"] == 1)
    assert aqp.hparams["train_step_size"] == "8/255"  # a fixed step follows ε: max(2/255, ε/4)
    pgm = next(s for s in specs if s.method == "pgm")
    assert pgm.hparams["eps"] == "32/255"
    mini = expand(grid, data, SMOKE, dataset="miniimagenet", seed=0, table_eps=paper)
    aq_mini = next(s for s in mini if s.method == "aq" and s.train["k_shot"] == 1)
    assert "train_eps" not in aq_mini.hparams  # the learner's own (the paper's) training ε
    wb = next(e for e in aq_mini.evals if e["scenario"] == "whitebox")
    assert list(map(str, wb["eps"])) == ["2/255"] and wb["eps_source"] == "paper"


def test_surrogate_rule_sets_the_adml_table_and_what_trains_on_the_surrogate() -> None:
    """ADML's table takes the surrogate rule's ε; ADML and MAML-AD train at it in every table,
    the PGD-trained methods keep ε*, so each method is still one trial shared by its tables."""
    from advmeta.plan.epsplan import plan, surrogate_tables

    grid, data = load_grid("paper-tables")
    assert surrogate_tables(data, "omniglot", None) == ["adml"]
    assert surrogate_tables(data, "miniimagenet", None) == []  # the paper's ε there
    assert surrogate_tables(data, "omniglot", ["8/255"]) == []  # --eps wins
    te = plan(data, "omniglot", "paper", calibrated="32/255", surrogate="48/255")
    assert tuple(map(str, te["adml"].eps)) == ("48/255", "4.8/255") and te["adml"].rule == "surrogate"
    assert tuple(map(str, te["tafl"].eps)) == ("32/255",) and te["tafl"].rule == "pgd"
    quick = plan(data, "omniglot", "quick", calibrated="32/255", surrogate="48/255")
    specs = expand(grid, data, get_budget("quick"), dataset="omniglot", seed=0, table_eps=quick)
    by = {s.method: s for s in specs if s.family == "meta"}
    assert by["adml"].hparams["train_eps"] == by["maml-ad"].hparams["train_eps"] == "48/255"
    assert set(by["adml"].table) == {"adml", "tafl", "adaptive"}  # one ADML trial for the three tables
    assert by["aq"].hparams["train_eps"] == by["adml-wb"].hparams["train_eps"] == "32/255"
    assert set(by["aq"].table) == {"adml", "tafl", "rmaml", "adaptive"}
    sur = next(e for e in by["maml"].evals if e["scenario"] == "surrogate")
    wb = next(e for e in by["maml"].evals if e["scenario"] == "whitebox")
    assert list(map(str, sur["eps"])) == ["48/255"] and list(map(str, wb["eps"])) == ["32/255"]


def test_quick_budget_keeps_one_shot_and_trains_what_it_keeps() -> None:
    grid, data = load_grid("paper-tables")
    quick = get_budget("quick")
    specs = expand(grid, data, quick, dataset="omniglot", seed=0)
    meta = [s for s in specs if s.family == "meta"]
    assert {s.train["k_shot"] for s in meta} == {1} and len(specs) == 13 + 5
    its = {s.method: s.train["iterations"] for s in meta}
    assert its["maml"] == its["matching"] // 2.5 == quick.iterations and its["aq-protonet"] == 150
    # the adversarially trained meta-learners train at most adversarial_iterations, except
    # those whose clean accuracy a claim compares with MAML's (iterations_by_method wins)
    assert its["adml"] == its["maml-ad"] == its["rmaml-trades"] == its["rmaml-both"] == quick.adversarial_iterations == 450
    assert its["aq"] == its["tafl"] == its["rmaml-out"] == its["maml"]
    assert its["protonet"] == its["relation"] == quick.iterations
    pgm = next(s for s in specs if s.method == "pgm")
    assert pgm.hparams["batch_size"] == 32 and list(pgm.hparams["lr_milestones"]) == [0.75]
    assert pgm.train["eval_batches"] == 1
    attacks = next(e for e in pgm.evals if e["scenario"] == "l2l")["attacks"]
    assert "cw-linf-20" in attacks and "cw-linf" not in attacks and "pgd-100" not in attacks
    paper = expand(grid, data, get_budget("paper"), dataset="omniglot", seed=0)
    assert {s.train["k_shot"] for s in paper if s.family == "meta"} == {1, 5}
    assert all("eval_batches" not in s.train for s in paper)  # the trainer's default, trial ids unchanged
    assert "cw-linf" in next(e for e in next(s for s in paper if s.method == "pgm").evals)["attacks"]


def test_tafl_grid_is_gamma_by_k() -> None:
    specs = [s for s in _expand("tafl") if s.method == "tafl"]
    assert len(specs) == 6 * 3
    assert [s.method for s in _expand("tafl") if s.method != "tafl"] == ["maml"]  # the calibration MAML
    pairs = {(s.hparams["gamma"], s.hparams["k"]) for s in specs}
    assert pairs == {(g, k) for g in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0) for k in (0.1, 1.0, 10.0)}


def test_epsilon_grid_crosses_train_eps_where_the_method_has_it() -> None:
    specs = _expand("epsilon")
    assert len([s for s in specs if s.method == "maml"]) == 1  # MAML has no training ε
    assert len(specs) == 1 + 4 * 4
    assert {s.hparams.get("train_eps") for s in specs if s.method == "tafl"} == {"0.2/255", "2/255", "4/255", "8/255"}


def test_methods_grid_has_every_learner() -> None:
    assert sorted(s.method for s in _expand("methods")) == sorted(learner_names())


def test_budgets_change_numbers_not_trials() -> None:
    grid, data = load_grid("paper-tables")
    a = expand(grid, data, BUDGETS["smoke"], dataset="omniglot", seed=0)
    b = expand(grid, data, BUDGETS["paper"], dataset="omniglot", seed=0)
    # the same settings (quick also drops the 5-shot column: its own test); paper trains each 3 times
    assert len(b) == 3 * len(a) and BUDGETS["paper"].seeds == 3
    assert sorted(s.train["seed"] for s in b if s.method == "maml" and s.train["k_shot"] == 1) == [0, 1, 2]
    assert a[0].train["iterations"] < b[0].train["iterations"]


def test_trial_ids_are_stable_and_seed_dependent() -> None:
    a = [s.trial_id for s in _expand("tafl")]
    assert a == [s.trial_id for s in _expand("tafl")]
    grid, data = load_grid("tafl")
    b = [s.trial_id for s in expand(grid, data, SMOKE, dataset="omniglot", seed=1)]
    assert not set(a) & set(b)


def test_methods_filter() -> None:
    specs = _expand("paper-tables", methods=["tafl"])
    assert {s.method for s in specs} == {"tafl"} and len(specs) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[tables]]\nmethods = ["nope"]\n', "unknown method 'nope'"),
        ('[[tables]]\nmethods = ["tafl"]\n[tables.hparams]\ngammma = [1.0]\n', "no method has a hyper-parameter 'gammma'"),
        ('[[tables]]\nmethods = ["tafl"]\ncolour = 1\n', "unknown keys"),
        ('[[tables]\n', "invalid TOML"),
        ('description = "no tables"\n', "at least one"),
        ('[[tables]]\nmethods = ["maml"]\n[tables.method_hparams.maml]\ngamma = 1.0\n', "no hyper-parameter 'gamma'"),
    ],
)
def test_bad_grids(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        grid, data = load_grid(str(path))
        expand(grid, data, SMOKE, dataset="omniglot", seed=0)


def test_unknown_grid_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: .*paper-tables"):
        load_grid("papertables")


def test_omniglot_trials_get_the_papers_omniglot_defaults_and_user_values_win() -> None:
    from advmeta.learners import get_learner
    from advmeta.hparams import dataset_defaults
    from advmeta.learners.aq import train_attack_spec

    assert dataset_defaults(get_learner("maml").Config, "miniimagenet") == {}
    omni = dataset_defaults(get_learner("tafl").Config, "omniglot")
    assert omni["inner_lr"] == 0.4 and omni["inner_steps"] == 1 and omni["train_eps"] == "16/255"
    assert "train_eps" not in dataset_defaults(get_learner("rmaml-out").Config, "omniglot")
    from advmeta.hparams import HParams

    hp = HParams.on_dataset(get_learner("tafl").Config, "omniglot", {"train_eps": "32/255", "inner_lr": 0.1})
    assert hp["train_eps"] == "32/255" and hp["inner_lr"] == 0.1 and hp["test_inner_steps"] == 3
    cfg = hp.config
    assert train_attack_spec(cfg).params["step_size"] == "32/255"  # one step of ε by default


def test_budget_for_dataset_applies_only_that_datasets_fields() -> None:
    from dataclasses import replace

    quick = get_budget("quick")
    b = replace(quick, by_dataset=(("miniimagenet", (("image_size", 42), ("iterations", 1000))),))
    mini = b.for_dataset("miniimagenet")
    assert (mini.image_size, mini.iterations, mini.by_dataset) == (42, 1000, ())
    assert b.for_dataset("omniglot") == replace(quick, by_dataset=())
    assert get_budget("quick", "omniglot").iterations == quick.iterations


def test_the_budget_sets_autoattack_and_a_grid_eval_overrides_it() -> None:
    """Quick runs AutoAttack's APGD part with the budget's steps, paper its own 100 APGD
    iterations; a grid's `attack_params` wins; the settings reach the evaluation protocol."""
    from advmeta.plan.epsplan import TableEps
    from advmeta.families.meta import protocols
    from advmeta.families import RunContext

    grid, data = load_grid("paper-tables")
    eps = {t: TableEps(("32/255",), "calibrated") for t in ("adml", "tafl", "rmaml", "adaptive", "l2l")}

    def autoattack(budget: str, grid_data: dict) -> dict:  # type: ignore[type-arg]
        specs = expand(grid, grid_data, get_budget(budget), dataset="omniglot", seed=0, table_eps=eps)
        maml = next(s for s in specs if s.method == "maml" and s.train["k_shot"] == 1)
        (protocol,) = [p for p in protocols(maml, RunContext(sweep_dir="x")) if "autoattack" in p.attacks]
        return protocol.params_of("autoattack")

    quick = autoattack("quick", data)
    assert quick["components"] == ["apgd-ce", "apgd-t"] and quick["steps"] == 10 and quick["n_queries"] == 1000
    assert autoattack("paper", data)["steps"] == 100 and "components" not in autoattack("paper", data)
    import copy

    own = copy.deepcopy(data)
    table = next(t for t in own["tables"] if t["name"] == "adaptive")
    table["evals"][0]["attack_params"] = {"autoattack": {"components": ["apgd-ce", "square"], "n_queries": 50}}
    assert autoattack("quick", own) == {**quick, "components": ["apgd-ce", "square"], "n_queries": 50}


@pytest.mark.parametrize(("params", "message"), [
    ({"pgd": {"steps": 3}}, "not one of this eval's attacks"),
    ({"autoattack": {"stepz": 3}}, "unknown setting"),
    ({"autoattack": {"components": ["banana"]}}, "components must be some of"),
    ({"autoattack": {"steps": 0}}, "steps must be an integer"),
    ({"autoattack": 3}, "must be a table"),
])
def test_bad_attack_params_in_a_grid_are_config_errors(params: dict, message: str) -> None:  # type: ignore[type-arg]
    from advmeta.plan.validate import check_eval

    with pytest.raises(ConfigError, match=message):
        check_eval({"scenario": "whitebox", "attacks": ["autoattack"], "eps": ["8/255"], "attack_params": params}, "t")


def test_every_learners_dataset_defaults_name_its_own_fields_and_known_datasets() -> None:
    """A learner's per-dataset defaults sit in its Config (``DATASET_DEFAULTS``); a misspelt field or
    dataset there would be silently ignored, so every entry of every learner is checked here."""
    import dataclasses

    from advmeta.data import dataset_names
    from advmeta.learners import get_learner, learner_names

    declared = {}
    for method in learner_names():
        for klass in get_learner(method).Config.__mro__:
            if "DATASET_DEFAULTS" in vars(klass):
                declared[klass] = vars(klass)["DATASET_DEFAULTS"]
    assert len(declared) >= 3  # MAML's, ADML's and AQ's
    for klass, by_dataset in declared.items():
        fields = {f.name for f in dataclasses.fields(klass)}
        for dataset, values in by_dataset.items():
            assert dataset in dataset_names(), (klass.__name__, dataset)
            assert set(values) <= fields, (klass.__name__, set(values) - fields)


def test_a_misspelt_training_setting_is_an_error_naming_the_table() -> None:
    from advmeta.errors import ConfigError
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.grids import expand

    grid = {"tables": [{"name": "t", "methods": ["maml"], "k_shot": [1], "train": {"iteratons": 5}}]}
    with pytest.raises(ConfigError, match="grid g, table 't': unknown training setting.*iteratons"):
        expand("g", grid, get_budget("smoke"), dataset="glyphs", seed=0)
    good = {"tables": [{"name": "t", "methods": ["maml"], "k_shot": [1], "train": {"iterations": 5}}]}
    assert [s.train.iterations for s in expand("g", good, get_budget("smoke"), dataset="glyphs", seed=0)] == [5]


def test_a_misspelt_evaluation_setting_is_an_error_naming_the_table() -> None:
    from advmeta.plan.trial import EvalSettings

    grid = {"tables": [{"name": "t", "methods": ["maml"], "k_shot": [1],
                        "evals": [{"scenario": "whitebox", "atacks": ["pgd"], "eps": ["8/255"]}]}]}
    with pytest.raises(ConfigError, match="grid g, table 't': unknown evaluation setting.*atacks"):
        expand("g", grid, get_budget("smoke"), dataset="glyphs", seed=0)
    grid["tables"][0]["evals"][0] = {"scenario": "whitebox", "attacks": ["pgd"], "eps": ["8/255"]}
    ev = expand("g", grid, get_budget("smoke"), dataset="glyphs", seed=0)[0].evals[0]
    assert isinstance(ev, EvalSettings) and ev.attacks == ["pgd"] and list(map(str, ev["eps"])) == ["8/255"]
