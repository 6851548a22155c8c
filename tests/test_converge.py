"""Attacks run to convergence (advmeta.converge): a normally trained model converges below the cap,
a model whose accuracy keeps falling is reported not converged; the extra rounds attack only the
episodes with a query left and give what attacking every episode gives."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advmeta.attacks import AttackSpec, flatten_tasks, per_task, task_generators
from advmeta.converge import Escalation, escalate, escalate_attack, worst_of

from tests.test_attacks_strength import synthetic_and_net

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def episodes_and_net() -> tuple[Tensor, Tensor, nn.Module]:
    x, y, net = synthetic_and_net(110)
    return x[250:550].view(4, 75, 3, 12, 12), y[250:550].view(4, 75), net


def gens(tag: str, live: Tensor) -> list[torch.Generator]:
    """One generator per episode, by the episode's own index (as the evaluation draws them)."""
    return [task_generators(1000 + len(tag), 4)[int(i)] for i in live]


def run(spec: AttackSpec, fn, qx: Tensor, qy: Tensor, cap: int = 8) -> tuple[Tensor, Escalation, float]:
    x_adv = spec(fn, qx, qy, task_generators(0, qx.shape[0]))
    with torch.no_grad():
        ok = fn(x_adv).argmax(-1) == qy
    out, esc = escalate_attack(spec, fn, qx, qy, ok, gens, tol=1.0, cap=cap)
    return out, esc, float(ok.double().mean() * 100)


def test_a_normally_trained_model_converges_below_the_cap(episodes_and_net) -> None:
    qx, qy, net = episodes_and_net
    spec = AttackSpec("pgd", "8/255", {"steps": 10, "step_size": "auto", "random_start": True})
    ok, esc, first = run(spec, flatten_tasks(net), qx, qy)
    assert esc.converged is True and esc.iterations is not None and esc.iterations < 10 * 8, esc
    assert esc.change < 1.0 and esc.restarts == 1 + esc.iterations.bit_length() - 10 .bit_length()
    assert float(ok.double().mean() * 100) <= first  # a worst case never raises the accuracy


def test_an_attack_still_gaining_at_the_cap_is_not_converged(episodes_and_net) -> None:
    """PGD with a step far too small for ε: every doubling of its iterations takes more queries."""
    qx, qy, net = episodes_and_net
    spec = AttackSpec("pgd", "8/255", {"steps": 10, "step_size": 0.0005, "random_start": False})
    ok, esc, first = run(spec, flatten_tasks(net), qx, qy)
    assert esc == Escalation(80, 0, False, esc.change) and esc.change >= 1.0, esc
    assert float(ok.double().mean() * 100) < first - 10
    # cap 1: nothing escalated, nothing claimed about convergence
    _, none, _ = run(spec, flatten_tasks(net), qx, qy, cap=1)
    assert none.converged is None and none.iterations == 10


def test_rounds_attack_only_the_surviving_episodes_and_agree_with_attacking_all(episodes_and_net) -> None:
    qx, qy, net = episodes_and_net
    spec = AttackSpec("pgd", "8/255", {"steps": 2, "step_size": "1/255", "random_start": True})
    seen: list[int] = []

    def task(t: int, xt: Tensor) -> Tensor:
        seen.append(t)
        return net(xt)

    batched = per_task(task)
    x_adv = spec(batched, qx, qy, task_generators(0, 4))
    with torch.no_grad():
        ok = batched(x_adv).argmax(-1) == qy
    ok[1] = False  # episode 1 has no query left: the rounds must not attack it
    seen.clear()
    by_subset, esc = escalate_attack(spec, batched, qx, qy, ok, gens, tol=1.0, cap=4)
    assert 1 not in seen and seen, "an episode without a surviving query was attacked again"
    plain = flatten_tasks(net)  # no per-task function: every episode is attacked in each round
    by_all, esc_all = escalate_attack(spec, plain, qx, qy, ok, gens, tol=1.0, cap=4)
    assert torch.equal(by_subset, by_all) and esc == esc_all


def test_attacks_without_iterations_are_not_escalated_and_worst_of_combines() -> None:
    fn = flatten_tasks(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)))
    x, y = torch.rand(2, 5, 3, 2, 2), torch.zeros(2, 5, dtype=torch.long)
    ok = torch.ones(2, 5, dtype=torch.bool)
    out, esc = escalate_attack(AttackSpec("fgsm", "8/255"), fn, x, y, ok, gens, 1.0, 8)
    assert out is ok and esc.converged is None and esc.iterations is None
    runs = [esc, Escalation(40, 3, True, 0.2), Escalation(20, 2, False, 3.0)]
    assert worst_of(runs) == Escalation(40, 3, False, 3.0)
    assert worst_of(runs[:2]).converged is True and worst_of([esc]).converged is None


def test_escalate_stops_when_no_episode_has_a_query_left() -> None:
    calls: list[int] = []

    def round_(steps: int, r: int, live: Tensor) -> Tensor:
        calls.append(steps)
        return torch.zeros(len(live), 3, dtype=torch.bool)

    ok = torch.tensor([[True, False, False], [False, False, False]])
    out, esc = escalate(round_, 10, True, ok, tol=0.1, cap=8)
    assert calls == [20] and not out.any() and esc == Escalation(40 // 2, 2, True, 0.0)


def test_the_claims_scope_escalates_only_the_attacks_a_claim_reads() -> None:
    """quick's ``converge_scope = "claims"``: MAML's, AQ's and TAFL's TAFL-table attacks (their
    worst case is the claims' robust accuracy), R-MAML-out's PGD-10; nothing of ADML (its claims read
    the surrogate table) nor of a single-attack evaluation's ``worst`` (it writes no worst row)."""
    from advmeta.claims import claimed_attacks
    from advmeta.protocol import EvalProtocol
    from advmeta.checks import CheckSettings

    table = ["pgd", "mifgsm", "cw-linf"]
    for method in ("maml", "aq", "tafl"):
        assert claimed_attacks(method, table) == tuple(table)
    assert claimed_attacks("adml", table) == ()
    assert claimed_attacks("rmaml-out", ["pgd"]) == ("pgd",) and claimed_attacks("rmaml-both", ["pgd"]) == ()
    assert claimed_attacks("maml", ["autoattack"]) == ()
    p = EvalProtocol(checks=CheckSettings(converge_cap=8), escalate_only=("pgd",))
    assert p.escalation("pgd") == (1.0, 8) and p.escalation("mifgsm") == (0.0, 1) and p.escalation("support") == (0.0, 1)
    assert EvalProtocol(checks=CheckSettings()).escalation("mifgsm") == (1.0, 8)  # scope all: every attack
    with pytest.raises(Exception, match="converge_scope"):
        CheckSettings(converge_scope="some")


def test_a_quick_sweep_plans_the_scope_per_trial() -> None:
    """The protocols a quick paper-tables trial runs name the attacks it escalates; an outside
    model's evaluation (advmeta evaluate-model) escalates every attack."""
    from advmeta.plan.budgets import get_budget
    from advmeta.plan.epsplan import TableEps
    from advmeta.plan.evaluation import budget_protocol
    from advmeta.families import RunContext
    from advmeta.families.meta import protocols
    from advmeta.plan.grids import expand, load_grid

    name, data = load_grid("paper-tables")
    eps = {t: TableEps(("32/255",), "calibrated") for t in ("adml", "tafl", "rmaml", "adaptive", "l2l")}
    specs = expand(name, data, get_budget("quick"), dataset="glyphs", seed=0, table_eps=eps)
    ctx = RunContext(sweep_dir="")
    scoped = {s.method: [p.escalate_only for p in protocols(s, ctx) if "whitebox" in p.scenarios] for s in specs
              if s.family == "meta"}
    assert scoped["tafl"] == [("pgd", "mifgsm", "cw-linf"), ()] and scoped["adml"] == [(), ()]
    assert scoped["rmaml-trades"] == [("pgd",)] and scoped["protonet"] == [()]
    paper = expand(name, data, get_budget("paper"), dataset="glyphs", seed=0, table_eps=eps)
    assert all(p.escalate_only is None for s in paper if s.family == "meta" for p in protocols(s, ctx))
    p, _ = budget_protocol("quick", "glyphs", ["8/255"], n_way=5, k_shot=1)
    assert p.escalate_only is None
