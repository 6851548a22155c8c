"""Contract tests run over EVERY registered attack (a new attack is picked up automatically)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from advmeta.attacks import (
    attack_info, attack_names, flatten_tasks, get_attack, task_generator, task_generators, task_model_fn,
)
from advmeta.attacks._core import Norm, sample_norm
from advmeta.errors import ConfigError, NonFiniteLossError
from advmeta.models import build_model

NAMES = attack_names()
EPS = 8 / 255
T, B, C, H = 3, 6, 3, 8


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def fast_kwargs(name: str, **extra: Any) -> dict[str, Any]:
    """Few iterations so the contract runs in seconds; the surrogate for attacks that need one."""
    params = inspect.signature(get_attack(name)).parameters
    kw: dict[str, Any] = {}
    if "steps" in params:
        kw["steps"] = 4
    if "search_steps" in params:
        kw["search_steps"] = 2
    if "n_queries" in params:
        kw["n_queries"] = 30
    if "surrogate_fn" in attack_info(name).requires:
        kw["surrogate_fn"] = flatten_tasks(_surrogate())
    kw.update(extra)
    return kw


def _surrogate() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, 5)).double()


@pytest.fixture(scope="module")
def net() -> nn.Module:
    """A tiny Conv4 with transductive batch norm, as the MAML learners attack it."""
    torch.manual_seed(0)
    return build_model("conv4", in_channels=C, n_classes=5, width=4, image_size=H, depth=2).double()


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(T, B, C, H, H, generator=g, dtype=torch.float64)
    x[0, 0] = 0.0  # saturated images exercise the [0, 1] clipping
    x[0, 1] = 1.0
    y = torch.randint(0, 5, (T, B), generator=g)
    return x, y


@pytest.fixture(scope="module")
def task_params(net: nn.Module) -> dict[str, Tensor]:
    """Per-task fast weights, stacked along a leading task dimension."""
    g = torch.Generator().manual_seed(2)
    return {
        k: v.detach().unsqueeze(0) + 0.3 * torch.randn((T, *v.shape), generator=g, dtype=v.dtype)
        for k, v in net.named_parameters()
    }


def single_fn(net: nn.Module) -> Any:
    return lambda x: net(x)


@pytest.mark.parametrize("name", NAMES)
def test_bound_range_and_input_untouched(name: str, net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    info = attack_info(name)
    for norm in info.norms:
        eps = EPS if norm == "linf" else 0.5
        x_before = x.clone()
        adv = get_attack(name)(single_fn(net), x, y, eps=eps, norm=norm, **fast_kwargs(name))
        assert torch.equal(x, x_before), "the attack modified its input"
        assert adv.shape == x.shape and adv.dtype == x.dtype and not adv.requires_grad
        assert adv.min() >= 0 and adv.max() <= 1
        assert (sample_norm(adv - x, Norm(norm)) <= eps + 1e-6).all()
        if info.skips_misclassified:
            with torch.no_grad():
                right = net(x).argmax(-1) == y
            moved = (adv - x).flatten(1).abs().amax(1) > 0
            assert not moved[~right].any(), "a misclassified input must come back unchanged"
            assert moved[right].all() or not right.any(), "every correctly classified input is attacked"
        elif not info.identity:
            assert (adv - x).abs().max() > 0, "a real attack must perturb something"


def test_unbounded_attacks_run_without_eps(net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    for name in NAMES:
        if attack_info(name).bounded:
            continue
        x, y = data[0][0], data[1][0]
        adv = get_attack(name)(single_fn(net), x, y, **fast_kwargs(name))
        assert adv.min() >= 0 and adv.max() <= 1 and adv.shape == x.shape


@pytest.mark.parametrize("name", NAMES)
def test_eps_zero_is_identity(name: str, net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    adv = get_attack(name)(single_fn(net), x, y, eps=0, **fast_kwargs(name))
    assert torch.equal(adv, x) and adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name: str, net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    run = lambda seed: get_attack(name)(  # noqa: E731
        single_fn(net), x, y, eps=EPS, generator=torch.Generator().manual_seed(seed), **fast_kwargs(name)
    )
    assert torch.equal(run(0), run(0))
    if name == "pgd":  # the random start really comes from the generator
        assert not torch.equal(run(0), run(1))


@pytest.mark.parametrize("name", NAMES)
def test_batched_tasks_equal_per_task_calls(
    name: str, net: nn.Module, data: tuple[Tensor, Tensor], task_params: dict[str, Tensor]
) -> None:
    x, y = data
    attack = get_attack(name)
    batched = attack(
        task_model_fn(net, task_params), x, y, eps=EPS, generator=task_generators(7, T), **fast_kwargs(name)
    )
    for t in range(T):
        fast = {k: v[t] for k, v in task_params.items()}
        alone = attack(
            lambda xt, fast=fast: functional_call(net, fast, (xt,)), x[t], y[t], eps=EPS,
            generator=task_generator(7, t), **fast_kwargs(name),
        )
        torch.testing.assert_close(batched[t], alone, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_invalid_arguments_raise(name: str, net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    attack, params = get_attack(name), inspect.signature(get_attack(name)).parameters
    kw = fast_kwargs(name)
    with pytest.raises(ConfigError, match="epsilon"):
        attack(single_fn(net), x, y, **{**kw, "eps": -0.1})
    with pytest.raises(ConfigError, match="norm"):
        attack(single_fn(net), x, y, **{**kw, "eps": EPS, "norm": "l3"})
    if "steps" in params:
        with pytest.raises(ConfigError, match="steps"):
            attack(single_fn(net), x, y, **{**kw, "eps": EPS, "steps": 0})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        attack(single_fn(net), x * 2 + 0.5, y, **{**kw, "eps": EPS})
    if not attack_info(name).identity:
        with pytest.raises(ConfigError, match="labels"):
            attack(single_fn(net), x, y[:-1], **{**kw, "eps": EPS})


@pytest.mark.parametrize("name", NAMES)
def test_sample_alone_equals_sample_in_batch(name: str, data: tuple[Tensor, Tensor]) -> None:
    """Without batch coupling in the model, per-sample decisions make batching invisible."""
    params = inspect.signature(get_attack(name)).parameters
    if attack_info(name).stochastic and "random_start" not in params:
        pytest.skip("random start without a switch: noise depends on the batch layout")
    kw = fast_kwargs(name, **({"random_start": False} if "random_start" in params else {}))
    model = flatten_tasks(_surrogate())
    x, y = data[0][0], data[1][0]
    whole = get_attack(name)(model, x, y, eps=EPS, **kw)
    for i in (0, 3):
        one = get_attack(name)(model, x[i : i + 1], y[i : i + 1], eps=EPS, **kw)
        torch.testing.assert_close(whole[i : i + 1], one, atol=1e-12, rtol=0)


def test_no_grad_callers_and_parameter_grads_untouched(net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    with torch.no_grad():
        adv = get_attack("pgd")(single_fn(net), x, y, eps=EPS, steps=2)
    assert (adv - x).abs().max() > 0
    assert all(p.grad is None for p in net.parameters())


def test_vmap_model_fn_matches_loop(net: nn.Module, data: tuple[Tensor, Tensor], task_params: dict[str, Tensor]) -> None:
    x, y = data
    loop = task_model_fn(net, task_params)
    vmapped = task_model_fn(net, task_params, use_vmap=True)
    torch.testing.assert_close(vmapped(x), loop(x))
    kw = dict(eps=EPS, steps=3, step_size=EPS / 2, random_start=False)
    a, b = get_attack("pgd")(loop, x, y, **kw), get_attack("pgd")(vmapped, x, y, **kw)
    assert (a - b).abs().max() <= 1e-9 or (a != b).double().mean() < 0.01  # sign ties only


def test_list_of_task_params_equals_stacked(net: nn.Module, data: tuple[Tensor, Tensor], task_params: dict[str, Tensor]) -> None:
    x, _ = data
    per = [{k: v[t] for k, v in task_params.items()} for t in range(T)]
    torch.testing.assert_close(task_model_fn(net, per)(x), task_model_fn(net, task_params)(x))


def test_registry_errors_and_metadata() -> None:
    with pytest.raises(ConfigError, match="known: .*pgd"):
        get_attack("no-such-attack")
    assert {"fgsm", "fgsm-rs", "pgd", "mifgsm", "cw-l2", "cw-linf", "apgd-ce", "apgd-dlr", "transfer"} <= set(NAMES)
    assert not attack_info("cw-l2").bounded and attack_info("pgd").bounded
    assert attack_info("apgd-dlr").min_classes == 3


def test_eps_strings_and_step_sizes(net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0][0], data[1][0]
    a = get_attack("pgd")(single_fn(net), x, y, eps="8/255", step_size="2/255", steps=2, random_start=False)
    b = get_attack("pgd")(single_fn(net), x, y, eps=8 / 255, step_size=2 / 255, steps=2, random_start=False)
    assert torch.equal(a, b)


def test_apgd_dlr_class_requirements(data: tuple[Tensor, Tensor]) -> None:
    x = data[0][0]
    two = nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, 2)).double()
    with pytest.raises(ConfigError, match="3 classes"):
        get_attack("apgd-dlr")(two, x, torch.zeros(B, dtype=torch.long), eps=EPS, steps=2)
    three = nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, 3)).double()
    with pytest.raises(ConfigError, match="4 classes"):
        get_attack("apgd-dlr")(three, x, torch.zeros(B, dtype=torch.long), eps=EPS, steps=2, targeted=True)
    adv = get_attack("apgd-dlr")(three, x, torch.zeros(B, dtype=torch.long), eps=EPS, steps=2)  # untargeted
    assert adv.shape == x.shape


def test_trades_kl_loss_needs_no_labels(net: nn.Module, data: tuple[Tensor, Tensor]) -> None:
    x = data[0][0]
    adv = get_attack("fgsm-rs")(single_fn(net), x, None, eps=EPS, loss="kl", generator=torch.Generator().manual_seed(0))
    assert (sample_norm(adv - x, Norm.LINF) <= EPS + 1e-6).all()
    with pytest.raises(ConfigError, match="loss"):
        get_attack("pgd")(single_fn(net), x, data[1][0], eps=EPS, loss="hinge")


@pytest.mark.parametrize("name", attack_names())
def test_declared_test_settings_are_accepted(name: str) -> None:
    """An attack's own declaration drives the evaluation: its test defaults are arguments it
    takes, and an iterative one takes the ``steps`` a budget sets (a typo would be dropped silently)."""
    import inspect

    info = attack_info(name)
    params = inspect.signature(get_attack(name)).parameters
    assert set(dict(info.test_params)) <= set(params), (name, info.test_params)
    if info.iterative:
        assert "steps" in params
    from advmeta.protocol import EvalProtocol

    assert EvalProtocol().params_of(name) == dict(info.test_params)
    assert EvalProtocol(attack_params={name: {"steps": 3}}).params_of(name)["steps"] == 3


@pytest.mark.parametrize("name", [n for n in NAMES if not attack_info(n).identity])
def test_a_non_finite_model_is_an_error_never_a_silent_clean_point(name: str, net: nn.Module) -> None:
    """Logits that are NaN at every perturbed point (finite at the clean images): the attack raises
    NonFiniteLossError, or returns a point whose logits are NaN so the caller's evaluation does.
    Never the clean image back as if the attack had failed (``sign(NaN)`` and ``new < best`` would)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 17, (B, C, H, H), generator=g).double() / 16  # pixels on a 1/16 grid
    with torch.no_grad():
        y = net(x).argmax(-1)  # all correctly classified: attacks that skip the others attack every one

    def fn(z: Tensor) -> Tensor:
        out = net(z)
        off_grid = (z * 16 != (z * 16).round()).flatten(-3).any(-1)  # a perturbed sample
        return torch.where(off_grid[..., None], torch.full_like(out, float("nan")), out)

    try:
        adv = get_attack(name)(fn, x, y, eps=EPS, **fast_kwargs(name))
    except NonFiniteLossError:
        return
    with torch.no_grad():
        assert not torch.isfinite(fn(adv)).all(), "the attack hid the non-finite model behind the clean images"


def test_an_attack_given_a_setting_it_does_not_take_is_an_error_naming_it() -> None:
    """Nothing silently dropped: FGSM takes no ``steps``; a learner's configured training-attack
    bundle leaves out what its attack does not take only while it is at its default."""
    from advmeta.attacks import AttackSpec, configured
    from advmeta.errors import ConfigError

    with pytest.raises(ConfigError, match=r"attack fgsm does not take steps"):
        AttackSpec("fgsm", "8/255", {"steps": 3})
    assert AttackSpec("pgd", "8/255", {"steps": 3}).accepted()["steps"] == 3
    bundle = {"steps": ("train_attack_steps", 1, 1), "random_start": ("train_random_start", True, True)}
    assert configured("fgsm", bundle) == {}
    assert configured("pgd", bundle) == {"steps": 1, "random_start": True}
    with pytest.raises(ConfigError, match=r"fgsm does not take steps \(train_attack_steps = 5\)"):
        configured("fgsm", {**bundle, "steps": ("train_attack_steps", 5, 1)})


def test_aq_with_a_one_step_attack_and_its_steps_changed_is_an_error() -> None:
    from advmeta.errors import ConfigError
    from advmeta.learners.aq import AQConfig, train_attack_spec

    assert train_attack_spec(AQConfig(train_attack="fgsm")).params == {}
    with pytest.raises(ConfigError, match="train_attack_steps = 3"):
        train_attack_spec(AQConfig(train_attack="fgsm", train_attack_steps=3))
