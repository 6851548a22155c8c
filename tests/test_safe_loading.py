"""Files received from someone else never run code: every torch file is read with weights_only=True.

A crafted pickle whose ``__reduce__`` would create a marker file is placed where advmeta reads a
trial checkpoint (resume, evaluate), a surrogate cache and a GAIL expert cache: each is refused
with one line naming the file, and the marker never appears.
"""

from __future__ import annotations

import builtins
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from advmeta import checkpoint as ckpt_io
from advmeta.checkpoint import UnsafeFileError
from advmeta.errors import CorruptDataError

REPO = Path(__file__).resolve().parent.parent


class _Marker:
    """Unpickling this opens (creates) the marker file: the stand-in for any code a pickle may run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return builtins.open, (self.path, "w")


def craft(path: Path, marker: Path, *, zip_format: bool = True) -> Path:
    """A file that looks like an advmeta checkpoint but runs code when unpickled."""
    obj = {"format": ckpt_io.FORMAT, "kind": "meta", "config": {}, "payload": _Marker(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if zip_format:
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "plain-pickle"])
def test_a_file_that_would_run_code_is_refused_naming_it(tmp_path: Path, zip_format: bool) -> None:
    marker = tmp_path / "marker"
    path = craft(tmp_path / "checkpoint.pt", marker, zip_format=zip_format)
    with pytest.raises(UnsafeFileError) as info:
        ckpt_io.load(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "io.open" in msg and "could run code" in msg
    assert not marker.exists()


def test_the_crafted_file_does_run_code_when_unpickled_unsafely(tmp_path: Path) -> None:
    """The test's own control: the crafted file is a real exploit (else the tests above prove nothing)."""
    marker = tmp_path / "marker"
    torch.load(craft(tmp_path / "c.pt", marker), weights_only=False)
    assert marker.exists()


def test_garbage_is_corrupt_not_unsafe(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CorruptDataError) as info:
        ckpt_io.load(path)
    assert not isinstance(info.value, UnsafeFileError) and "could not be read" in str(info.value)


def test_resume_and_evaluate_refuse_a_crafted_trial_checkpoint(tmp_path: Path) -> None:
    from advmeta.evaluate import evaluate
    from advmeta.protocol import EvalProtocol
    from advmeta.train import TrainConfig, train

    marker = tmp_path / "marker"
    work = tmp_path / "trial" / "work"
    craft(work / "checkpoint.pt", marker)
    cfg = TrainConfig(method="maml", dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=2, width=8,
                      iterations=2, val_every=2, val_episodes=3, checkpoint_every=2, device="cpu",
                      hparams={"inner_steps": 1, "test_inner_steps": 1}, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(UnsafeFileError):
        train(cfg, work, resume=True, progress=False)  # --resume reads the trial's checkpoint
    with pytest.raises(UnsafeFileError):
        evaluate(work / "checkpoint.pt", EvalProtocol(n_episodes=1, device="cpu"), progress=False)
    assert not marker.exists()


def test_a_real_checkpoint_loads_with_its_rng_state(tmp_path: Path) -> None:
    """advmeta's own checkpoints are tensors and plain values (the NumPy RNG state an array)."""
    from advmeta.train import TrainConfig, train

    cfg = TrainConfig(method="protonet", dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=2, width=8,
                      iterations=2, val_every=2, val_episodes=3, checkpoint_every=2, device="cpu",
                      cache_dir=str(tmp_path / "cache"))
    path, _ = train(cfg, tmp_path / "run", progress=False)
    state = ckpt_io.load(path)
    assert state["step"] == 2 and state["config"]["method"] == "protonet"
    ckpt_io.set_rng_state(state["rng"])


def test_surrogate_and_expert_caches_refuse_crafted_files(tmp_path: Path) -> None:
    from advmeta.data import load_fewshot
    from advmeta.gail.expert import ExpertSettings, expert_data
    from advmeta.surrogate import SurrogateConfig, cache_path, get_surrogate

    marker = tmp_path / "marker"
    ds = load_fewshot("glyphs")
    cfg = SurrogateConfig(steps=2)
    craft(Path(cache_path(ds, cfg, tmp_path / "cache")), marker)
    with pytest.raises(UnsafeFileError):
        get_surrogate(ds, cfg, cache_dir=tmp_path / "cache")
    settings = ExpertSettings(env="CartPole-v1")
    craft(tmp_path / "experts" / f"{settings.env}-{settings.key}.pt", marker)
    with pytest.raises(UnsafeFileError):
        expert_data(settings, tmp_path / "experts")
    assert not marker.exists()


def test_report_of_a_received_results_folder_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A committed results folder (Parquet and JSON) still reports; a crafted checkpoint in one of its
    trial folders is never read by ``advmeta report``."""
    import sys

    from advmeta.cli.app import main

    src = REPO / "results" / "paper-tables-omniglot"
    if not (src / "summary.parquet").is_file():
        pytest.skip("results/paper-tables-omniglot is not in this checkout")
    folder = tmp_path / "received"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("report"))
    marker = tmp_path / "marker"
    craft(folder / "trials" / "t0" / "work" / "checkpoint.pt", marker)
    monkeypatch.setattr(sys, "argv", ["advmeta", "report", str(folder), "--no-show"])
    try:
        main()
    except SystemExit as ex:
        assert not ex.code
    assert (folder / "report" / "report.md").is_file() and not marker.exists()
