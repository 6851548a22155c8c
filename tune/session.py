"""Starting Ray quietly, joining clusters, and checking the resources a sweep asks for.

Ray's own logs, tables and progress bars stay out of the terminal (docs/performance.md#ray-a-quiet-start), so the runner can draw its single progress line on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from advmeta.errors import ConfigError, ResourceError
from advmeta.plan.trial import Resources

_QUIET_ENV = {
    # The new output engine prints its trial table even at verbose=0.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Trials get absolute paths from us; keep the driver's working directory.
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    # C++ core-worker warnings (e.g. about actor constructor arguments) go to the driver's stderr.
    "RAY_BACKEND_LOG_LEVEL": "fatal",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
}


def quiet_environment(local_cluster: bool) -> None:
    """Set the environment variables that keep Ray silent (values the user set are kept).

    Args:
        local_cluster: we start a private local cluster; token authentication (which only
            warns on a single machine) is then disabled unless ``RAY_AUTH_MODE`` says otherwise.
    """
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if local_cluster:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Tune logs failed trials at ERROR ("Trials did not complete"); the runner reports them itself.
    for name in ("ray", "ray.tune", "ray.data", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def resolve_resources(cpus_per_trial: float | None, gpus_per_trial: float | None,
                      cluster: dict[str, float]) -> Resources:
    """Per-trial resources, defaulting to what the cluster has; fail fast on impossible requests.

    Defaults: one CPU per trial; one GPU per trial when the cluster has GPUs (zero otherwise).

    Raises:
        ResourceError: GPUs requested on a cluster without any, or more per trial than exist.
        ConfigError: negative or zero-CPU requests.
    """
    cpus = float(cluster.get("CPU", 0.0))
    gpus = float(cluster.get("GPU", 0.0))
    cpt = 1.0 if cpus_per_trial is None else float(cpus_per_trial)
    gpt = (1.0 if gpus > 0 else 0.0) if gpus_per_trial is None else float(gpus_per_trial)
    if cpt < 0 or gpt < 0:
        raise ConfigError("--cpus-per-trial and --gpus-per-trial must be >= 0")
    if cpt == 0 and gpt == 0:
        raise ConfigError("a trial needs some resources: --cpus-per-trial or --gpus-per-trial > 0")
    if gpt > 0 and gpus == 0:
        raise ResourceError(f"--gpus-per-trial {gpt:g} requested but the Ray cluster has no GPU "
                            "(use --gpus-per-trial 0, or --address of a cluster with GPUs)")
    if gpt > gpus:
        raise ResourceError(f"--gpus-per-trial {gpt:g} exceeds the cluster's {gpus:g} GPUs")
    if cpt > cpus:
        raise ResourceError(f"--cpus-per-trial {cpt:g} exceeds the cluster's {cpus:g} CPUs")
    return Resources(cpt, gpt, cpus, gpus)


def precheck_gpus(gpus_per_trial: float | None, address: str | None) -> None:
    """Fail before starting Ray when a new local cluster could not have the GPUs asked for.

    Raises:
        ResourceError: GPUs per trial > 0, no cluster to join, and torch sees no CUDA device.
    """
    if not gpus_per_trial or gpus_per_trial <= 0 or address or os.environ.get("RAY_ADDRESS"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ResourceError(f"--gpus-per-trial {gpus_per_trial:g} requested but this machine has no GPU "
                            "(use --gpus-per-trial 0, or --address of a Ray cluster with GPUs)")


@contextlib.contextmanager
def _stderr_to_log() -> Iterator[str]:
    """Send file descriptor 2 to a log file while Ray's C++ core starts (it logs there directly).
    Yields the log's path; the log is removed when the start succeeds and kept when it fails."""
    import sys
    import tempfile

    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # pytest capture, notebooks: nothing to redirect
        yield ""
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    log = tempfile.NamedTemporaryFile(prefix="advmeta-ray-init-", suffix=".log", delete=False)
    ok = False
    try:
        os.dup2(log.fileno(), fd)
        yield log.name
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)
        log.close()
        if ok:
            os.unlink(log.name)


def check_address(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) address answers a TCP connection within ``timeout``.

    ``ray.init`` on a dead address retries for minutes without a word; this fails in seconds.

    Raises:
        ResourceError: nothing listens there, or the address is malformed.
    """
    import socket

    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ResourceError(f"--address {address!r}: use host:port (e.g. 10.0.0.5:6379), ray://host:10001 or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise ResourceError(f"no Ray cluster answers at {address} ({err.strerror or err}); start one there with "
                            "`ray start --head`, or leave out --address to run locally") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                object_store_mb: int | None = None) -> Iterator[dict[str, float]]:
    """Start (or join) Ray quietly; yields ``ray.cluster_resources()``; always shuts down.

    Args:
        address: a cluster to join (``auto``, ``ray://…`` or ``host:port``); ``None`` uses
            ``RAY_ADDRESS`` when set, else starts a private local cluster.
        num_cpus: CPUs of a local cluster (ignored when joining).
        object_store_mb: object store size of a local cluster.

    If Ray is already initialised (e.g. by a test session), it is used as is and left running.
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet_environment(local_cluster=address is None)
    if ray.is_initialized():
        yield dict(ray.cluster_resources())
        return
    kwargs: dict[str, object] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if address is None:
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        if object_store_mb is not None:
            kwargs["object_store_memory"] = int(object_store_mb) * 2**20
    else:
        check_address(address)
        kwargs["address"] = address
    log = ""
    try:
        with _stderr_to_log() as log:
            ray.init(**kwargs)  # type: ignore[arg-type]
    except ConnectionError as err:
        where = f" (Ray's start-up log: {log})" if log else ""
        raise ResourceError(f"cannot join the Ray cluster at {address!r}: {err}{where}") from None
    if address is None:
        # A local cluster is ours: name it in the folder's lock, so that a run taking the folder
        # over after this driver is killed (-9) ends what it leaves behind (advmeta.lock).
        try:
            from advmeta.lock import annotate

            node = ray._private.worker.global_worker.node
            if node is not None:  # None: this driver is not connected (nothing to name)
                annotate(ray_session=node.get_session_dir_path())
        except (AttributeError, OSError):
            pass
    try:
        yield dict(ray.cluster_resources())
    finally:
        ray.shutdown()
