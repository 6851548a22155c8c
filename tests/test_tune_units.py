"""Units of the runner without a Ray cluster: resources, ledger, trial ids, search spaces, report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from advmeta.errors import ConfigError, ResourceError
from advmeta.plan.space import ValueRange
from advmeta.results import to_frame
from advmeta.plan.budgets import get_budget
from advmeta.ledger import Ledger, error_row
from advmeta.tune.session import resolve_resources
from advmeta.plan.space import parse_overrides, tune_trials
from advmeta.plan.trial import TrialSpec


def test_resources_default_to_the_cluster() -> None:
    r = resolve_resources(None, None, {"CPU": 2.0})
    assert (r.cpus_per_trial, r.gpus_per_trial, r.max_concurrent) == (1.0, 0.0, 2)
    g = resolve_resources(None, None, {"CPU": 16.0, "GPU": 1.0})
    assert g.gpus_per_trial == 1.0 and g.max_concurrent == 1
    q = resolve_resources(2, 0.25, {"CPU": 16.0, "GPU": 1.0})
    assert q.max_concurrent == 4 and q.as_tune() == {"cpu": 2, "gpu": 0.25}


@pytest.mark.parametrize(("cpus", "gpus", "cluster", "error", "match"), [
    (1, 0.5, {"CPU": 2.0}, ResourceError, "no GPU"),
    (1, 2, {"CPU": 2.0, "GPU": 1.0}, ResourceError, "exceeds the cluster's 1 GPUs"),
    (4, 0, {"CPU": 2.0}, ResourceError, "exceeds the cluster's 2 CPUs"),
    (-1, 0, {"CPU": 2.0}, ConfigError, ">= 0"),
    (0, 0, {"CPU": 2.0}, ConfigError, "needs some resources"),
])
def test_impossible_resources_fail_fast(cpus: float, gpus: float, cluster: dict[str, float],
                                        error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        resolve_resources(cpus, gpus, cluster)


def _spec(**hp: object) -> TrialSpec:
    return TrialSpec("s", "toy", "toy", dict(hp), {"seed": 0, "iterations": 3}, ({"scenario": "whitebox"},), "smoke")


def test_trial_id_is_stable_and_ignores_sweep_name() -> None:
    a = _spec(gamma=1.0, k=2.0)
    b = TrialSpec("other", "toy", "toy", {"k": 2.0, "gamma": 1.0}, {"iterations": 3, "seed": 0},
                  ({"scenario": "whitebox"},), "smoke")
    assert a.trial_id == b.trial_id == TrialSpec.from_dict(a.to_dict()).trial_id
    assert a.trial_id != _spec(gamma=1.5, k=2.0).trial_id


def test_ledger_records_done_and_errors(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    ok, bad = _spec(gamma=1.0), _spec(gamma=2.0)
    assert ledger.status_of(ok.trial_id) == "pending"
    row = {"sweep": "s", "trial_id": ok.trial_id, "status": "ok", "error": "", "method": "toy", "acc": 50.0}
    ledger.write_result(ok, [row], [], {"val_acc": 1.0})
    ledger.write_error(bad, "RuntimeError: boom")
    assert (ledger.status_of(ok.trial_id), ledger.status_of(bad.trial_id)) == ("ok", "error")
    summary, episodes = ledger.merge([ok, bad, ok])
    assert list(summary["status"]) == ["ok", "error"] and summary["error"].iloc[1] == "RuntimeError: boom"
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries
    ledger.write_result(bad, [{**row, "trial_id": bad.trial_id}], [], {})
    assert ledger.status_of(bad.trial_id) == "ok" and ledger.error_of(bad.trial_id) is None


def test_error_row_fits_the_schema() -> None:
    frame = to_frame([error_row(_spec(gamma=1.0), "ValueError: x")], "summary")
    assert frame["status"].iloc[0] == "error" and pd.isna(frame["acc"].iloc[0])


def test_tune_overrides_any_field_and_rejects_unknown() -> None:
    parsed = parse_overrides("tafl", ["--gamma", "0:5", "--k=0.1,1,10", "--first-order", "true,false",
                                      "--eps", "2/255:4/255:2/255"])
    assert isinstance(parsed["gamma"], ValueRange) and parsed["k"] == [0.1, 1.0, 10.0]
    assert parsed["first_order"] == [True, False] and "train_eps" in parsed
    specs = tune_trials("tafl", parsed, get_budget("smoke"), dataset="glyphs", seed=0)
    assert len(specs) == 6 * 3 * 2 * 2
    assert list(map(str, specs[0].evals[0]["eps"])) == ["2/255", "4/255"]  # evaluated at every training ε tried
    # a step size is typed EpsStep: searching it is not a reason to test there (PGM's --eps is its budget)
    steps = tune_trials("pgm", parse_overrides("pgm", ["--pgd-step-size", "1/255,2/255"]), get_budget("smoke"),
                        dataset="glyphs", seed=0)
    assert len(steps) == 2 and list(map(str, steps[0].evals[0]["eps"])) == ["8/255"]
    budgets = tune_trials("pgm", parse_overrides("pgm", ["--eps", "4/255"]), get_budget("smoke"), dataset="glyphs", seed=0)
    assert budgets[0].hparams["eps"] == "4/255" and list(map(str, budgets[0].evals[0]["eps"])) == ["4/255"]
    with pytest.raises(ConfigError, match="no hyper-parameter --colour"):
        parse_overrides("tafl", ["--colour", "1"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_overrides("tafl", ["--gamma", "1", "--gamma", "2"])


def test_report_tables_mark_the_best(tmp_path: Path) -> None:
    from advmeta.report import tables, to_latex, to_markdown, write_report

    rows = []
    for method, clean, adv in (("maml", 60.0, 5.0), ("adml", 55.0, 40.0)):
        for attack, acc in (("none", clean), ("pgd", adv)):
            rows.append({"sweep": "s", "trial_id": method, "status": "ok", "error": "", "method": method,
                         "hparams": "{}", "scenario": "whitebox", "support": "clean",
                         "query": "clean" if attack == "none" else "adv", "attack": attack,
                         "attack_params": '{"steps": 20}' if attack == "pgd" else "{}", "eps": 2 / 255,
                         "eps_str": "2/255", "finetune_step": 10, "acc": acc, "acc_ci95": 1.5, "k_shot": 1})
    frame = to_frame(rows, "summary")
    (table,) = tables(frame)
    md = to_markdown(table)
    assert "| maml | **60.00 ± 1.50** | 5.00 ± 1.50 |" in md
    assert "| adml | 55.00 ± 1.50 | **40.00 ± 1.50** |" in md
    assert "\\textbf{40.00} $\\pm$ 1.50" in to_latex(table)
    frame.to_parquet(tmp_path / "summary.parquet")
    paths = write_report(tmp_path)
    tables_part = paths["markdown"].read_text().split("## Tables", 1)[1]
    assert tables_part.count("**") == 4
    assert (tmp_path / "report" / "claims.md").is_file() and (tmp_path / "report" / "claims.parquet").is_file()


def test_ledger_on_a_filesystem_uri(tmp_path: Path) -> None:
    ledger = Ledger(f"file://{tmp_path}/sweep")
    spec = _spec(gamma=1.0)
    ledger.write_result(spec, [{"trial_id": spec.trial_id, "method": "toy", "acc": 1.0, "hp_gamma": 1.0}], [], {})
    summary, _ = ledger.merge([spec])
    assert ledger.is_done(spec.trial_id) and len(summary) == 1
    assert pd.read_parquet(tmp_path / "sweep" / "summary.parquet")["hp_gamma"].dtype == "float64"


def test_sweeps_make_small_training_banks_for_adml_only() -> None:
    """ADML / MAML-AD trials ask for a ``train`` bank of their doubled episodes; MAML does not;
    a bank too large to store is left to the trials."""
    from advmeta.bank import TRAIN_BANK_MAX_BYTES, bank_bytes, requirements
    from advmeta.plan.grids import expand

    grid = {"tables": [{"name": "t", "methods": ["maml", "adml", "maml-ad"], "k_shot": [1],
                        "evals": [{"scenario": "whitebox", "attacks": ["fgsm"], "eps": ["2/255"]}]}]}
    budget = get_budget("smoke")
    reqs = requirements(expand("t", grid, budget, dataset="glyphs", seed=0))
    train_reqs = [r for r in reqs if r["split"] == "train"]
    assert len(train_reqs) == 1  # ADML and MAML-AD share the episodes (same shape, seed, ε)
    r = train_reqs[0]
    assert (r["k_shot"], r["q_query"], r["eps"]) == (2, 2 * budget.q_query, ["2/255"])
    assert r["n_episodes"] == budget.iterations * budget.meta_batch
    assert bank_bytes(r, (1, 28, 28)) < TRAIN_BANK_MAX_BYTES
    assert bank_bytes({**r, "n_episodes": 60000 * 32}, (1, 28, 28)) > TRAIN_BANK_MAX_BYTES


def test_cost_estimate_puts_the_longest_trials_first() -> None:
    """LPT order: TAFL (its training and the escalated attacks its claims read: 807 s in the committed
    quick run, the longest) first, Plain Net last; a trained trial only evaluates."""
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.epsplan import TableEps
    from advmeta.plan.grids import expand, load_grid
    from advmeta.plan.estimate import trial_cost as cost_estimate

    grid, data = load_grid("paper-tables")
    eps = {t: TableEps(("32/255",), "calibrated") for t in ("adml", "tafl", "rmaml", "adaptive", "l2l")}
    specs = expand(grid, data, get_budget("quick"), dataset="omniglot", seed=0, table_eps=eps)
    order = [s.method for s in sorted(specs, key=cost_estimate, reverse=True)]
    assert order[0] == "tafl" and order[-1] == "plain"
    maml = next(s for s in specs if s.method == "maml")
    assert cost_estimate(maml, trained=True) < cost_estimate(maml) - 100


def test_report_puts_the_support_attacks_beside_the_query_attack() -> None:
    from advmeta.report import tables, to_markdown

    rows = []
    for method, accs in (("maml", (85.0, 23.0, 47.0, 7.0)), ("aq", (86.0, 53.0, 68.0, 37.0))):
        for (scenario, support, query, attack), acc in zip(
                (("whitebox", "clean", "clean", "none"), ("whitebox", "clean", "adv", "pgd"),
                 ("support", "adv", "clean", "pgd"), ("support+query", "adv", "adv", "pgd")), accs):
            rows.append({"sweep": "s", "trial_id": method, "status": "ok", "error": "", "method": method,
                         "hparams": "{}", "scenario": scenario, "support": support, "query": query,
                         "attack": attack, "attack_params": "{}", "eps": 32 / 255, "eps_str": "32/255",
                         "finetune_step": 3, "acc": acc, "acc_ci95": 1.0, "k_shot": 1})
    ada = [t for t in tables(to_frame(rows, "summary")) if t.title.startswith("Attacks through the adaptation")]
    assert len(ada) == 1
    md = to_markdown(ada[0])
    assert "| row | clean | query pgd 32/255 | support 32/255 | support+query 32/255 |" in md
    assert "| maml | 85.00 ± 1.00 | 23.00 ± 1.00 | 47.00 ± 1.00 | 7.00 ± 1.00 |" in md


def test_the_adaptive_table_pairs_every_column_on_the_support_attacks_episodes() -> None:
    """Query PGD on 4 episodes, the support attack on the first 2: the query column is re-averaged
    over those 2 (per-episode table), so the row compares like with like."""
    import json

    from advmeta.report import tables, to_markdown
    from advmeta.results import mean_ci95

    pgd = json.dumps({"steps": 10})
    base = {"sweep": "s", "trial_id": "m", "status": "ok", "error": "", "method": "maml", "hparams": "{}",
            "eps": 32 / 255, "eps_str": "32/255", "finetune_step": 3, "k_shot": 1}
    evals = {("whitebox", "clean", "clean", "none", "{}"): [80.0, 90.0, 10.0, 20.0],
             ("whitebox", "clean", "adv", "pgd", pgd): [40.0, 60.0, 0.0, 0.0],
             ("support", "adv", "clean", "pgd", pgd): [70.0, 80.0]}
    rows, eps_rows = [], []
    for (scenario, support, query, attack, params), accs in evals.items():
        key = {"scenario": scenario, "support": support, "query": query, "attack": attack, "attack_params": params}
        mean, ci = mean_ci95(accs)
        rows.append({**base, **key, "acc": mean, "acc_ci95": ci, "n_episodes": len(accs)})
        eps_rows += [{"sweep": "s", "trial_id": "m", "method": "maml", "eps_str": "32/255", "finetune_step": 3, **key,
                      "episode_index": i, "acc": a} for i, a in enumerate(accs)]
    summary, episodes = to_frame(rows, "summary"), to_frame(eps_rows, "episodes")
    (ada,) = [t for t in tables(summary, episodes) if t.title.startswith("Attacks through the adaptation")]
    md = to_markdown(ada)
    assert "same 2 episodes" in ada.title
    assert "| row | clean | query pgd-10 32/255 | support-10 32/255 |" in md
    # Student t with 1 degree of freedom (2 episodes): 12.706 · s / √2
    assert "| maml | **85.00 ± 63.53** | **50.00 ± 127.06** | **75.00 ± 63.53** |" in md  # one row: all best


def test_families_outside_the_package_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from advmeta.families import all_methods, family_of, get_family

    assert family_of("toy") == "toy"  # conftest registers the tests' fake family
    monkeypatch.delenv("ADVMETA_FAMILIES")
    assert "toy" not in all_methods() and "maml" in all_methods()
    with pytest.raises(ConfigError, match="unknown method 'toy'"):
        family_of("toy")
    for bad, message in (("toy", "not name=module"), ("meta=tests.toy_family", "built-in"),
                         ("ghost=tests.no_such_module", "cannot import")):
        monkeypatch.setenv("ADVMETA_FAMILIES", bad)
        with pytest.raises(ConfigError, match=message):
            get_family(bad.partition("=")[0]) if "ghost" in bad else all_methods()


def test_an_eps_is_a_type_not_a_name() -> None:
    """The CLI and the grids read a field as an ε (k/255 ranges, ``8/255`` values) because it is typed
    ``Eps``; every ε-looking field of every method's config is typed so (a new one typed ``str`` fails here)."""
    from typing import Any

    from advmeta.eps import Eps, EpsStep
    from advmeta.families import all_methods, config_class
    from advmeta.plan.space import training_eps_field
    from advmeta.hparams import Kind, field_type, typed_fields

    # read from the declared types (typing.get_type_hints), never from the annotation's text
    assert field_type(str).kind is Kind.STR and field_type(Eps | None).optional and field_type(Eps | None).budget
    assert field_type(Eps).budget and not field_type(Eps).step and field_type(EpsStep).step
    assert field_type(tuple[Eps, ...]).kind is Kind.EPS and not field_type(tuple[Eps, ...]).scalar
    assert field_type(float).kind is Kind.FLOAT and field_type(int | None).optional
    assert field_type(int | None).kind is Kind.INT and field_type(bool).kind is Kind.BOOL
    assert field_type(dict[str, Any]).scalar is False
    looks_like_eps = [(m, name, f.type) for m in all_methods() for name, f in typed_fields(config_class(m)).items()
                      if "eps" in name.split("_") or name.endswith("step_size")]
    assert len(looks_like_eps) >= 8
    assert [x for x in looks_like_eps if x[2].kind is not Kind.EPS] == []
    # each method has at most one training budget (``--eps`` and a table's ε set it) and its steps are typed EpsStep
    for m in all_methods():
        fields = typed_fields(config_class(m))
        budgets = [n for n, f in fields.items() if f.type.budget]
        assert len(budgets) <= 1 and training_eps_field(fields) == (budgets[0] if budgets else None), m
        assert all(f.type.step for n, f in fields.items() if n.endswith("step_size")), m


def test_every_family_implements_the_protocol() -> None:
    """A family is one module: every registered one (the tests' toy included) defines every member
    of ``Family``, so the grids, the search space and the runner never branch on a family's name."""
    import inspect

    from advmeta.families import FAMILY_MEMBERS, SCENARIO_MEMBERS, get_family, registered

    assert {"train_settings", "budget_hparams", "search_evals", "train_cost", "run", "methods"} <= set(FAMILY_MEMBERS)
    for name in registered():
        module = get_family(name)
        members = FAMILY_MEMBERS + (SCENARIO_MEMBERS if module.scenarios() else ())
        missing = [m for m in members if not callable(getattr(module, m, None))]
        assert missing == [], f"family {name} lacks {missing}"
        budget = get_budget("smoke")
        train = module.train_settings(budget, module.methods()[0], {"dataset": "glyphs", "n_way": 5, "k_shot": 1})
        assert isinstance(train, dict) and isinstance(module.budget_hparams(budget), dict)
        assert inspect.signature(module.run).parameters.keys() >= {"spec", "ctx", "report"}
    import pathlib

    repo = pathlib.Path(__file__).resolve().parents[1]
    for shared in ("advmeta/plan/grids.py", "advmeta/plan/space.py", "tune/runner.py", "advmeta/plan/budgets.py",
                   "advmeta/plan/sweeps.py"):
        text = (repo / shared).read_text()
        assert not any(f'family == "{f}"' in text or f'family != "{f}"' in text for f in ("meta", "l2l", "gail")), shared


def test_a_trials_training_settings_reach_the_train_config_or_fail() -> None:
    """Every TrainConfig field a grid's ``train`` may set reaches the run (none is dropped by a
    hand-written list), and an unknown one is an error naming it, not a silently ignored key."""
    from advmeta.learners import get_learner
    from advmeta.families import RunContext
    from advmeta.families.meta import train_config

    train = {"dataset": "glyphs", "seed": 3, "budget": "smoke", "iterations": 7, "surrogate_arch": "conv4",
             "bn_mode": "running", "meta_lr": 0.002, "width": 16}
    cfg = train_config(TrialSpec("s", "meta", "aq", {"inner_lr": 0.2}, train), RunContext(sweep_dir=""))
    assert (cfg.iterations, cfg.seed, cfg.bn_mode, cfg.meta_lr, cfg.width) == (7, 3, "running", 0.002, 16)
    assert isinstance(cfg.learner_config, get_learner("aq").Config) and cfg.learner_config.inner_lr == 0.2
    with pytest.raises(ConfigError, match="unknown training setting.*iteratons"):  # a typo: refused when the trial is made
        TrialSpec("s", "meta", "maml", {}, {"iteratons": 5})
    with pytest.raises(ConfigError, match="unknown training setting.*epochs"):  # another family's setting
        train_config(TrialSpec("s", "meta", "maml", {}, {"epochs": 5}), RunContext(sweep_dir=""))


def test_train_settings_are_typed_and_read_as_the_mapping_of_what_is_set() -> None:
    from advmeta.plan.trial import UNSET, TrainSettings

    t = TrainSettings.of({"k_shot": 5, "seed": 1, "image_size": None})
    assert t.k_shot == 5 and t.iterations is UNSET and dict(t) == {"seed": 1, "image_size": None, "k_shot": 5}
    assert t.get("iterations", 7) == 7 and "image_size" in t and "iterations" not in t and len(t) == 3
    spec = TrialSpec("s", "meta", "maml", {}, {"k_shot": 5, "seed": 1})
    assert spec.train.k_shot == 5 and TrialSpec.from_dict(spec.to_dict()) == spec
    # the id hashes what is set: the same as the plain dict it was made from
    assert spec.trial_id == TrialSpec("s", "meta", "maml", {}, TrainSettings(seed=1, k_shot=5)).trial_id


def test_every_trainers_run_settings_are_train_settings() -> None:
    """TrainSettings lists what a trial may set; every family's trainer reads its settings from it, so
    each trainer's settable fields must be there (a new TrainConfig field a grid cannot set fails here)."""
    import dataclasses

    from advmeta.train import RUN_ONLY_FIELDS, TrainConfig
    from advmeta.families import gail as family_gail, l2l as family_l2l
    from advmeta.plan.trial import TrainSettings

    meta = {f.name for f in dataclasses.fields(TrainConfig)} - RUN_ONLY_FIELDS - {"method", "hparams"}
    assert meta | set(family_l2l.TRAIN_KEYS) | {"test_per_class"} | set(family_gail.TRAIN_KEYS) <= TrainSettings.names()


def test_a_trial_spec_travels_whole_and_its_config_is_parsed_once() -> None:
    """Pickled (as Ray moves it to the trial's process) a spec keeps its id, its settings (unset ones
    stay unset) and its parsed Config; the meta family's TrainConfig reuses that Config; an unknown
    hyper-parameter is an error when the spec is made, naming the method."""
    import pickle

    from advmeta.families import RunContext
    from advmeta.families.meta import train_config
    from advmeta.plan.grids import expand, load_grid

    name, data = load_grid("paper-tables")
    specs = expand(name, data, get_budget("smoke", "omniglot"), dataset="omniglot", seed=0)
    assert {s.family for s in specs} >= {"meta", "l2l"}
    for spec in specs:
        back = pickle.loads(pickle.dumps(spec))
        assert back.trial_id == spec.trial_id and dict(back.train) == dict(spec.train)
        assert back.config == spec.config and type(back.config) is type(spec.config)
        assert "n_way" not in back.train or spec.family == "meta"  # UNSET survives: an L2L trial has no episode shape
    tafl = next(s for s in specs if s.method == "tafl")
    cfg = train_config(tafl, RunContext(sweep_dir=""))
    assert cfg.hparams is tafl.hparams and cfg.learner_config is tafl.config
    assert tafl.config.inner_lr == 0.4  # Omniglot's α (the learner's DATASET_DEFAULTS), set on the trial
    with pytest.raises(ConfigError, match="unknown hyper-parameter.*gama.*for tafl"):
        TrialSpec("s", "meta", "tafl", {"gama": 2.0}, {"dataset": "glyphs"})


def test_rays_start_up_log_is_removed_when_ray_starts_and_kept_when_it_fails(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import tempfile

    from advmeta.tune.session import _stderr_to_log

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with open(tmp_path / "stderr", "w") as err:  # a real descriptor 2 (pytest's capture has none)
        monkeypatch.setattr(sys, "stderr", err)
        with _stderr_to_log() as log:
            assert Path(log).parent == tmp_path
        assert not Path(log).exists()  # a started Ray leaves nothing behind (one file per command before)
        with pytest.raises(ConnectionError), _stderr_to_log() as log:
            raise ConnectionError("no cluster")
        assert Path(log).exists()  # named in the error, for the user to read
