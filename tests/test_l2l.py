"""L2L trainers: the perturbation's budget, the attacker's objective, the alternating update."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advmeta.errors import ConfigError, NonFiniteLossError
from advmeta.l2l import (
    METHOD_NAMES,
    L2LData,
    L2LConfig,
    L2LEvalProtocol,
    Method,
    alternating_step,
    attacker_step,
    blackbox_matrix,
    blackbox_table,
    evaluate_l2l,
    learned_perturbation,
    load_checkpoint,
    make_perturbation,
    train_l2l,
)
from advmeta.l2l.data import augment, minibatches
from advmeta.models import build_model

EPS = 8 / 255
LEARNED = [Method.NAIVE, Method.GRAD, Method.TWO_STEP]


class TinyNet(nn.Module):
    """A small classifier with batch norm (so eval/train mode matters)."""

    def __init__(self, n_classes: int = 2, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class LoudAttacker(nn.Module):
    """An attacker whose raw output far exceeds ε, to check that projection bounds it anyway."""

    def __init__(self, use_grad: bool, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels if use_grad else channels, channels, 1)

    def forward(self, x: torch.Tensor, grad: torch.Tensor | None = None) -> torch.Tensor:
        z = x if grad is None else torch.cat([x, grad], 1)
        return 10 * self.conv(z)


def _attacker(method: Method, kind: str = "slim", channels: int = 3) -> nn.Module:
    return build_model("l2l-attacker", kind=kind, eps=EPS, image_channels=channels, use_grad=method.uses_gradient)


def _toy_data(n: int = 64, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by the sign of a fixed pattern, with pixels reaching 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    pattern = torch.randn(3, size, size, generator=g).sign()
    y = torch.arange(n) % 2
    x = 0.5 + 0.12 * (2 * y - 1).float()[:, None, None, None] * pattern + 0.05 * torch.randn(n, 3, size, size, generator=g)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    return x.clamp(0, 1), y


@pytest.mark.parametrize("method", LEARNED, ids=lambda m: m.value)
@pytest.mark.parametrize("attacker", ["slim", "loud"])
def test_learned_perturbation_within_budget_and_box(method: Method, attacker: str) -> None:
    torch.manual_seed(0)
    x, y = _toy_data()
    g = LoudAttacker(method.uses_gradient) if attacker == "loud" else _attacker(method)
    delta = learned_perturbation(method, g, TinyNet().eval(), x, y, EPS)
    assert delta.shape == x.shape and delta.requires_grad  # keeps g's graph for its own update
    assert delta.abs().max().item() <= EPS + 1e-6
    adv = x + delta
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0
    if attacker == "loud":
        assert delta.abs().max().item() > 0.9 * EPS  # the bound is active, not trivially met


def test_attacker_network_output_is_eps_tanh() -> None:
    g = _attacker(Method.GRAD)
    x, _ = _toy_data()
    out = g(x, torch.randn_like(x))
    assert out.abs().max().item() < EPS


@pytest.mark.parametrize("method", [Method.PLAIN, Method.PGM], ids=lambda m: m.value)
def test_baseline_perturbations(method: Method) -> None:
    x, y = _toy_data()
    delta = make_perturbation(method, TinyNet(), None, x, y, EPS, generator=torch.Generator().manual_seed(0))
    if method is Method.PLAIN:
        assert torch.equal(delta, torch.zeros_like(x))
    else:
        assert delta.abs().max().item() <= EPS + 1e-6 and delta.abs().max().item() > 0.5 * EPS
        assert (x + delta).min() >= 0 and (x + delta).max() <= 1


def _train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int = 60) -> TinyNet:
    torch.manual_seed(0)
    f = TinyNet()
    opt = torch.optim.SGD(f.parameters(), lr=0.5, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(f(x), y).backward()
        opt.step()
    return f.eval()


@pytest.mark.parametrize("method", LEARNED, ids=lambda m: m.value)
def test_attacker_training_raises_the_classifier_loss(method: Method) -> None:
    x, y = _toy_data(64)
    f = _train_classifier(x, y)
    with torch.no_grad():
        clean_loss = F.cross_entropy(f(x), y).item()
        clean_acc = (f(x).argmax(1) == y).float().mean().item()
    assert clean_acc > 0.95
    torch.manual_seed(1)
    g = _attacker(method)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        delta = learned_perturbation(method, g, f, x, y, EPS)
        losses.append(attacker_step(f, g, opt, x, y, delta))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last > 2 * first and last > clean_loss + 0.5, (first, last, clean_loss)


def _params(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", LEARNED, ids=lambda m: m.value)
def test_alternating_step_updates_each_network_only_in_its_half(method: Method) -> None:
    torch.manual_seed(0)
    x, y = _toy_data()
    f, g = TinyNet(), _attacker(method)
    opt_f = torch.optim.SGD(f.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3)
    f0, g0 = _params(f), _params(g)
    seen: dict[str, object] = {}
    step_f, step_g = opt_f.step, opt_g.step

    def spy_f(*a: object, **k: object) -> object:
        seen["g_untouched_at_f_step"] = _same(_params(g), g0)
        seen["g_has_no_grad"] = all(p.grad is None for p in g.parameters())
        seen["f_was_training"] = f.training
        out = step_f(*a, **k)
        seen["f_after"] = _params(f)
        seen["f_buffers"] = {k: v.clone() for k, v in f.named_buffers()}
        seen["f_grads"] = [p.grad.clone() for p in f.parameters()]
        return out

    def spy_g(*a: object, **k: object) -> object:
        seen["f_untouched_at_g_step"] = _same(_params(f), seen["f_after"])
        seen["f_bn_stats_untouched"] = all(torch.equal(v, seen["f_buffers"][k]) for k, v in f.named_buffers())
        seen["f_grads_untouched"] = all(torch.equal(p.grad, q) for p, q in zip(f.parameters(), seen["f_grads"]))
        seen["g_has_grad"] = any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
        seen["g_before"] = _params(g)
        return step_g(*a, **k)

    opt_f.step, opt_g.step = spy_f, spy_g  # type: ignore[method-assign]
    res = alternating_step(method, f, g, opt_f, opt_g, x, y, EPS)
    assert seen["g_untouched_at_f_step"] and seen["g_has_no_grad"] and seen["f_was_training"]
    assert seen["f_untouched_at_g_step"] and seen["f_bn_stats_untouched"] and seen["f_grads_untouched"]
    assert seen["g_has_grad"]
    assert not _same(_params(f), f0)  # the classifier moved in its half …
    assert not _same(_params(g), seen["g_before"])  # … and the attacker in its own
    assert _same(_params(f), seen["f_after"])
    assert math.isfinite(res.classifier_loss) and math.isfinite(res.attacker_loss)


@pytest.mark.parametrize("method", [Method.PLAIN, Method.PGM], ids=lambda m: m.value)
def test_baseline_step_updates_only_the_classifier(method: Method) -> None:
    x, y = _toy_data()
    f = TinyNet()
    opt = torch.optim.SGD(f.parameters(), lr=0.1)
    f0 = _params(f)
    res = alternating_step(method, f, None, opt, None, x, y, EPS, generator=torch.Generator().manual_seed(0))
    assert not _same(_params(f), f0) and math.isnan(res.attacker_loss)


def test_non_finite_loss_is_a_user_error() -> None:
    x, y = _toy_data()
    f = TinyNet()
    with torch.no_grad():
        f.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        alternating_step(Method.PLAIN, f, None, torch.optim.SGD(f.parameters(), lr=0.1), None, x, y, EPS)


def test_config_defaults_and_validation() -> None:
    cfg = L2LConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs, cfg.attacker_lr) == (0.1, 0.9, 2e-4, 100, 1e-3)
    assert cfg.milestone_epochs() == [30, 60, 90] and L2LConfig(epochs=10).milestone_epochs() == [3, 6, 9]
    assert cfg.eps_value == 8 / 255 and cfg.name == "grad-l2l-wide" and L2LConfig(method="pgm").name == "pgm"
    assert L2LConfig.from_dict(cfg.to_dict()) == cfg
    json.dumps(cfg.hparams())
    assert set(METHOD_NAMES) == {"plain", "pgm", "naive-l2l", "grad-l2l", "2step-l2l"}
    for bad in ({"method": "madry"}, {"attacker": "huge"}, {"eps": "-1/255"}, {"epochs": 0}):
        with pytest.raises(ConfigError):
            L2LConfig(**bad)  # type: ignore[arg-type]


def test_augment_and_minibatches() -> None:
    x, _ = _toy_data(16)
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    seen = torch.cat([yb for _, yb in minibatches(x, torch.arange(16), 5, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(16))


def _tiny_data() -> L2LData:
    x, y = _toy_data(48)
    xu = (x * 255).round().to(torch.uint8)
    return L2LData("toy", xu[:32], y[:32], xu[32:], y[32:], 2)


def test_train_evaluate_resume_and_blackbox(tmp_path) -> None:
    from advmeta.results import to_frame

    data = _tiny_data()
    common = dict(dataset="toy", classifier_kwargs={"depth": 10, "widen": 1}, epochs=2, batch_size=16,
                  attacker="slim", eval_batches=1, device="cpu", augment=False)
    reports: list[dict] = []
    runs = {}
    for method in ("plain", "pgm", "grad-l2l"):
        cfg = L2LConfig(method=method, pgd_steps=2, **common)  # type: ignore[arg-type]
        path, metrics = train_l2l(cfg, tmp_path / method, progress=False, data=data,
                                  report=lambda m, p: reports.append(m))
        assert path.is_file() and metrics["epoch"] == 2 and metrics["epoch_seconds"] > 0
        assert {"val_clean_acc", "val_pgd20_acc", "train_loss"} <= set(metrics)
        runs[cfg.name] = path
    assert len(reports) == 6
    ck = load_checkpoint(runs["grad-l2l-slim"])
    assert ck.epoch == 2 and ck.attacker is not None and len(ck.history) == 2
    # resuming a finished run trains nothing more and returns the same checkpoint
    again, m2 = train_l2l(L2LConfig(method="plain", pgd_steps=2, **common), tmp_path / "plain",  # type: ignore[arg-type]
                          progress=False, data=data)
    assert again == runs["plain"] and m2["epoch"] == 2

    proto = L2LEvalProtocol(attacks=("none", "fgsm", "pgd-3"), seeds=(0, 1), eps_curve=("4/255",), steps_curve=(2,))
    rows = evaluate_l2l(runs["pgm"], proto, data=data, device="cpu", progress=False)
    frame = to_frame(rows)
    assert list(frame["attack"]) == ["none", "fgsm", "pgd-3", "pgd-20", "pgd-2", "worst"]
    assert frame["acc"].between(0, 100).all() and (frame["scenario"] == "l2l").all()
    assert (frame["method"] == "pgm").all() and frame.loc[0, "eps_str"] == "0/255"
    worst = frame.set_index("attack")["acc"]
    assert worst["worst"] <= min(worst["none"], worst["fgsm"], worst["pgd-3"])

    bb = blackbox_table(runs, attack="pgd-3", data=data, device="cpu", progress=False)
    assert len(bb) == 9 and all(r["attack"] == "transfer" for r in bb)
    to_frame(bb)
    assert blackbox_matrix(bb).shape == (3, 3)


class _Stop(Exception):
    pass


def test_resume_after_interruption_gives_the_same_networks(tmp_path) -> None:
    data = _tiny_data()
    cfg = L2LConfig(method="grad-l2l", attacker="slim", dataset="toy", classifier_kwargs={"depth": 10, "widen": 1},
                    epochs=2, batch_size=16, eval_batches=0, device="cpu")
    ref, _ = train_l2l(cfg, tmp_path / "a", progress=False, data=data)

    def stop(metrics: dict, path) -> None:  # noqa: ANN001
        if metrics["epoch"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_l2l(cfg, tmp_path / "b", progress=False, data=data, report=stop)
    assert load_checkpoint(tmp_path / "b").epoch == 1
    got, _ = train_l2l(cfg, tmp_path / "b", progress=False, data=data)
    a, b = load_checkpoint(ref), load_checkpoint(got)
    for net_a, net_b in ((a.classifier, b.classifier), (a.attacker, b.attacker)):
        for (k, va), vb in zip(net_a.state_dict().items(), net_b.state_dict().values()):
            assert torch.equal(va, vb), k


def test_flip_follows_the_dataset_unless_given() -> None:
    """Characters are not flipped by default (a mirrored glyph is another glyph); natural images are."""
    assert L2LConfig(dataset="miniimagenet-64").flips and L2LConfig(dataset="cifar10").flips
    assert not L2LConfig(dataset="omniglot-cls").flips
    assert L2LConfig(dataset="omniglot-cls", flip=True).flips and not L2LConfig(dataset="cifar10", flip=False).flips
    # without a flip, every output is a pure shift of its input: an asymmetric image never comes back mirrored
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 2:6, 1] = 1.0  # a vertical bar at column 1; shifts keep it a single column, a flip would too,
    x[:, :, 2, 1:4] = 1.0  # so add a horizontal arm pointing right: mirrored, it would point left
    out = augment(x, torch.Generator().manual_seed(0), pad=1, flip=False)
    for img in out[:, 0]:
        bar = (img.sum(0) >= 3).nonzero()
        if len(bar) == 1:  # the bar stayed inside the crop
            c = int(bar[0])
            arm_row = int((img[:, c] > 0).nonzero()[0])
            assert img[arm_row, c + 1 :].sum() >= 1 and img[arm_row, :c].sum() == 0
    mirrored = augment(x, torch.Generator().manual_seed(0), pad=1, flip=True)
    assert not torch.equal(mirrored, out)


def test_l2l_params_are_documented() -> None:
    """``advmeta tune <trainer> --params`` shows each field's metadata doc (declared with ``hp``)."""
    from advmeta.plan.space import describe_fields

    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(L2LConfig)}
    assert docs["attacker_lr"] == "Adam learning rate of the attacker."
    lines = describe_fields("grad-l2l")
    assert any(line.startswith("--attacker-lr") and line.endswith("Adam learning rate of the attacker.") for line in lines)
    assert all(not line.endswith(") ") for line in lines), lines  # every tunable field has a doc


def test_interleaved_step_seconds_times_every_trainer() -> None:
    from advmeta.l2l.timing import interleaved_step_seconds

    tiny = {"classifier_kwargs": {"depth": 10, "widen": 1}}
    cfgs = [L2LConfig(method="pgm", pgd_steps=2, **tiny), L2LConfig(method="grad-l2l", attacker="slim", **tiny)]
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    sec = interleaved_step_seconds(cfgs, x, y, 2, rounds=1, device="cpu")
    assert set(sec) == {"pgm", "grad-l2l-slim"} and all(s > 0 for s in sec.values())
    with pytest.raises(ValueError, match="differ"):
        interleaved_step_seconds(cfgs[:1] * 2, x, y, 2, rounds=1, device="cpu")
    with pytest.raises(ValueError, match="rounds"):
        interleaved_step_seconds(cfgs, x, y, 2, rounds=0, device="cpu")


def test_benchmark_prints_every_trainer_against_pgm(capsys: pytest.CaptureFixture[str]) -> None:
    from advmeta.benchmarks.l2l import main

    sec = main(["--setting", "cpu", "--batch", "2", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    for name in ("plain", "pgm", "grad-l2l-slim", "grad-l2l-wide", "2step-l2l-slim", "2step-l2l-wide"):
        assert name in sec and name in out


def test_cw_linf_names_carry_their_steps() -> None:
    from advmeta.l2l.evaluate import attack_spec

    assert attack_spec("cw-linf", 8 / 255)[1]["steps"] == 100  # the paper's
    assert attack_spec("cw-linf-20", 8 / 255)[1]["steps"] == 20
    for bad in ("cw-linf-0", "cw-linf-x", "cw-linf-"):
        with pytest.raises(ConfigError):
            attack_spec(bad, 8 / 255)


def test_one_resume_policy_for_every_trainer(tmp_path) -> None:
    """The L2L trainer runs on the meta-learners' skeleton (advmeta.loop): a folder holding another
    configuration's checkpoint is refused, never overwritten, and a meta checkpoint is not an L2L one."""
    from advmeta.train import TrainConfig, train

    data = _tiny_data()
    cfg = L2LConfig(method="plain", pgd_steps=1, dataset="toy", classifier_kwargs={"depth": 10, "widen": 1},
                    epochs=1, batch_size=16, eval_batches=0, device="cpu")
    path, _ = train_l2l(cfg, tmp_path / "run", progress=False, data=data)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="lr"):
        train_l2l(dataclasses.replace(cfg, lr=cfg.lr / 2), tmp_path / "run", progress=False, data=data)
    assert path.read_bytes() == before
    meta, _ = train(TrainConfig(method="maml", dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=1, width=8,
                                iterations=1, val_episodes=1, device="cpu", hparams={"inner_steps": 1}),
                    tmp_path / "meta", progress=False)
    with pytest.raises(ConfigError, match="not a checkpoint of the l2l trainer"):
        load_checkpoint(meta)
    with pytest.raises(ConfigError, match="not a checkpoint of the meta trainer"):
        train(TrainConfig(method="maml", dataset="glyphs", iterations=1), tmp_path / "run", progress=False)
