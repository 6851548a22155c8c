"""Attack strength on trained models: a no-op or weak attack fails these, unlike `clean >= robust`.

Real data: a small CNN trained here on 5 mini-ImageNet classes (32×32) must fall to at most
half its clean accuracy under every bounded attack at ε = 8/255, with PGD-20 ≤ FGSM and
APGD ≤ PGD-20 + 2 points. Omniglot checks that robust accuracy falls as ε grows.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from advmeta.attacks import attack_info, attack_names, flatten_tasks, get_attack

EPS = "8/255"
STEPS = 20


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def small_cnn(in_channels: int, n_classes: int, size: int) -> nn.Module:
    layers: list[nn.Module] = []
    cin = in_channels
    for cout in (16, 32, 64):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * (size // 8) ** 2, n_classes))


def train(net: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int, lr: float = 3e-3) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(50):
            xb = x[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5  # flips: a little augmentation
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).double().mean()) * 100


def attack_kwargs(name: str, net: nn.Module) -> dict[str, object]:
    """Evaluation settings: PGD-20 with step 2/255, 20-step APGD, a cheaper C&W-ℓ2 search.

    ``transfer`` gets the attacked network itself as its surrogate: a transfer attack is only as
    strong as its surrogate, so the strength check verifies the mechanism (an independent
    surrogate is measured in the slow test below).
    """
    kw: dict[str, object] = {"generator": torch.Generator().manual_seed(0)}
    if name in ("pgd", "cw-linf"):
        kw.update(steps=STEPS, step_size="2/255")
    if name in ("apgd-ce", "apgd-dlr"):
        kw.update(steps=STEPS)
    if name == "cw-l2":
        kw.update(steps=30, search_steps=3)
    if name == "square":
        kw.update(n_queries=300)
    if name == "autoattack":
        kw.update(steps=STEPS, n_queries=300)
    if "surrogate_fn" in attack_info(name).requires:
        kw.update(surrogate_fn=flatten_tasks(net), attack="pgd", steps=10, step_size="2/255")
    return kw


def strength_checks(net: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Robust accuracy under every registered attack, with the issue's three conditions asserted."""
    clean = accuracy(net, x, y)
    acc = {"clean": clean}
    for name in attack_names():
        info = attack_info(name)
        if info.identity:
            continue
        kw = attack_kwargs(name, net)
        adv = get_attack(name)(net, x, y, eps=EPS if info.bounded else None, **kw)
        acc[name] = accuracy(net, adv, y)
    print({k: round(v, 1) for k, v in acc.items()})
    assert acc["pgd"] <= acc["fgsm"], acc
    assert min(acc["apgd-ce"], acc["apgd-dlr"]) <= acc["pgd"] + 2, acc
    # the cascade is the per-sample worst case of its parts (up to their random starts)
    assert acc["autoattack"] <= min(acc["apgd-ce"], acc["square"]) + 2, acc
    for name, value in acc.items():
        if name != "clean" and attack_info(name).bounded:
            assert value <= clean / 2, f"{name}: {value:.1f}% robust vs {clean:.1f}% clean"
    for name in attack_names():  # unbounded (C&W-ℓ2): minimal perturbations must succeed
        if not attack_info(name).bounded and not attack_info(name).identity:
            assert acc[name] <= clean / 2, f"{name}: {acc[name]:.1f}% vs clean {clean:.1f}%"
    return acc


def synthetic_and_net(per_class: int) -> tuple[Tensor, Tensor, nn.Module]:
    """5 classes of noisy 3×12×12 prototypes (``per_class`` each, classes interleaved) and a
    small CNN trained on the first 250 images."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(5, 3, 12, 12, generator=g)
    y = torch.arange(5).repeat(per_class)
    x = (0.5 + 0.3 * (protos[y] - 0.5) + 0.1 * torch.randn(len(y), 3, 12, 12, generator=g)).clamp(0, 1)
    torch.manual_seed(0)
    return x, y, train(small_cnn(3, 5, 12), x[:250], y[:250], epochs=10, seed=0)


def test_attacks_cut_accuracy_on_synthetic_data() -> None:
    """The same checks without real data (runs where ADVMETA_DATA is unset; a few seconds)."""
    x, y, net = synthetic_and_net(60)
    acc = strength_checks(net, x[250:], y[250:])
    assert acc["clean"] >= 60


def load_miniimagenet(root: Path, n_classes: int, size: int) -> tuple[Tensor, Tensor]:
    """The first ``n_classes`` classes of train.csv, every image, resized to ``size``."""
    by_class: dict[str, list[str]] = {}
    with open(root / "train.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_class.setdefault(row["label"], []).append(row["filename"])
    images, labels = [], []
    for c, label in enumerate(sorted(by_class)[:n_classes]):
        for name in by_class[label]:
            with Image.open(root / "images" / name) as im:
                images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
            labels.append(c)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor(labels)


@pytest.fixture(scope="module")
def miniimagenet_split(miniimagenet_root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """5 classes × 100 images at 32×32, shuffled, 80 % / 20 % train / test."""
    x, y = load_miniimagenet(miniimagenet_root, n_classes=5, size=32)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n = int(0.8 * len(x))
    return x[:n], y[:n], x[n:], y[n:]


@pytest.mark.slow  # 28 s (10 epochs of a CNN on the real subset); the synthetic-data strength test runs by default
def test_attacks_on_miniimagenet_cnn(miniimagenet_split: tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
    x, y, xt, yt = miniimagenet_split
    torch.manual_seed(0)
    net = train(small_cnn(3, 5, 32), x, y, epochs=10, seed=0)
    acc = strength_checks(net, xt, yt)
    assert acc["clean"] >= 40, f"the test model must beat 20% chance clearly, got {acc['clean']:.1f}%"


@pytest.mark.slow
def test_transfer_from_independent_surrogate(miniimagenet_split: tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
    """A black-box transfer (surrogate trained from another seed) still hurts clearly."""
    x, y, xt, yt = miniimagenet_split
    torch.manual_seed(0)
    net = train(small_cnn(3, 5, 32), x, y, epochs=10, seed=0)
    torch.manual_seed(1)
    surrogate = train(small_cnn(3, 5, 32), x, y, epochs=10, seed=1)
    clean = accuracy(net, xt, yt)
    adv = get_attack("transfer")(net, xt, yt, eps=EPS, surrogate_fn=surrogate, attack="pgd", steps=10, step_size="2/255")
    robust = accuracy(net, adv, yt)
    print(f"transfer PGD-10 from an independent surrogate: clean {clean:.1f}% -> {robust:.1f}%")
    assert robust <= clean - 10


def load_omniglot(root: Path, n_classes: int) -> tuple[Tensor, Tensor]:
    """All 20 drawings of the first ``n_classes`` characters of images_background, at 28×28."""
    images, labels = [], []
    with zipfile.ZipFile(root / "images_background.zip") as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        chars = sorted({n.rsplit("/", 1)[0] for n in names})[:n_classes]
        for c, char in enumerate(chars):
            for n in names:
                if n.rsplit("/", 1)[0] == char:
                    with Image.open(io.BytesIO(z.read(n))) as im:
                        images.append(np.asarray(im.convert("L").resize((28, 28), Image.LANCZOS)))
                    labels.append(c)
    x = torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1)
    return x, torch.tensor(labels)


def test_robust_accuracy_falls_with_eps_on_omniglot(omniglot_root: Path) -> None:
    x, y = load_omniglot(omniglot_root, n_classes=5)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    torch.manual_seed(0)
    net = train(small_cnn(1, 5, 28), x[:70], y[:70], epochs=30, seed=0)
    xt, yt = x[70:], y[70:]
    accs = []
    for eps in ("0/255", "8/255", "32/255", "96/255"):
        adv = get_attack("pgd")(net, xt, yt, eps=eps, steps=10, generator=torch.Generator().manual_seed(0))
        accs.append(accuracy(net, adv, yt))
    print("omniglot PGD-10 accuracy at eps 0, 8, 32, 96 /255:", accs)
    assert accs[0] >= 60
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[-1] <= accs[0] / 2, accs
