"""Evaluation: the result schema, the fixed episode bank, the worst case, L_AR and the bank hook."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from advmeta.checks import CheckSettings
from advmeta.evaluate import evaluate, mix_support
from advmeta.protocol import EvalProtocol
from advmeta.results import SUMMARY_COLUMNS, to_frame
from advmeta.train import TrainConfig, train

FAST = dict(n_episodes=6, chunk=3, q_query=2, finetune_steps=1, device="cpu",
            checks=CheckSettings(episodes=4, converge_cap=2, square_queries=30))  # one round of escalation


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    cfg = TrainConfig(method="maml", hparams={"inner_lr": 0.4, "inner_steps": 1, "test_inner_steps": 1},
                      dataset="glyphs", n_way=3, q_query=2, meta_batch=2, width=8, iterations=2, val_episodes=2,
                      device="cpu", cache_dir=str(out / "cache"), surrogate_steps=3)
    return train(cfg, out / "run", progress=False)[0]


def test_rows_fill_the_schema(ckpt: Path) -> None:
    rows, eps_rows, _ = evaluate(ckpt, EvalProtocol(attacks=("pgd", "fgsm"), eps=("8/255", "16/255"),
                                                 attack_params={"pgd": {"steps": 3}}, **FAST), progress=False)
    frame = to_frame(rows)
    to_frame(eps_rows, "episodes")
    filled = {"method", "hparams", "dataset", "split", "image_size", "n_way", "k_shot", "q_query", "n_episodes",
              "seed", "bn_mode", "first_order", "train_iterations", "train_eps", "train_eps_str", "scenario",
              "support", "query", "attack", "attack_params", "eps", "eps_str", "finetune_step", "acc", "acc_ci95",
              "loss", "train_seconds", "eval_seconds", "advmeta_version", "torch_version", "python_version",
              "device", "created_at", "status"}
    assert filled <= {c.name for c in SUMMARY_COLUMNS}
    assert not frame[sorted(filled)].isna().any().any()
    assert "hp_inner_lr" in frame.columns
    wb = frame[frame.scenario == "whitebox"]
    assert set(wb.attack) == {"none", "pgd", "fgsm", "worst"}
    assert set(wb[wb.attack == "pgd"].eps_str) == {"8/255", "16/255"}
    assert '"steps": 3' in wb[wb.attack == "pgd"].attack_params.iloc[0]
    ft = frame[frame.scenario == "finetune"]
    assert sorted(ft.finetune_step) == [0, 1] and (ft.n_episodes == 6).all()


def test_worst_case_and_l_ar(ckpt: Path) -> None:
    proto = EvalProtocol(attacks=("pgd", "fgsm"), eps=("32/255",), attack_params={"pgd": {"steps": 3}}, **FAST)
    _, eps_rows, _ = evaluate(ckpt, proto, progress=False)
    ep = pd.DataFrame(eps_rows)
    wb = ep[(ep.scenario == "whitebox") & (ep.attack != "none")].pivot(index="episode_index", columns="attack",
                                                                       values="acc")
    assert (wb["worst"] <= wb[["pgd", "fgsm"]].min(axis=1) + 1e-9).all()
    lar = ep[(ep.scenario == "whitebox") & (ep.attack == "pgd")].l_ar
    assert lar.notna().all() and (lar >= 1e-3 - 1e-12).all()


def test_same_seed_same_episodes(ckpt: Path) -> None:
    proto = EvalProtocol(scenarios=("finetune",), **FAST)
    a, _, _ = evaluate(ckpt, proto, progress=False)
    b, _, _ = evaluate(ckpt, dataclasses.replace(proto, chunk=4), progress=False)
    c, _, _ = evaluate(ckpt, dataclasses.replace(proto, seed=123), progress=False)
    assert [r["acc"] for r in a] == [r["acc"] for r in b]
    assert [r["acc"] for r in a] != [r["acc"] for r in c]


def test_bank_hook_supplies_the_surrogate_episodes(ckpt: Path) -> None:
    calls = []

    def bank(indices, eps):  # noqa: ANN001, ANN202
        from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot

        calls.append((list(indices), eps))
        ds = load_fewshot("glyphs")
        ep = EpisodeSampler(ds, "test", EpisodeSpec(3, 1, 2), seed=0).sample(indices)
        return ep, ep  # an "attack" that changes nothing

    proto = EvalProtocol(scenarios=("surrogate",), surrogate_eps=("2/255",), **FAST)
    rows, _, _ = evaluate(ckpt, proto, progress=False, bank=bank)
    assert calls and calls[0] == ([0, 1, 2], 2 / 255)
    acc = {(r["support"], r["query"], r["finetune_step"]): r["acc"] for r in rows}
    assert acc[("clean", "clean", 1)] == acc[("adv", "adv", 1)] == acc[("clean", "adv", 1)]


def test_mix_support_replaces_40_percent_of_each_class() -> None:
    y = torch.arange(3).repeat_interleave(5)[None]
    clean, adv = torch.zeros(1, 15, 1, 2, 2), torch.ones(1, 15, 1, 2, 2)
    mixed = mix_support(clean, adv, y, 2)
    per_class = mixed[0, :, 0, 0, 0].view(3, 5)
    assert per_class.sum(1).tolist() == [2.0, 2.0, 2.0]
    assert per_class[:, -2:].eq(1).all()


def test_nan_at_evaluation_is_an_error_not_a_number() -> None:
    """NaN logits (e.g. a diverging fine-tune) raise instead of becoming an accuracy of 20 %."""
    import pytest
    import torch

    from advmeta.errors import NonFiniteLossError
    from advmeta.evaluate import _Acc, query_scores

    logits = torch.zeros(2, 3, 5)
    logits[1, 0, 0] = float("nan")
    ok, ce = query_scores(logits, torch.zeros(2, 3, dtype=torch.long))
    acc = _Acc()
    with pytest.raises(NonFiniteLossError, match="non-finite loss on 1 of 6 queries"):
        acc.add(("whitebox", "clean", "adv", "pgd", "8/255", 3), ok, ce, torch.arange(2), "{}", 8 / 255)
    assert not acc.acc  # nothing recorded
    finite = query_scores(torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long))
    acc.add(("finetune", "clean", "clean", "none", "0/255", 0), *finite, torch.arange(2), "{}", 0.0)
    assert acc.acc[("finetune", "clean", "clean", "none", "0/255", 0)] == [100.0, 100.0]


def test_attacks_through_adaptation_are_rows(ckpt: Path) -> None:
    """``support`` and ``support+query`` rows: PGD through the fine-tuning, same episodes as the rest."""
    proto = EvalProtocol(scenarios=("finetune", "whitebox", "support", "support+query"), attacks=("pgd",),
                         eps=("32/255",), attack_params={"pgd": {"steps": 3}}, **FAST)
    rows, eps_rows, _ = evaluate(ckpt, proto, progress=False)
    frame = to_frame(rows)
    sup = frame[frame.scenario == "support"].iloc[0]
    both = frame[frame.scenario == "support+query"].iloc[0]
    assert (sup.support, sup.query, sup.attack, sup.eps_str) == ("adv", "clean", "pgd", "32/255")
    assert (both.support, both.query) == ("adv", "adv")
    assert '"through": "adaptation"' in sup.attack_params and '"steps": 3' in sup.attack_params
    assert sup.finetune_step == both.finetune_step == 1 and sup.n_episodes == 6
    ep = pd.DataFrame(eps_rows)
    assert sorted(ep[ep.scenario == "support"].episode_index) == list(range(6))
    again, _, _ = evaluate(ckpt, proto, progress=False)
    assert [r["acc"] for r in rows] == [r["acc"] for r in again]  # seeded


def test_masking_checks_come_with_the_whitebox_evaluation(ckpt: Path) -> None:
    """Every white-box evaluation yields one row per check at its first ε, on the first episodes;
    the transfer check runs where the trial's surrogate attacks at that ε."""
    from advmeta.checks import CHECKS
    from advmeta.results import CHECK_COLUMNS

    proto = EvalProtocol(scenarios=("finetune", "whitebox", "surrogate"), attacks=("pgd", "fgsm"),
                         eps=("32/255", "8/255"), surrogate_eps=("32/255",), surrogate_supports=("clean",),
                         attack_params={"pgd": {"steps": 3}}, **FAST)
    ev = evaluate(ckpt, proto, progress=False)
    frame = to_frame(ev.checks, "checks")
    assert list(frame.columns) == [c.name for c in CHECK_COLUMNS]
    assert list(frame.check) == list(CHECKS)
    assert (frame.eps_str == "32/255").all()
    # 4 of 6, across two chunks; `converged` reads the escalation of every evaluated episode
    assert (frame.n_episodes == frame.check.map(lambda c: 6 if c == "converged" else 4)).all()
    assert frame.passed.notna().all() and frame.value.notna().all()
    assert (frame.loc[frame.check == "large-eps-chance", "detail"].str.contains("128/255")).all()
    assert frame.loc[frame.check == "deterministic", "detail"].str.contains("transductive").all()  # bn_mode batch
    again = evaluate(ckpt, proto, progress=False).checks
    assert [r["value"] for r in again] == list(frame.value)  # seeded
    off = evaluate(ckpt, dataclasses.replace(proto, checks=None), progress=False)
    # without checks nothing is escalated: the same clean rows, attacked rows no lower than escalated ones
    assert off.checks == [] and [r["attack"] for r in off.rows] == [r["attack"] for r in ev.rows]
    for plain, escalated in zip(off.rows, ev.rows):
        assert plain["acc"] >= escalated["acc"] and (plain["attack"] != "none" or plain["acc"] == escalated["acc"])
        assert plain["converged"] is None
    pgd = next(r for r in ev.rows if r["attack"] == "pgd" and r["eps_str"] == "32/255")
    assert pgd["attack_iterations"] >= 3 and pgd["converged"] is not None
    no_sur = evaluate(ckpt, dataclasses.replace(proto, scenarios=("whitebox",)), progress=False).checks
    transfer = next(r for r in no_sur if r["check"] == "transfer-not-better")
    assert transfer["passed"] is None and "no surrogate attack at this ε" in transfer["detail"]
