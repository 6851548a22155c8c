"""Real small sweeps on Ray Tune with the toy family: resume, retries, error records, determinism.

The toy family (tests/toy_family.py) trains in milliseconds, so these tests exercise the Ray
layer itself; one test runs the real core end to end on a tiny budget.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from advmeta.errors import ResourceError
from advmeta.results import EPISODE_COLUMNS, SUMMARY_COLUMNS
from advmeta.plan.budgets import get_budget
from advmeta.plan.grids import expand
from advmeta.ledger import Ledger
from advmeta.tune.runner import SweepOptions, run_sweep

METRICS = ["acc", "acc_ci95", "loss"]


@pytest.fixture(scope="module")
def ray_cluster() -> object:
    """One small local Ray cluster for the module (RAY.md: small object store, quiet)."""
    ray = pytest.importorskip("ray")
    from advmeta.tune.session import quiet_environment

    saved = dict(os.environ)
    quiet_environment(local_cluster=True)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, object_store_memory=512 * 2**20, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


def toy_grid(gammas: list[float], **hp: object) -> dict[str, object]:
    hparams: dict[str, object] = {"gamma": gammas}
    hparams.update({k: [v] for k, v in hp.items()})
    return {"tables": [{"name": "toy", "methods": ["toy"], "k_shot": [1], "hparams": hparams,
                        "evals": [{"scenario": "whitebox", "attacks": ["pgd"], "eps": ["2/255", "8/255"],
                                   "support": ["clean"], "query": ["clean", "adv"]}]}]}


def specs_of(grid: dict[str, object], seed: int = 0, sweep: str = "toy") -> list:  # type: ignore[type-arg]
    return expand(sweep, grid, get_budget("smoke"), dataset="glyphs", seed=seed)


OPTS = SweepOptions(max_failures=1, progress=False)


def test_sweep_writes_documented_parquet(ray_cluster: object, tmp_path: Path) -> None:
    specs = specs_of(toy_grid([0.0, 2.0]))
    out = run_sweep("toy", specs, str(tmp_path), OPTS)
    assert out.complete and out.done == 2 and out.failed == 0
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    episodes = pd.read_parquet(tmp_path / "episodes.parquet")
    for frame, columns in ((summary, SUMMARY_COLUMNS), (episodes, EPISODE_COLUMNS)):
        assert list(frame.columns[: len(columns)]) == [c.name for c in columns]
        for col in columns:
            assert str(frame[col.name].dtype) == col.dtype, col.name
    assert str(summary["hp_gamma"].dtype) == "float64"
    assert set(summary["trial_id"]) == {s.trial_id for s in specs}
    assert (summary["status"] == "ok").all() and summary["ray_version"].str.match(r"\d").all()
    # one clean row and one per (attack, ε) for each trial
    assert len(summary) == 2 * 3
    assert len(episodes) == len(summary) * 4
    # A narrower re-run into the same folder keeps the earlier trials' rows.
    narrow = run_sweep("toy", specs[:1], str(tmp_path), OPTS)
    assert narrow.done == 1
    again = pd.read_parquet(tmp_path / "summary.parquet")
    assert set(again["trial_id"]) == {s.trial_id for s in specs} and len(again) == len(summary)


def test_same_seed_gives_identical_metrics(ray_cluster: object, tmp_path: Path) -> None:
    specs = specs_of(toy_grid([1.0, 3.0]), seed=7)
    frames = []
    for name in ("a", "b"):
        run_sweep("toy", specs, str(tmp_path / name), OPTS)
        frames.append(pd.read_parquet(tmp_path / name / "summary.parquet")
                      .sort_values(["trial_id", "attack", "eps_str"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(frames[0][["trial_id", *METRICS]], frames[1][["trial_id", *METRICS]])
    assert not {s.trial_id for s in specs_of(toy_grid([1.0, 3.0]), seed=8)} & set(frames[0]["trial_id"])


def test_crashes_are_retried_from_checkpoint_then_recorded(ray_cluster: object, tmp_path: Path) -> None:
    once = specs_of(toy_grid([2.0], crash_at=4, crash_times=1))  # crashes once: the retry succeeds
    always = specs_of(toy_grid([0.0], crash_at=1, crash_times=99))  # crashes on every attempt
    fine = specs_of(toy_grid([4.0]))
    out = run_sweep("toy", once + always + fine, str(tmp_path), SweepOptions(max_failures=1, progress=False))
    assert (out.done, out.failed, out.pending) == (2, 1, 0)
    work = Path(Ledger(str(tmp_path)).work_dir(once[0].trial_id))
    assert (work / "crashes").read_text() == "1"
    # the retry resumed from the checkpoint at iteration 3, not from scratch
    progress = next((tmp_path / "ray").glob(f"run-*/{once[0].trial_id}/progress.csv"))
    iterations = pd.read_csv(progress)["iteration"].dropna().tolist()
    assert iterations.count(3.0) == 1 and 6.0 in iterations
    # Tune's copies of the checkpoints are gone once its run is over (the trial folders hold them)
    assert not list((tmp_path / "ray").glob("run-*/*/checkpoint_*")) and list(tmp_path.glob("trials/*/work/*.json"))
    # the trial that kept failing is in the results, with its error, not dropped
    assert (Path(Ledger(str(tmp_path)).work_dir(always[0].trial_id)) / "crashes").read_text() == "2"
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    errors = summary[summary["status"] == "error"]
    assert list(errors["trial_id"]) == [always[0].trial_id]
    assert errors["error"].str.contains("ToyCrash: injected crash at iteration 1").all()
    assert errors["acc"].isna().all() and (errors["method"] == "toy").all()
    assert set(summary.loc[summary["status"] == "ok", "trial_id"]) == {once[0].trial_id, fine[0].trial_id}
    # a re-run retries the failed trial only; finished trials are not recomputed
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("trials/*/DONE.json")}
    again = run_sweep("toy", once + always + fine, str(tmp_path), SweepOptions(max_failures=0, progress=False))
    assert (again.done, again.failed) == (2, 1)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert (Path(Ledger(str(tmp_path)).work_dir(always[0].trial_id)) / "crashes").read_text() == "3"


def test_gpu_request_on_cpu_cluster_fails_fast(ray_cluster: object, tmp_path: Path) -> None:
    import ray

    if ray.cluster_resources().get("GPU", 0):
        pytest.skip("this cluster has a GPU")
    t0 = time.perf_counter()
    with pytest.raises(ResourceError, match="no GPU"):
        run_sweep("toy", specs_of(toy_grid([2.0])), str(tmp_path), SweepOptions(gpus_per_trial=0.25, progress=False))
    assert time.perf_counter() - t0 < 60  # an error before any trial, not Tune waiting for a GPU forever
    assert not list(tmp_path.glob("trials/*/DONE.json"))


def _grid_file(tmp_path: Path, gate: Path) -> Path:
    """Two toy trials that finish, three that wait at their second iteration until ``gate`` exists."""
    evals = '[[tables.evals]]\nscenario = "whitebox"\nattacks = ["pgd"]\neps = ["2/255"]\nquery = ["clean", "adv"]\n'
    path = tmp_path / "toy.toml"
    path.write_text(
        '[[tables]]\nname = "toy"\nmethods = ["toy"]\nk_shot = [1]\n[tables.hparams]\n'
        "gamma = [0.0, 1.0]\nseconds = [0.1]\n" + evals
        + '[[tables]]\nname = "held"\nmethods = ["toy"]\nk_shot = [1]\n[tables.hparams]\n'
        f"gamma = [2.0, 3.0, 4.0]\nseconds = [0.1]\ngate = [\"{gate}\"]\n" + evals
    )
    return path


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    """Read ``proc``'s stderr until a line holds ``text`` (an event the run itself announces; no
    time window). Fails if the process ends first."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"the run ended (exit {proc.wait()}) without printing {text!r}: {''.join(seen)[-2000:]}")


def _session_processes(session: str) -> list[str]:
    """The processes of a Ray session still alive once the resumed run has returned (it ends them
    and waits; a zombie not yet reaped by init is not alive)."""
    return [p for p in os.listdir("/proc") if p.isdigit() and session in _proc_cmdline(p) and not _zombie(p)]


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _proc_cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_sigkill_of_the_driver_then_resume_runs_every_trial_once(ray_cluster: object, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    grid = _grid_file(tmp_path, gate)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "advmeta", "sweep", "--grid", str(grid), "--budget", "smoke", "--dataset",
           "glyphs", "--output", str(out), "--no-report"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _wait_for_line(proc, "2/5 done")  # the driver's own progress line: two trials have written DONE.json
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any cleanup
        proc.wait(timeout=30)
        done_before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/DONE.json")}
        assert len(done_before) == 2, "the three gated trials cannot finish before the kill"
        # The dead driver's lock names its local Ray session; the next run takes the folder over
        # and ends what that session left running.
        from advmeta.lock import read_lock

        session = os.path.basename(str((read_lock(out) or {}).get("ray_session", "")))
        assert session.startswith("session_")
        gate.touch()  # the resumed run lets the held trials finish
        resumed = subprocess.run([sys.executable, "-m", "advmeta", "sweep", "--resume", "--output", str(out),
                                  "--no-report", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        left = _session_processes(session)
        assert not left, f"processes of the killed run's Ray session survived: {left}"
        assert read_lock(out) is None  # the resumed run released the folder
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # cleanup, whatever the assertions found
        except ProcessLookupError:
            pass
    summary = pd.read_parquet(out / "summary.parquet")
    manifest = json.loads((out / "sweep.json").read_text())
    ids = {t["trial_id"] for t in manifest["trials"]}
    assert len(ids) == 5
    assert set(summary["trial_id"]) == ids
    from advmeta.tune.runner import checkpoint_stage

    # a trial killed while it handed Tune a checkpoint left its copy; the resumed trial removed it
    assert not [t for t in ids if checkpoint_stage(str(out), t).exists()]
    assert len(list(out.glob("ray/run-*"))) == 2 and not list(out.glob("ray/run-*/*/checkpoint_*"))  # the killed run's too
    assert (summary.groupby("trial_id").size() == 2).all()  # clean + pgd, once per trial
    assert (summary["status"] == "ok").all()
    for tid, stamp in done_before.items():  # finished trials were not recomputed
        assert (out / "trials" / tid / "DONE.json").stat().st_mtime_ns == stamp


def test_real_core_tiny_sweep(ray_cluster: object, tmp_path: Path, data_root: Path) -> None:
    """Real MAML trials on Omniglot at the smoke budget, through the whole Ray layer. The second
    one's fine-tuning diverges (inner learning rate 1e30): an error row naming the non-finite loss,
    never an accuracy computed from NaN logits."""
    evals = [{"scenario": "whitebox", "attacks": ["fgsm"], "eps": ["2/255"]}]
    grid = {"tables": [{"name": "t", "methods": ["maml"], "k_shot": [1], "evals": evals},
                       {"name": "nan", "methods": ["maml"], "k_shot": [1], "evals": evals,
                        "hparams": {"inner_lr": [1e30], "test_inner_steps": [10]}}]}
    specs = expand("real", grid, get_budget("smoke"), dataset="omniglot", seed=0)
    assert len(specs) == 2
    out = run_sweep("real", specs, str(tmp_path), SweepOptions(progress=False, data_root=str(data_root), device="cpu"))
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert (out.done, out.failed) == (1, 1), summary["error"].tolist()
    ok, bad = summary[summary["status"] == "ok"], summary[summary["status"] == "error"]
    assert {"finetune", "whitebox"} <= set(ok["scenario"])
    assert ok["acc"].between(0, 100).all()
    assert len(bad) == 1 and bad["acc"].isna().all() and bad["error"].str.contains("NonFiniteLossError").all()
    assert not pd.read_parquet(tmp_path / "episodes.parquet")["trial_id"].isin(bad["trial_id"]).any()


def test_ray_data_bank_matches_the_single_process_loop(ray_cluster: object, tmp_path: Path) -> None:
    """Ray Data (actor pool, 0.5 CPU each) writes the same episodes as the in-process loop,
    as standard Arrow tensors, and they are the sampler's episodes attacked by the surrogate."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from advmeta.bank import BankSpec, EpisodeBank, episodes_pair, surrogate_key
    from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot
    from advmeta.surrogate import SurrogateConfig, get_surrogate
    from advmeta.tune.banks import BankJob, generate

    ds = load_fewshot("glyphs", image_size=16)
    spec = BankSpec(dataset="glyphs", split="test", n_way=3, k_shot=2, q_query=2, seed=3, n_episodes=6,
                    eps=("2/255", "8/255"), surrogate=surrogate_key("conv4", 5, 3, 16),
                    image_shape=tuple(ds.image_shape), image_size=16)  # type: ignore[arg-type]
    job = BankJob(spec, None, surrogate_steps=5, batch_size=4, actors=2, cpus_per_actor=0.5)
    ray_out = generate(str(tmp_path / "ray"), job)
    local_out = generate(str(tmp_path / "local"), BankJob(**{**job.__dict__, "actors": 0}))
    assert ray_out["rows"] == local_out["rows"] == 12
    table = pq.read_table(tmp_path / "ray")
    assert str(table.schema.field("query_adv_x").type).startswith("extension<arrow.fixed_shape_tensor")
    ray_bank, local_bank = EpisodeBank(str(tmp_path / "ray")), EpisodeBank(str(tmp_path / "local"))
    sampler = EpisodeSampler(ds, "test", EpisodeSpec(n_way=3, k_shot=2, q_query=2), seed=3)
    surrogate = get_surrogate(ds, SurrogateConfig(steps=5, seed=3))
    for eps in spec.eps:
        a, b = ray_bank.arrays(range(6), eps), local_bank.arrays(range(6), eps)
        assert a["query_adv_x"].shape == (6, 6, *ds.image_shape)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        clean, adv = episodes_pair(ray_bank, [4, 1], eps)
        ref = sampler.sample([4, 1])
        assert torch.equal(clean.query_x, ref.query_x) and torch.equal(clean.classes, ref.classes)
        ref_adv = surrogate.attack_episodes(ref, float(eps.split("/")[0]) / 255, "test")
        assert torch.equal(adv.support_x, ref_adv.support_x)  # attacked per episode: exact
        assert (adv.query_x - clean.query_x).abs().max() <= float(eps.split("/")[0]) / 255 + 1e-6


def test_ray_data_training_bank_feeds_adml(ray_cluster: object, tmp_path: Path) -> None:
    """A ``train`` bank written by Ray Data (as ``advmeta episodes --split train``) is what the
    sweep's ADML trials find, and training from it gives the parameters of attacking in-process."""
    import torch

    from advmeta.bank import BankSpec, EpisodeBank
    from advmeta.train import TrainConfig, train, training_bank_request
    from advmeta.tune.banks import BankJob, generate
    from advmeta.families import RunContext
    from advmeta.families.meta import train_bank_source

    cfg = TrainConfig(method="adml", hparams={"inner_steps": 1, "test_inner_steps": 1, "train_eps": "8/255"},
                      dataset="glyphs", image_size=16, n_way=3, k_shot=1, q_query=2, meta_batch=2, iterations=3,
                      width=8, val_every=3, val_episodes=2, checkpoint_every=3, device="cpu", surrogate_steps=5, seed=3)
    req = training_bank_request(cfg)
    assert req is not None and (req["k_shot"], req["q_query"], req["n_episodes"]) == (2, 4, 6)
    spec = BankSpec(dataset="glyphs", split="train", n_way=3, k_shot=2, q_query=4, seed=3, n_episodes=6,
                    eps=tuple(req["eps"]), surrogate=req["surrogate"], image_shape=(1, 16, 16), image_size=16)
    generate(str(tmp_path / "banks" / "train"), BankJob(spec, None, surrogate_steps=5, batch_size=4, actors=2))
    bank = train_bank_source(RunContext(sweep_dir="", banks={"test": str(tmp_path / "banks")}), cfg)
    assert isinstance(bank, EpisodeBank) and bank.spec == spec
    path, _ = train(cfg, tmp_path / "banked", progress=False, bank=bank)
    ref_path, _ = train(cfg, tmp_path / "ref", progress=False)
    state, ref = (torch.load(p, weights_only=False)["state"]["model"] for p in (path, ref_path))
    for k in ref:
        assert torch.equal(state[k], ref[k]), k


@pytest.mark.slow
def test_sweep_adml_trial_reads_its_training_bank(ray_cluster: object, tmp_path: Path) -> None:
    """End to end: the sweep makes the smoke ``train`` bank with Ray Data and the ADML trial reads it."""
    grid = {"tables": [{"name": "t", "methods": ["adml"], "k_shot": [1],
                        "evals": [{"scenario": "whitebox", "attacks": ["fgsm"], "eps": ["2/255"]}]}]}
    specs = expand("adml", grid, get_budget("smoke"), dataset="glyphs", seed=0)
    out = run_sweep("adml", specs, str(tmp_path), SweepOptions(progress=False, device="cpu"))
    assert out.done == 1, pd.read_parquet(tmp_path / "summary.parquet")["error"].tolist()
    done = json.loads((tmp_path / "trials" / specs[0].trial_id / "DONE.json").read_text())
    assert "/glyphs-train-" in done["metrics"]["episode_bank"]


def test_a_second_sweep_on_a_busy_folder_is_refused_and_the_first_finishes(ray_cluster: object, tmp_path: Path) -> None:
    """Two runs on one folder used to corrupt it (the same bank written twice); now the second exits 2."""
    gate = tmp_path / "gate"
    grid = _grid_file(tmp_path, gate)
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "advmeta", "sweep", "--grid", str(grid), "--budget", "smoke", "--dataset",
           "glyphs", "--output", str(out), "--no-report", "--quiet"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    first = subprocess.Popen([*cmd[:-1]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_line(first, "estimate:")  # it plans holding the folder's lock: the lock is taken
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "in use by another run" in second.stderr and f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # the gated trials hold the first run until now
        gate.touch()
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    summary = pd.read_parquet(out / "summary.parquet")
    assert summary["trial_id"].nunique() == 5 and (summary["status"] == "ok").all()
    assert not (out / ".advmeta.lock").exists()  # released on exit
