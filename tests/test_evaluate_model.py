"""`advmeta evaluate`: any few-shot module (and advmeta's own checkpoints), end to end at the smoke
budget, its rows and its record; every bad input one line and exit code 2, with nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from advmeta.results import EPISODE_COLUMNS, SUMMARY_COLUMNS

REPO = Path(__file__).resolve().parent.parent
MODEL = "tests.plain_fewshot_model"
pytestmark = pytest.mark.usefixtures("one_thread")


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from advmeta.cli.app import main

    monkeypatch.chdir(REPO)  # `--model tests.plain_fewshot_model:…` is imported from the current folder
    monkeypatch.setattr(sys, "argv", ["advmeta", *args])
    code = 0
    try:
        main()
    except SystemExit as ex:
        code = int(ex.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Standard episodes of the built-in glyphs: 3-way 1-shot, 3 queries, 4 episodes."""
    from advmeta.data import EpisodeSpec, load_fewshot
    from advmeta.data.manifest import export_manifest, image_names

    ds = load_fewshot("glyphs")
    m = export_manifest("glyphs", "test", EpisodeSpec(3, 1, 3), 4, 0, ds.split("test").class_names,
                        image_names(ds, "test"), ds.split_scheme)
    return m.write(tmp_path_factory.mktemp("manifest") / "glyphs-3way-1shot.json")


def test_the_plain_model_imports_nothing_from_advmeta() -> None:
    import ast

    tree = ast.parse((REPO / "tests" / "plain_fewshot_model.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {str(n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "torch"}, imported


WANTED = {("finetune", "none"), ("whitebox", "none"), ("whitebox", "pgd"), ("whitebox", "autoattack"),
          ("whitebox", "worst"), ("support", "pgd"), ("support+query", "pgd"), ("surrogate", "transfer")}


@pytest.mark.parametrize(("adapt", "factory"), [("protonet", "features"), ("finetune", "logits3")])
def test_a_plain_module_end_to_end(adapt: str, factory: str, manifest: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from advmeta.data.manifest import read_manifest

    out = tmp_path / "eval"
    code, stdout, err = run_main(["evaluate", "--model", f"{MODEL}:{factory}", "--adapt", adapt, "--dataset", "glyphs",
                                  "--eps", "8/255", "--budget", "smoke", "--episodes", str(manifest), "--steps", "2",
                                  "--reported", "clean=99,autoattack=50", "--reported-source", "the paper",
                                  "-o", str(out), "-q"], monkeypatch, capsys)
    assert code == 0, err
    digest = read_manifest(manifest).hash
    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary.columns[:len(SUMMARY_COLUMNS)]) == [c.name for c in SUMMARY_COLUMNS]
    assert set(summary["method"]) == {factory} and set(summary["episodes_hash"]) == {digest}
    assert set(summary["status"]) == {"ok"} and set(summary["dataset"]) == {"glyphs"}
    assert WANTED <= set(zip(summary["scenario"], summary["attack"]))
    steps = set(summary.loc[summary["scenario"] == "finetune", "finetune_step"])
    assert steps == ({0, 1, 2} if adapt == "finetune" else {0})
    assert summary["hparams"].map(lambda h: json.loads(h)["adapt"]).eq(adapt).all()
    assert (summary["n_episodes"] == 2).all() and summary["acc"].between(0, 100).all()
    episodes = pd.read_parquet(out / "episodes.parquet")
    assert list(episodes.columns) == [c.name for c in EPISODE_COLUMNS]
    assert set(episodes["episode_index"]) == {0, 1} and set(episodes["episodes_hash"]) == {digest}
    assert len(pd.read_parquet(out / "checks.parquet")) > 0

    rec = json.loads((out / "record.json").read_text())
    assert rec["format"] == "advmeta-record/1" and rec["model"]["name"] == factory
    assert rec["model"]["factory"] == f"{MODEL}:{factory}" and rec["model"]["adapt"]["adapt"] == adapt
    assert (rec["dataset"], rec["n_way"], rec["k_shot"], rec["eps"], rec["budget"]) == ("glyphs", 3, 1, ["8/255"], "smoke")
    assert rec["episodes"]["hash"] == digest and rec["episodes"]["n_episodes"] == 2
    res = rec["results"]["8/255"]
    assert set(res) == {"clean", "pgd", "autoattack", "worst", "support", "support+query", "transfer"}
    clean_row = summary[(summary["scenario"] == "whitebox") & (summary["attack"] == "none")].iloc[0]
    assert res["clean"]["acc"] == pytest.approx(clean_row["acc"]) and res["clean"]["ci95"] == pytest.approx(clean_row["acc_ci95"])
    strongest = min((res[k]["acc"], k) for k in ("pgd", "autoattack", "worst", "support", "support+query", "transfer"))
    assert (rec["strongest"]["acc"], rec["strongest"]["attack"]) == strongest
    assert res["worst"]["acc"] <= min(res["pgd"]["acc"], res["autoattack"]["acc"]) + 1e-9
    assert rec["forward_passes"]["images"] > 0 and rec["runtime_seconds"] > 0
    assert rec["reported"] == {"clean": 99.0, "autoattack": 50.0} and rec["reported_source"] == "the paper"
    assert rec["command"].startswith("advmeta evaluate --model")
    assert "strongest attack" in stdout


def test_python_api_with_an_episode_module_writes_nothing_without_out(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from advmeta import evaluate_model
    from tests.plain_fewshot_model import EpisodeNet

    monkeypatch.chdir(tmp_path)
    res = evaluate_model(EpisodeNet(), adapt="none", dataset="glyphs", n_way=3, k_shot=1, eps=["8/255"],
                         budget="smoke", name="episode-net")
    assert list(tmp_path.iterdir()) == []
    assert {r["method"] for r in res.rows} == {"episode-net"} and {r["episodes_hash"] for r in res.rows} == {""}
    assert res.record["episodes"]["seed"] == 0 and res.record["strongest"] is not None


def _crafted(path: Path, marker: Path) -> Path:
    from tests.test_safe_loading import craft

    return craft(path, marker)


BAD = [
    (["--model", f"{MODEL}:absent"], "has no absent"),
    (["--model", "tests.no_such_module:f"], "cannot import tests.no_such_module"),
    (["--model", "no-colon"], "expected PKG.MODULE:FACTORY"),
    (["--model", f"{MODEL}:not_a_module"], "returned dict, not a torch.nn.Module"),
    (["--model", f"{MODEL}:raises"], "the factory raised RuntimeError: no GPU here"),
    (["--model", f"{MODEL}:wrong_shape"], "returns \\(\\) for 3 images"),
    (["--model", f"{MODEL}:nan_logits", "--adapt", "finetune"], "non-finite logits"),
    (["--model", f"{MODEL}:features", "--adapt", "finetune"], "finetune needs 3-way logits"),
    (["--model", f"{MODEL}:logits3", "--weights", "WRONG"], "does not fit the module"),
    (["--model", f"{MODEL}:features", "--weights", "UNSAFE"], "refused to load weights file .*could run code"),
    (["--model", f"{MODEL}:features", "--episodes", "omniglot-test-5way-1shot"], "is of omniglot, not glyphs"),
    (["--model", f"{MODEL}:features", "--episodes", "MANIFEST", "--k-shot", "5"], "k_shot 1 \\(not 5\\)"),
    (["--model", f"{MODEL}:features", "--adapt", "bogus"], "unknown adaptation 'bogus'"),
    (["--model", f"{MODEL}:features", "--reported", "clean=abc"], "not a number"),
    (["--checkpoint", "UNSAFE"], "refused to load checkpoint .*could run code"),
    (["--checkpoint", "UNSAFE", "--adapt", "protonet"], "a checkpoint carries its own"),
    ([], "give --model PKG.MODULE:FACTORY or --checkpoint PATH"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a)[-60:] for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args: list[str], message: str, manifest: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import re

    marker = tmp_path / "marker"
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(2, 2)}, wrong)
    subst = {"WRONG": str(wrong), "UNSAFE": str(_crafted(tmp_path / "unsafe.pt", marker)), "MANIFEST": str(manifest)}
    args = [subst.get(a, a) for a in args]
    if "--adapt" not in args and "--checkpoint" not in args:
        args += ["--adapt", "protonet"]
    if "--checkpoint" not in args:
        args += ["--dataset", "glyphs", "--n-way", "3"]
    out = tmp_path / "out"
    code, _, err = run_main(["evaluate", *args, "--eps", "8/255", "--budget", "smoke", "-o", str(out), "-q"],
                            monkeypatch, capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists() and not marker.exists()


def test_an_earlier_evaluation_is_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "record.json").write_text("{}")
    code, _, err = run_main(["evaluate", "--model", f"{MODEL}:features", "--adapt", "protonet", "--dataset", "glyphs",
                             "--eps", "8/255", "-o", str(out)], monkeypatch, capsys)
    assert code == 2 and "already holds an evaluation" in err and (out / "record.json").read_text() == "{}"


def _tiny_checkpoint(tmp_path: Path) -> Path:
    from advmeta.train import TrainConfig, train

    cfg = TrainConfig(method="protonet", dataset="glyphs", n_way=3, k_shot=1, q_query=2, meta_batch=2, width=8,
                      iterations=2, val_every=2, val_episodes=2, checkpoint_every=2, device="cpu",
                      surrogate_steps=3, cache_dir=str(tmp_path / "cache"))  # the checkpoint's own surrogate
    return train(cfg, tmp_path / "run", progress=False)[0]


def _clean_by_episode(rows: list[dict]) -> dict[int, float]:  # type: ignore[type-arg]
    return {int(r["episode_index"]): float(r["acc"]) for r in rows
            if r["scenario"] == "whitebox" and r["attack"] == "none"}


def test_a_checkpoint_through_evaluate_sees_the_manifests_episodes_as_the_sweep_does(
        manifest: Path, tmp_path: Path) -> None:
    """The same manifest gives the same episodes (hash, per-episode clean accuracy) to ``advmeta
    evaluate --checkpoint`` (:func:`advmeta.model_eval.evaluate_checkpoint`) and to a sweep's
    evaluation of the trial (:func:`advmeta.evaluate.evaluate` with the manifest in its protocol)."""
    from advmeta.data.manifest import read_manifest
    from advmeta.evaluate import evaluate
    from advmeta.model_eval import evaluate_checkpoint
    from advmeta.protocol import EvalProtocol

    ckpt = _tiny_checkpoint(tmp_path)
    m = read_manifest(manifest)
    res = evaluate_checkpoint(ckpt, eps=["8/255"], budget="smoke", episodes=manifest, device="cpu")
    sweep_like = evaluate(ckpt, EvalProtocol(n_episodes=2, chunk=2, scenarios=("finetune", "whitebox"), attacks=("fgsm",),
                                             checks=None, device="cpu", episodes=m), progress=False)
    assert {r["episodes_hash"] for r in res.rows + sweep_like.rows} == {m.hash}
    assert _clean_by_episode(res.episodes) == _clean_by_episode(sweep_like.episodes)
    assert res.record["model"]["kind"] == "checkpoint" and res.record["model"]["name"] == "protonet"
    assert res.record["model"]["weights_sha256"] and {r["method"] for r in res.rows} == {"protonet"}


@pytest.mark.slow
def test_a_sweep_and_evaluate_in_fresh_processes_see_identical_episodes(manifest: Path, tmp_path: Path) -> None:
    """``advmeta sweep --episodes`` (Ray trials) and ``advmeta evaluate --checkpoint`` of its trial
    (another fresh process) evaluate the manifest's episodes: same hash, same per-episode clean accuracy."""
    grid = tmp_path / "one.toml"
    grid.write_text('description = "one ProtoNet trial"\n[[tables]]\nname = "one"\nmethods = ["protonet"]\n'
                    'k_shot = [1]\nn_way = 3\n[[tables.evals]]\nscenario = "whitebox"\nattacks = ["fgsm"]\n'
                    'eps = ["8/255"]\nsupport = ["clean"]\nquery = ["adv"]\n')
    sweep = tmp_path / "sweep"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "advmeta", "sweep", "--grid", str(grid), "--dataset", "glyphs",
                           "--budget", "smoke", "--episodes", str(manifest), "-o", str(sweep), "--quiet", "--no-report",
                           "--num-cpus", "1"], capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from advmeta.data.manifest import read_manifest

    digest = read_manifest(manifest).hash
    swept = pd.read_parquet(sweep / "episodes.parquet")
    assert set(swept["episodes_hash"]) == {digest}
    ckpt = next(sweep.glob("trials/*/work/checkpoint.pt"))
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "advmeta", "evaluate", "--checkpoint", str(ckpt), "--eps", "8/255",
                           "--budget", "smoke", "--episodes", str(manifest), "-o", str(out), "-q"],
                          capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr
    evaluated = pd.read_parquet(out / "episodes.parquet")
    assert set(evaluated["episodes_hash"]) == {digest}
    a, b = (_clean_by_episode(f.to_dict("records")) for f in (swept, evaluated))
    assert a and {i: a[i] for i in b} == b
