"""Models: functional call == module call, every parameter gets a gradient, shapes and modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from advmeta.errors import ConfigError
from advmeta.models import build_model, model_names

Call = Callable[[nn.Module, dict[str, Tensor] | None], Tensor]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def _image_call(x: Tensor) -> Call:
    return lambda net, p: net(x) if p is None else functional_call(net, p, (x,))


def _episode_call(sx: Tensor, sy: Tensor, qx: Tensor) -> Call:
    return lambda net, p: net(sx, sy, qx, 3) if p is None else functional_call(net, p, (sx, sy, qx, 3))


def _attacker_call(x: Tensor, g: Tensor) -> Call:
    return lambda net, p: net(x, g) if p is None else functional_call(net, p, (x, g))


def small(name: str) -> tuple[nn.Module, Call]:
    """A CPU-sized instance of each registered model and a way to call it. A new model needs a
    line here (the test fails with a clear message until it has one)."""
    torch.manual_seed(0)
    x3 = torch.rand(6, 3, 20, 20, dtype=torch.float64)
    sx, sy, qx = torch.rand(6, 1, 28, 28, dtype=torch.float64), torch.arange(3).repeat(2), torch.rand(4, 1, 28, 28, dtype=torch.float64)
    table: dict[str, tuple[dict[str, object], Call]] = {
        "conv4": (dict(in_channels=3, n_classes=4, width=8, image_size=20), _image_call(x3)),
        "protonet": (dict(in_channels=3, width=8, image_size=20, leaky=True), _image_call(x3)),
        "resnet12": (dict(in_channels=3, n_classes=4, widths=(4, 6, 8, 8), image_size=20), _image_call(x3)),
        "wrn": (dict(depth=10, widen=1, n_classes=4, in_channels=3), _image_call(x3)),
        "matching": (dict(in_channels=1, width=8, image_size=28, fce=True, fce_steps=2), _episode_call(sx, sy, qx)),
        "relation": (dict(in_channels=1, width=8, image_size=28), _episode_call(sx, sy, qx)),
        "l2l-attacker": (dict(kind="slim", eps="8/255"), _attacker_call(x3, torch.randn_like(x3))),
    }
    if name not in table:
        pytest.fail(f"model {name!r} has no small test configuration in tests/test_models.py")
    kw, call = table[name]
    return build_model(name, **kw).double(), call


@pytest.mark.parametrize("name", model_names())
@pytest.mark.parametrize("train", [True, False])
def test_functional_call_equals_module_call(name: str, train: bool) -> None:
    net, call = small(name)
    net.train(train)
    params = {k: v.clone() for k, v in [*net.named_parameters(), *net.named_buffers()]}
    out_fn = call(net, params)
    out_mod = call(net, None)
    torch.testing.assert_close(out_fn, out_mod)
    assert torch.isfinite(out_mod).all()


@pytest.mark.parametrize("name", model_names())
def test_every_parameter_gets_a_gradient(name: str) -> None:
    net, call = small(name)
    net.train()
    out = call(net, None)
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{name}.{pname} gets no gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} gets a zero gradient"


def test_conv4_head_sizes_follow_the_input() -> None:
    assert build_model("conv4", in_channels=3, width=32, image_size=84).head.in_features == 800
    assert build_model("conv4", in_channels=1, width=64, image_size=28).head.in_features == 64
    net = build_model("conv4", in_channels=3, width=8, image_size=(32, 48), n_classes=7)
    assert net(torch.rand(2, 3, 32, 48)).shape == (2, 7)
    with pytest.raises(ConfigError, match="too small"):
        build_model("conv4", image_size=8)


def test_batch_mode_is_transductive_and_running_mode_is_not() -> None:
    x = torch.rand(8, 3, 16, 16, dtype=torch.float64)
    batch = build_model("conv4", width=4, image_size=16, bn_mode="batch").double().eval()
    # batch statistics: an image's logits depend on the rest of the batch, even in eval mode
    assert not torch.allclose(batch(x)[:4], batch(x[:4]))
    running = build_model("conv4", width=4, image_size=16, bn_mode="running").double()
    running.train()
    running(x)  # updates the running statistics
    running.eval()
    torch.testing.assert_close(running(x)[:4], running(x[:4]))


@pytest.mark.parametrize("mode", ["batch", "running"])
def test_manual_batch_norm_equals_torch(mode: str) -> None:
    torch.manual_seed(0)
    a = build_model("conv4", width=4, image_size=16, bn_mode=mode, bn_impl="torch").double()
    b = build_model("conv4", width=4, image_size=16, bn_mode=mode, bn_impl="manual").double()
    b.load_state_dict(a.state_dict())
    x = torch.rand(8, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x))
    torch.testing.assert_close(dict(a.named_buffers()), dict(b.named_buffers()))
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_manual_batch_norm_is_exact_under_vmap_second_order() -> None:
    """The vmapped second-order gradient through hand-written batch norm equals the loop."""
    torch.manual_seed(0)
    net = build_model("conv4", in_channels=1, width=3, image_size=8, depth=2, n_classes=3, bn_impl="manual").double()
    params = dict(net.named_parameters())
    xs = torch.rand(2, 6, 1, 8, 8, dtype=torch.float64)
    ys = torch.randint(0, 3, (2, 6))

    def task_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        loss = nn.functional.cross_entropy(functional_call(net, p, (x,)), y)
        g = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        fast = {k: v - 0.1 * gi for (k, v), gi in zip(p.items(), g)}
        return nn.functional.cross_entropy(functional_call(net, fast, (x,)), y)

    loop = torch.autograd.grad(sum(task_loss(params, xs[t], ys[t]) for t in range(2)), list(params.values()))

    def task_loss_func(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        def inner(q: dict[str, Tensor]) -> Tensor:
            return nn.functional.cross_entropy(functional_call(net, q, (x,)), y)

        g = torch.func.grad(inner)(p)
        return inner({k: v - 0.1 * g[k] for k, v in p.items()})

    vm = torch.func.grad(lambda p: torch.func.vmap(task_loss_func, in_dims=(None, 0, 0))(p, xs, ys).sum())(params)
    for (k, _), g in zip(params.items(), loop):
        torch.testing.assert_close(vm[k], g, atol=1e-10, rtol=1e-8)


def test_input_normalisation_happens_inside_forward() -> None:
    torch.manual_seed(0)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    a = build_model("conv4", width=4, image_size=16, mean=mean, std=std).double()
    b = build_model("conv4", width=4, image_size=16).double()
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("normalize")})
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    xn = (x - torch.tensor(mean, dtype=x.dtype)[:, None, None]) / torch.tensor(std, dtype=x.dtype)[:, None, None]
    torch.testing.assert_close(a(x), b(xn))


def test_embeddings_expose_features_and_attacker_is_bounded() -> None:
    for name, kw, x in [
        ("protonet", dict(width=8, image_size=20), torch.rand(3, 3, 20, 20)),
        ("resnet12", dict(widths=(4, 4, 8, 8), image_size=20), torch.rand(3, 3, 20, 20)),
        ("wrn", dict(depth=10, widen=1), torch.rand(3, 3, 32, 32)),
    ]:
        net = build_model(name, **kw)
        assert net.features(x).shape[0] == 3 and net.features(x).dim() == 2
    att = build_model("l2l-attacker", kind="wide", eps="8/255", use_grad=False)
    delta = att(torch.rand(2, 3, 16, 16))
    assert delta.shape == (2, 3, 16, 16) and delta.abs().max() <= 8 / 255
    with pytest.raises(ConfigError, match="gradient"):
        build_model("l2l-attacker", kind="slim")(torch.rand(2, 3, 16, 16))


def test_unknown_names_and_modes_raise() -> None:
    with pytest.raises(ConfigError, match="known: .*conv4"):
        build_model("vgg99")
    with pytest.raises(ConfigError, match="bn_mode"):
        build_model("conv4", bn_mode="sometimes")
    with pytest.raises(ConfigError, match="attacker kind"):
        build_model("l2l-attacker", kind="medium")
    with pytest.raises(ConfigError, match="depth"):
        build_model("wrn", depth=12)
