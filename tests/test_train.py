"""Meta-training: every learner trains, exact resume, non-finite losses fail loudly, vmap path."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from advmeta.errors import ConfigError, NonFiniteLossError
from advmeta.learners import get_learner, learner_names
from advmeta.train import TrainConfig, train

SMALL = dict(dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=2, width=8, val_every=2, val_episodes=3,
             checkpoint_every=2, device="cpu", surrogate_steps=3)


def small(method: str, tmp_path: Path, **kw) -> TrainConfig:  # noqa: ANN003
    hp = {"inner_steps": 1, "test_inner_steps": 1} if get_learner(method).maml_family else {}
    hp.update(kw.pop("hparams", {}))
    return TrainConfig(method=method, hparams=hp, **{**SMALL, "cache_dir": str(tmp_path / "cache"), **kw})


@pytest.mark.parametrize("method", learner_names())
def test_every_learner_trains_and_reports(method: str, tmp_path: Path) -> None:
    reports = []
    path, metrics = train(small(method, tmp_path, iterations=2), tmp_path / "run", progress=False,
                          report=lambda m, c: reports.append((m, c)))
    assert path.exists() and metrics["iteration"] == 2
    assert reports and reports[-1][1] == path
    # a report per learning-curve row (advmeta.train.curve_every: every iteration here); validated at val_every
    assert [m["iteration"] for m, _ in reports] == [1, 2] and "val_acc" not in reports[0][0]
    assert reports[-1][0]["val_acc"] == metrics["val_acc"] and all(math.isfinite(m["train_loss"]) for m, _ in reports)


@pytest.mark.slow
@pytest.mark.parametrize("method", learner_names())
def test_every_learner_learns(method: str, tmp_path: Path) -> None:
    """Sixty meta-iterations (4–17 s each on one core) take every learner above chance (3-way:
    33.3 %) by at least 8 points on 270 held-out glyph queries (about 4 standard errors); a
    learner whose meta-gradient or head were wrong would stay at chance. Measured: 45–82 %."""
    fields = {f.name for f in dataclasses.fields(get_learner(method).Config)}
    hp = {k: v for k, v in {"inner_lr": 0.4, "inner_lr_adv": 0.4}.items() if k in fields}
    _, metrics = train(small(method, tmp_path, iterations=60, val_every=60, checkpoint_every=60, val_episodes=30,
                             q_query=3, meta_batch=4, hparams=hp), tmp_path / "run", progress=False)
    assert metrics["val_acc"] >= 100 / 3 + 8, f"{method}: {metrics['val_acc']:.1f} % after 60 iterations"


class _Stop(Exception):
    pass


def test_resume_gives_the_same_result(tmp_path: Path) -> None:
    cfg = small("aq", tmp_path, iterations=4, hparams={"train_eps": "16/255"})
    ref_path, ref = train(cfg, tmp_path / "a", progress=False)
    ref_state = torch.load(ref_path, weights_only=False)["state"]["model"]

    def interrupt(metrics: dict, ckpt: Path | None) -> None:
        if metrics["iteration"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(cfg, tmp_path / "b", progress=False, report=interrupt)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 2
    path, metrics = train(cfg, tmp_path / "b", progress=False)
    state = torch.load(path, weights_only=False)["state"]["model"]
    for k in ref_state:
        assert torch.equal(ref_state[k], state[k]), k
    assert metrics["val_acc"] == ref["val_acc"]


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    train(small("maml", tmp_path, iterations=2), tmp_path / "a", progress=False)
    with pytest.raises(ConfigError):
        train(small("maml", tmp_path, iterations=3, seed=1), tmp_path / "a", progress=False)


def test_resume_ignores_run_only_fields(tmp_path: Path) -> None:
    """Another device spelling, data path, cache, thread count or vectorize path is the same run."""
    cfg = small("maml", tmp_path, iterations=4)
    ref_path, _ = train(cfg, tmp_path / "ref", progress=False)
    ref_state = torch.load(ref_path, weights_only=False)["state"]["model"]

    def interrupt(metrics: dict, ckpt: Path | None) -> None:
        if metrics["iteration"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        train(cfg, tmp_path / "a", progress=False, report=interrupt)
    moved = small("maml", tmp_path, iterations=4, device="auto" if not torch.cuda.is_available() else "cpu",
                  data_root=str(tmp_path / "elsewhere"), cache_dir=str(tmp_path / "cache2"), vectorize="loop")
    assert moved.result_dict() == cfg.result_dict()
    # Another thread count is the same run too, but it may round reductions differently, so the
    # bit-for-bit comparison below keeps the threads of the reference run.
    assert dataclasses.replace(moved, threads=1).result_dict() == cfg.result_dict()
    # vmap gives the loop's numbers up to rounding (test below), so it resumes the same run too.
    assert dataclasses.replace(moved, vectorize="vmap").result_dict() == cfg.result_dict()
    assert dataclasses.replace(moved, seed=1).result_dict() != cfg.result_dict()
    # data_root is where the data is, not what it is: point it at the same glyphs (built in).
    path, metrics = train(moved, tmp_path / "a", progress=False)
    assert metrics["iteration"] == 4
    state = torch.load(path, weights_only=False)["state"]["model"]
    for k in ref_state:
        assert torch.equal(state[k], ref_state[k]), k


def test_non_finite_loss_raises(tmp_path: Path) -> None:
    cfg = small("maml", tmp_path, iterations=3, hparams={"inner_lr": 1e30})
    with pytest.raises(NonFiniteLossError):
        train(cfg, tmp_path / "nan", progress=False)


def test_unknown_hyper_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="gamma"):
        TrainConfig(method="maml", hparams={"gamma": 2.0})


def test_vmap_path_with_manual_batch_norm_matches_the_loop() -> None:
    """Conv4 with hand-written batch norm under vmap gives the loop's second-order meta-gradient."""
    from _learner_fixtures import episodes
    from advmeta.learners import get_learner
    from advmeta.models import build_model

    torch.manual_seed(0)
    net = build_model("conv4", in_channels=1, n_classes=3, width=4, image_size=16, bn_mode="batch",
                      bn_impl="manual").double()
    cls = get_learner("maml")
    cfg = cls.Config(inner_lr=0.3, inner_steps=2, first_order=False)
    ep = episodes(size=16)
    grads = []
    for vec in (False, True):
        loss, _ = cls(cfg, net, vectorize=vec).meta_loss(ep)
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10), (a - b).abs().max()


def write_training_bank(cfg: TrainConfig, path: Path, batch_size: int = 3) -> None:
    """A bank of the run's training episodes, made in-process in chunks unlike the meta-batch."""
    import numpy as np

    from advmeta.bank import BankSpec, EpisodeMaker, write_bank
    from advmeta.data import load_fewshot
    from advmeta.train import training_bank_request

    req = training_bank_request(cfg)
    assert req is not None
    shape = tuple(load_fewshot(cfg.dataset, image_size=cfg.image_size).image_shape)
    spec = BankSpec(dataset=req["dataset"], split="train", n_way=req["n_way"], k_shot=req["k_shot"],
                    q_query=req["q_query"], seed=req["seed"], n_episodes=req["n_episodes"], eps=tuple(req["eps"]),
                    surrogate=req["surrogate"], image_shape=shape, image_size=req["image_size"])  # type: ignore[arg-type]
    maker = EpisodeMaker(spec, None, req["surrogate_steps"], req["surrogate_arch"], "cpu")
    n = spec.n_episodes
    write_bank(str(path), spec, (maker({"id": np.arange(s, min(n, s + batch_size))}) for s in range(0, n, batch_size)))


@pytest.fixture(scope="module")
def surrogate_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One surrogate cache for the trainers and the bank makers of this module (trained once)."""
    return tmp_path_factory.mktemp("xdg")


@pytest.mark.parametrize("method", ["adml", "maml-ad"])
def test_training_bank_gives_the_same_parameters(method: str, tmp_path: Path, surrogate_home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """ADML / MAML-AD read their surrogate images from a bank: bit-identical to attacking in-process."""
    from advmeta.bank import EpisodeBank

    monkeypatch.setenv("XDG_CACHE_HOME", str(surrogate_home))
    cfg = small(method, tmp_path, iterations=3, meta_batch=2, cache_dir=None, hparams={"train_eps": "8/255"})
    ref_path, ref = train(cfg, tmp_path / "ref", progress=False)
    write_training_bank(cfg, tmp_path / "bank")
    bank = EpisodeBank(str(tmp_path / "bank"))
    path, metrics = train(cfg, tmp_path / "banked", progress=False, bank=bank)
    ref_state = torch.load(ref_path, weights_only=False)["state"]["model"]
    state = torch.load(path, weights_only=False)["state"]["model"]
    for k in ref_state:
        assert torch.equal(ref_state[k], state[k]), k
    assert metrics["val_acc"] == ref["val_acc"]
    # A bank of another run (seed) is refused by its manifest, before any training.
    with pytest.raises(ConfigError, match="seed"):
        train(dataclasses.replace(cfg, seed=1), tmp_path / "other", progress=False, bank=bank)
    with pytest.raises(ConfigError, match="n_episodes"):
        train(dataclasses.replace(cfg, iterations=9), tmp_path / "longer", progress=False, bank=bank)
