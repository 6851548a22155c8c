"""Run a sweep: :func:`run` is the one road of ``advmeta sweep`` and ``advmeta tune`` (plan the
request, hold the folder's lock, run, finish); :func:`run_sweep` hands the trials not yet finished
to a Ray Tune ``Tuner`` and merges the results.

"Every trial exactly once, nothing finished recomputed" comes from the completion ledger
(:mod:`advmeta.ledger`): each run starts a fresh Tuner over the trials without a
``DONE.json``, each of those resumes from its own checkpoints, and the merged tables hold each
trial of the manifest once. This survives a SIGKILL of the driver at any moment, which a
restore of Tune's experiment state (saved periodically) alone would not.

Each trial's process runs :func:`run_trial`, the function trainable: train with the core, report
to Tune, evaluate, record. Resuming has two layers. Within one sweep run, Ray Tune retries a
crashed trial (``FailureConfig(max_failures)``) and :func:`ray.tune.get_checkpoint` hands back
the last checkpoint reported with ``tune.report``. Across runs (``advmeta sweep --resume`` after
the driver was killed), the trial's work folder in the ledger still holds its checkpoints and the
core's trainers continue from there; finished trials are skipped through the ledger and never
recomputed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advmeta.env import provenance, set_threads
from advmeta.errors import ConfigError
from advmeta.plan.estimate import trial_cost
from advmeta.families import RunContext, TrialOutput, get_family
from advmeta.ledger import Ledger
from advmeta.outcome import SweepOutcome
from advmeta.plan.trial import Resources, TrialSpec
from advmeta.tune.session import precheck_gpus, ray_session, resolve_resources

if TYPE_CHECKING:
    from advmeta.plan.grids import GridRequest
    from advmeta.plan.space import SearchRequest
    from advmeta.plan.sweeps import Plan


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (none of this changes a trial's identity).

    Attributes:
        address: Ray cluster to join (``None``: ``RAY_ADDRESS`` or a new local cluster).
        cpus_per_trial: CPUs per trial (``None``: 1).
        gpus_per_trial: GPUs per trial, fractional allowed (``None``: 1 if the cluster has GPUs).
        max_failures: retries of a crashed trial from its last checkpoint.
        num_cpus: CPUs of a new local cluster (``None``: the machine's).
        object_store_mb: object store of a new local cluster (``None``: Ray's default).
        data_root: data folder passed to the core.
        device: ``auto`` | ``cpu`` | ``cuda`` for the core.
        scheduler: ``none`` or ``asha`` (early stopping on ``metric``).
        metric: metric reported by training that ASHA compares.
        mode: ``max`` or ``min``.
        progress: draw the progress line on stderr.
        banks: episode banks by purpose (``{"test": folder}``), forwarded to the families.
        make_banks: make the episode banks the trials' surrogate evaluations (and, when
            small, ADML / MAML-AD training) need with Ray Data, once per episode shape, before
            the trials start; in ``banks["test"]``, default ``<sweep>/banks``.
        reuse_actors: let Tune reuse trial processes (saves the import cost per trial).
        episodes: standard test-episode manifests the trials evaluate on (``RunContext.episodes``).
        claim_looks: planned looks of the sequential claims (:mod:`advmeta.tune.extend`; 1: the
            trials' own evaluation only); recorded in the manifest (``sequential.looks``), whose
            claims then use intervals valid over that many looks.
        loggers: Ray Tune logger callbacks to add (:mod:`advmeta.tune.loggers`: ``tensorboard``,
            ``mlflow``, ``wandb``, ``csv``), fed with each trial's learning curve as it trains.
    """

    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_failures: int = 1
    num_cpus: int | None = None
    object_store_mb: int | None = None
    data_root: str | None = None
    device: str = "auto"
    scheduler: str = "none"
    metric: str = "val_acc"
    mode: str = "max"
    progress: bool = True
    banks: dict[str, str] = field(default_factory=dict)
    make_banks: bool = True
    reuse_actors: bool = True
    episodes: tuple[str, ...] = ()
    loggers: tuple[str, ...] = ()
    claim_looks: int = 1


def _throttled(fn: Any, seconds: float) -> Any:
    """``fn`` called at most once per ``seconds`` (partial results while a long sweep runs)."""
    last = [-float("inf")]

    def call(*_: Any) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            fn()

    return call


def _scheduler(opts: SweepOptions, max_t: int) -> Any:
    if opts.scheduler == "none":
        return None
    if opts.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(time_attr="training_iteration", metric=opts.metric, mode=opts.mode,
                             max_t=max(1, max_t), grace_period=1, reduction_factor=2)
    raise ConfigError(f"unknown scheduler {opts.scheduler!r}; known: none, asha")


def _error_text(err: BaseException | None) -> str:
    if err is None:
        return "unknown error"
    # Tune wraps the trial's exception; its cause carries the user-facing type and message.
    inner = getattr(err, "cause", None) or err.__cause__ or err
    msg = str(inner).strip().splitlines()
    text = next((m for m in reversed(msg) if m.strip()), "") if msg else ""
    return f"{type(inner).__name__}: {text}"[:2000]


def run(source: GridRequest | SearchRequest | Callable[[], Plan], folder: str, opts: SweepOptions, *,
        dry_run: bool = False, report: bool = True) -> int:
    """The one road of ``advmeta sweep`` and ``advmeta tune``, and the Python API that runs what they run.

    Plans ``source`` (:func:`advmeta.plan.plan_grid` holding the folder's lock — a calibration
    writes there; :func:`advmeta.plan.plan_search` before taking it — an impossible shape is an
    error before the folder is touched; a callable: a plan read back for ``--resume``), then,
    holding the lock, lists the trials (``dry_run``) or runs them (:func:`run_sweep`) and finishes
    (:func:`advmeta.outcome.finish`: wall time, report, summary lines). Returns the exit code
    (0 done, 1 some failed, 130 interrupted)::

        from advmeta.plan import GridRequest
        from advmeta.tune.runner import SweepOptions, run
        run(GridRequest("paper-tables", budget="smoke"), "results/smoke", SweepOptions())

    Raises:
        ConfigError: a bad request (an unknown grid, method or option; a malformed value), or a
            folder another run holds.
    """
    from advmeta.lock import folder_lock
    from advmeta.outcome import finish
    from advmeta.plan.grids import GridRequest, plan_grid
    from advmeta.plan.space import SearchRequest, plan_search

    started = time.time()
    with contextlib.ExitStack() as held:

        def hold() -> None:  # the folder's lock, from the moment the request is parsed to the summary
            held.enter_context(folder_lock(folder, enabled=not dry_run))  # another run's: exit 2 naming it

        if isinstance(source, SearchRequest):
            plan = plan_search(source, folder, dry_run=dry_run, progress=opts.progress)
            hold()
        elif isinstance(source, GridRequest):  # held before the calibration reads or writes the folder
            plan = plan_grid(source, folder, dry_run=dry_run, progress=opts.progress, hold=hold)
        else:
            hold()
            plan = source()
        if dry_run:
            for spec in plan.trials:  # a grid's trials also name their tables
                tables = f"  [{', '.join(spec.table)}]" if spec.table != ("tune",) else ""
                print(f"{spec.trial_id}  {spec.label}{tables}")
            print(f"{len(plan.trials)} trials -> {folder}")
            return 0
        sources = tuple(plan.manifest.get("episodes") or ())
        if sources:  # standard episodes: no surrogate banks (they hold the seed's episodes)
            opts = dataclasses.replace(opts, episodes=sources, banks={}, make_banks=False)
        opts = dataclasses.replace(opts, claim_looks=plan.claim_looks)
        local = "://" not in folder
        previous = float((Ledger(folder).read_manifest() or {}).get("wall_seconds_total", 0.0) or 0.0) if local else 0.0
        info = {**plan.manifest, "command": shlex.join(["advmeta", *sys.argv[1:]]), "cwd": os.getcwd(),
                "started_at": started}
        outcome = run_sweep(plan.name, plan.trials, folder, opts, info)
        # the report is written inside the lock
        return finish(plan.name, folder, outcome, started, previous, report=report, calibrated=plan.calibrated_now)


def run_sweep(name: str, specs: Sequence[TrialSpec], sweep_dir: str, opts: SweepOptions,
              info: dict[str, Any] | None = None) -> SweepOutcome:
    """Run (or continue) a sweep of ``specs`` whose results live in ``sweep_dir``.

    Args:
        name: the sweep's name (progress line, ``sweep`` column).
        specs: every trial of the sweep (finished ones are skipped).
        sweep_dir: the sweep folder (local path or pyarrow URI).
        opts: how to run.
        info: extra facts for the manifest (grid, budget, command).

    Returns:
        A :class:`SweepOutcome`; the merged tables are also written to ``sweep_dir``.

    Raises:
        ResourceError: GPUs requested where the cluster has none (before any trial starts).
    """
    precheck_gpus(opts.gpus_per_trial, opts.address)  # before Ray is even imported
    from advmeta.tune.loggers import check_loggers

    check_loggers(opts.loggers)  # a missing package is an error before anything runs
    from ray import tune

    from advmeta.tune.progress import SweepProgress

    specs = list(dict((s.trial_id, s) for s in specs).values())
    ledger = Ledger(sweep_dir)
    ledger.write_manifest({"name": name, **(info or {}), "sequential": {"looks": opts.claim_looks}}, specs)
    pending = _pending(specs, ledger)
    t0 = time.perf_counter()
    trial_seconds: list[float] = []
    resources: Resources | None = None
    if pending:
        with ray_session(opts.address, opts.num_cpus, opts.object_store_mb) as cluster:
            resources = resolve_resources(opts.cpus_per_trial, opts.gpus_per_trial, cluster)
            by_id = {s.trial_id: s for s in pending}
            banks = dict(opts.banks)
            if opts.make_banks:
                banks.setdefault("test", ledger.root.rstrip("/") + "/banks")
                _make_banks(pending, banks["test"], opts, resources)
            ctx = RunContext(sweep_dir=ledger.root, data_root=opts.data_root, device=opts.device, banks=banks,
                             episodes=opts.episodes)
            # Each trial's spec carries what it runs with (its process sets its threads from it).
            pending = [dataclasses.replace(s, resources=resources) for s in pending]
            # The TrialSpec objects themselves reach the trials' processes (Tune's object store, once);
            # a trial's config is its id and parameters, which the loggers record.
            specs_by_id = {s.trial_id: s for s in pending}
            trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx, specs=specs_by_id),
                                            resources.as_tune())
            progress = SweepProgress(name, len(specs), len(specs) - len(pending), resources.max_concurrent,
                                     enabled=opts.progress,
                                     on_complete=_throttled(lambda: ledger.merge(specs), 30.0), specs=by_id)
            grid = _tuner(name, trainable, pending, opts, ledger, progress, by_id).fit()
            trial_seconds = _record_results(grid, by_id, ledger, opts)
            _drop_tune_checkpoints(ledger)
            if opts.claim_looks > 1:  # claims decided, not only tested: more paired episodes where needed
                from advmeta.tune.extend import extend_for_claims

                extend_for_claims(specs, ledger, ctx, resources, opts.claim_looks, _finish_rows, opts.progress)
    summary, episodes = ledger.merge(specs)
    status = [ledger.status_of(s.trial_id) for s in specs]
    return SweepOutcome(summary, episodes, len(specs), status.count("ok"), status.count("error"),
                        status.count("stopped"), status.count("pending"), time.perf_counter() - t0,
                        trial_seconds, resources)


def _pending(specs: Sequence[TrialSpec], ledger: Ledger) -> list[TrialSpec]:
    """The trials to run (:meth:`Ledger.to_run`), longest first; a trial with a checkpoint costs
    what is left of it."""
    pending = ledger.to_run(specs)
    trained = {s.trial_id for s in pending if ledger.local and (Path(ledger.work_dir(s.trial_id)) / "checkpoint.pt").is_file()}
    # stable: equal costs keep the grid's order
    return sorted(pending, key=lambda s: trial_cost(s, s.trial_id in trained), reverse=True)


def _tuner(name: str, trainable: Any, pending: Sequence[TrialSpec], opts: SweepOptions, ledger: Ledger,
           progress: Any, by_id: dict[str, TrialSpec]) -> Any:
    """The Ray Tune ``Tuner`` of the ``pending`` trials: one grid point per trial (its id and the
    parameters the loggers record), named after the trial, stored under the ledger's Ray folder."""
    from ray import tune

    from advmeta.tune.loggers import callbacks as logger_callbacks, trial_params

    max_t = max(int(s.train.get("iterations", s.train.get("epochs", 1))) for s in pending)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([trial_params(s) for s in pending])},
        tune_config=tune.TuneConfig(
            num_samples=1, scheduler=_scheduler(opts, max_t), reuse_actors=opts.reuse_actors,
            # the run name in TensorBoard, MLflow, W&B: what the trial is, then its id
            trial_name_creator=lambda t: f"{by_id[t.config['trial']['id']].label} {t.config['trial']['id']}",
            trial_dirname_creator=lambda t: t.config["trial"]["id"],
        ),
        run_config=tune.RunConfig(
            name="run-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f"),
            storage_path=_ray_storage(ledger), verbose=0,
            callbacks=[progress, *logger_callbacks(opts.loggers, name, ledger.root, ledger.local)],
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _drop_tune_checkpoints(ledger: Ledger) -> None:
    """Remove Tune's copies of the trials' checkpoints from every run of the sweep folder, once this
    run is over (their logs stay).

    They serve a trial Tune retries within its run; a later run starts a fresh Tuner, whose trials
    resume from the checkpoints in the sweep's own trial folders. Kept, they doubled the folder and
    grew it by another copy at every resume (a killed run's copies go at the next run's end).
    """
    import pyarrow.fs as pafs

    from advmeta.bank import filesystem

    fs, root = filesystem(_ray_storage(ledger))

    def folders(path: str) -> list[Any]:
        return [i for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                if i.type == pafs.FileType.Directory]

    for run in folders(root):
        for trial in folders(run.path):
            for entry in folders(trial.path):
                if entry.base_name.startswith("checkpoint_"):
                    fs.delete_dir(entry.path)


def _record_results(grid: Any, by_id: dict[str, TrialSpec], ledger: Ledger, opts: SweepOptions) -> list[float]:
    """Record what Tune's ``grid`` says of each trial that did not record itself (an error, an
    early stop by ASHA); the finished trials' own seconds."""
    trial_seconds: list[float] = []
    for result in grid:  # a ResultGrid (it iterates by __getitem__ and __len__)
        spec = by_id.get(str((result.config or {}).get("trial", {}).get("id")))
        if spec is None:
            continue
        metrics = result.metrics or {}
        if "trial_seconds" in metrics:
            trial_seconds.append(float(metrics["trial_seconds"]))
        if result.error is not None and not ledger.is_done(spec.trial_id):
            ledger.write_error(spec, _error_text(result.error))
        elif opts.scheduler != "none" and not ledger.is_done(spec.trial_id) and metrics:
            it = metrics.get("training_iteration", "?")
            ledger.write_error(spec, f"stopped early by ASHA after {it} reports", status="stopped")
    return trial_seconds


def _make_banks(specs: Sequence[TrialSpec], root: str, opts: SweepOptions, resources: Resources) -> None:
    """Make the missing episode banks with Ray Data (one actor per CPU, half a CPU each)."""
    import sys

    from advmeta.bank import requirements
    from advmeta.tune.banks import ensure_banks

    if not requirements(specs):
        return
    if opts.progress:
        print(f"episode banks: making the surrogate-attacked episodes once, in {root}", file=sys.stderr)
    gpus = 0.25 if resources.cluster_gpus > 0 and (opts.gpus_per_trial or 0) > 0 else 0.0
    ensure_banks(specs, root, opts.data_root, actors=max(1, int(resources.cluster_cpus)),
                 cpus_per_actor=0.5, gpus_per_actor=gpus)


def _ray_storage(ledger: Ledger) -> str:
    """Ray Tune's storage path: ``<sweep>/ray`` (an absolute path, or the URI for remote storage)."""
    if ledger.local:
        return ledger.path.rstrip("/") + "/ray"
    return ledger.root.rstrip("/") + "/ray"


# The trial's process --------------------------------------------------------------------------

_SKIP = {"sweep", "trial_id", "status", "error"}


def eps_sources(spec: TrialSpec) -> dict[str, str]:
    """``eps_str`` → where that ε came from (paper / calibrated / user / grid), from the trial's evals."""
    from advmeta.eps import format_eps

    out: dict[str, str] = {}
    for ev in spec.evals:
        for e in ev.get("eps", []) or []:
            try:
                out.setdefault(format_eps(e), str(ev.get("eps_source", "grid")))
            except Exception:  # noqa: BLE001 - a malformed ε is reported by the evaluation itself
                continue
    return out


def _finish_rows(rows: list[dict[str, Any]], spec: TrialSpec, device: str) -> list[dict[str, Any]]:
    """Add the id, status and provenance columns the core leaves to the runner."""
    sources = eps_sources(spec)
    prov = provenance(device)
    out = []
    for row in rows:
        full = {k: v for k, v in row.items() if k not in _SKIP}
        full.update({"sweep": spec.sweep, "trial_id": spec.trial_id, "status": "ok", "error": ""})
        full["eps_source"] = sources.get(str(full.get("eps_str")), "") if full.get("eps") else ""
        full["ray_version"] = prov["ray_version"]  # the core's own rows say "absent"
        for key, value in prov.items():
            full.setdefault(key, value)
        out.append(full)
    return out


def _finish_curves(rows: list[dict[str, Any]], spec: TrialSpec, device: str) -> list[dict[str, Any]]:
    """The id and provenance columns of a trial's learning-curve rows."""
    if not rows:
        return []
    extra = {"sweep": spec.sweep, "trial_id": spec.trial_id, "budget": spec.budget, **provenance(device)}
    return [{**r, **extra} for r in rows]


def _restore_tune_checkpoint(work: Path) -> None:
    """Copy the files of Tune's last checkpoint into ``work`` where they are missing there."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return
    with ckpt.as_directory() as src:
        for path in Path(src).rglob("*"):
            target = work / path.relative_to(src)
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def _reporter(ledger: Ledger, tid: str, work: Path, last_step: list[int]) -> Any:
    """The ``report(metrics, checkpoint_path)`` a trial's trainer calls: its metrics to Tune (the
    scalars, with the trainer's iteration as ``timesteps_total``, kept in ``last_step``) and, with a
    checkpoint, the work folder synced to the ledger and the checkpoint handed to Tune."""
    from ray import tune

    def report(metrics: dict[str, Any], ckpt_path: Path | None) -> None:
        clean = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}
        clean["trial_id"] = tid
        step = clean.get("iteration")
        if isinstance(step, int):  # the loggers' x axis: the trainer's own iteration / epoch
            clean["timesteps_total"] = step
            last_step[:] = [step]
        if ckpt_path is None:
            tune.report(clean)
            return
        ledger.sync_work(tid, str(work), upload=True)
        stage = checkpoint_stage(ledger.path, tid)
        shutil.rmtree(stage, ignore_errors=True)  # what a killed run of this trial left there
        stage.mkdir(parents=True)
        try:
            src = Path(ckpt_path)
            if src.is_dir():
                shutil.copytree(src, stage / src.name)
            else:
                shutil.copy2(src, stage / src.name)
            tune.report(clean, checkpoint=tune.Checkpoint.from_directory(str(stage)))
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    return report


def checkpoint_stage(root: str, tid: str) -> Path:
    """The folder a trial's checkpoint is copied to for Tune, one per trial of a sweep folder (in the
    system's temporary folder): a trial killed while it reports leaves one copy, which its next
    report (the resumed trial's) removes — not one more copy in the temporary folder at every kill."""
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"{root}#{tid}").hex[:16]
    return Path(tempfile.gettempdir()) / f"advmeta-ckpt-{key}"


def run_trial(config: dict[str, Any], ctx: RunContext, specs: dict[str, TrialSpec]) -> None:
    """Ray Tune function trainable for one trial.

    Args:
        config: ``{"trial": {"id": trial_id, …}}`` — the id and the parameters the loggers record
            (:func:`advmeta.tune.loggers.trial_params`).
        ctx: where the sweep lives and how trials run (shared by every trial).
        specs: every trial's spec by id, as the grid or search made it (and the runner's resources).
    """
    from ray import tune

    spec: TrialSpec = specs[config["trial"]["id"]]
    ledger = Ledger(ctx.sweep_dir)
    tid = spec.trial_id
    shutil.rmtree(checkpoint_stage(ledger.path, tid), ignore_errors=True)  # a killed run's copy, if any
    if ledger.is_done(tid):
        # Finished in an earlier run whose driver died before it could record the fact.
        tune.report({**ledger.final_metrics(tid), "trial_id": tid, "done": 1})
        return
    ledger.write_spec(spec)
    cpus = max(1, int(spec.resources.cpus_per_trial)) if spec.resources is not None else ctx.threads
    threads = max(1, int(float(os.environ.get("OMP_NUM_THREADS", cpus) or 1)), cpus)
    set_threads(threads)
    work = Path(ledger.work_dir(tid))
    work.mkdir(parents=True, exist_ok=True)
    ledger.sync_work(tid, str(work), upload=False)
    _restore_tune_checkpoint(work)

    last_step: list[int] = []  # the trainer's last reported iteration (the loggers' x axis)
    report = _reporter(ledger, tid, work, last_step)

    device = ctx.device
    if device == "auto":
        import ray

        # A trial uses a GPU only if Ray gave it one (GPU-less trials on a GPU node stay off it).
        device = "cuda" if ray.get_gpu_ids() else "cpu"
    run_ctx = RunContext(sweep_dir=ctx.sweep_dir, work_dir=str(work), data_root=ctx.data_root,
                         device=device, threads=threads, banks=ctx.banks, progress=False, episodes=ctx.episodes)
    family = get_family(spec.family)
    t0 = time.perf_counter()
    out = TrialOutput(*family.run(spec, run_ctx, report))
    rows, episode_rows, final = out.rows, out.episodes, dict(out.final)
    device = str(final.pop("device", "cpu"))
    rows = _finish_rows(rows, spec, device)
    episode_rows = [{**r, "sweep": spec.sweep, "trial_id": tid} for r in episode_rows]
    check_rows = [{**r, "sweep": spec.sweep, "trial_id": tid} for r in out.checks]
    curve_rows = _finish_curves(out.curves, spec, device)
    final = {k: v for k, v in final.items() if isinstance(v, (int, float, str, bool))}
    final["trial_seconds"] = time.perf_counter() - t0
    ledger.write_result(spec, rows, episode_rows, final, check_rows, curve_rows)
    tune.report({**final, "trial_id": tid, "done": 1, **({"timesteps_total": last_step[0]} if last_step else {})})
