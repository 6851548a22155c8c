"""``--logger tensorboard|mlflow|wandb|csv``: a sweep's trials in TensorBoard, MLflow, W&B or CSV files.

Each backend is one of Ray Tune's own logger callbacks, given to the sweep's ``RunConfig``; what
they receive is what every trial reports to Tune while it trains — one result per row of its
learning curve (the ``curves`` metrics: ``train_loss``, ``val_acc``, …; GAIL's reward), stepped
by the trainer's iteration (``timesteps_total``), then its final metrics — and the trial's
parameters (its config: ``trial/method``, ``trial/train/<setting>``, ``trial/hparams/<field>``),
named by its label and id.

Where each writes (``<sweep>/ray/run-<time>/<trial_id>/`` is the trial's Tune folder):

- ``tensorboard``: event files in the trial's Tune folder (``tensorboard --logdir <sweep>/ray``).
- ``csv``: ``progress.csv`` in the trial's Tune folder.
- ``mlflow``: one run per trial in the experiment named after the sweep, at ``$MLFLOW_TRACKING_URI``,
  else the file store ``<sweep>/mlruns`` (``mlflow ui --backend-store-uri <sweep>/mlruns``; MLflow 3
  needs ``MLFLOW_ALLOW_FILE_STORE=true`` to open a file store, which advmeta sets for its own).
- ``wandb``: one run per trial in the project ``$WANDB_PROJECT``, else the sweep's name (grouped
  by the sweep); its local files in ``<sweep>/wandb/`` (``$WANDB_DIR/wandb/`` when set): offline
  (``WANDB_MODE=offline``) one ``offline-run-*`` folder per trial, which ``wandb sync`` uploads later.

Ray Tune writes ``csv`` and ``tensorboard`` files by itself too unless
``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``; naming them makes them part of the command.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

from advmeta.errors import ConfigError

LOGGERS: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboardX",), "mlflow": ("mlflow",), "wandb": ("wandb",),
                                       "csv": ()}
"""Each backend → the modules it needs (its extra of the same name installs them)."""


def check_loggers(names: Sequence[str]) -> list[str]:
    """The backends named (each once, in order), checked before anything runs.

    Raises:
        ConfigError: an unknown backend, or one whose package is not installed (naming the extra).
    """
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name not in LOGGERS:
            raise ConfigError(f"--logger {raw!r}: unknown logger; known: {', '.join(LOGGERS)}")
        missing = [m for m in LOGGERS[name] if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"--logger {name} needs the {missing[0]} package: pip install 'advmeta[{name}]'")
        if name not in out:
            out.append(name)
    return out


def mlflow_uri(sweep_dir: str, local: bool) -> str:
    """Where the MLflow runs go: ``$MLFLOW_TRACKING_URI``, else the file store ``<sweep>/mlruns``
    (``./mlruns`` for a sweep on remote storage, which a file store cannot live in)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return "file://" + os.path.abspath(os.path.join(sweep_dir if local else ".", "mlruns"))


def callbacks(names: Sequence[str], sweep: str, sweep_dir: str, local: bool = True) -> list[Any]:
    """Ray Tune's logger callbacks of the backends ``names`` for the sweep ``sweep`` in ``sweep_dir``."""
    out: list[Any] = []
    for name in check_loggers(names):
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())
        elif name == "csv":
            from ray.tune.logger import CSVLoggerCallback

            out.append(CSVLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = mlflow_uri(sweep_dir, local)
            if uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses a file store otherwise
            out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=sweep, tags={"sweep": sweep}))
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            # Its own folder, not the trial's Tune folder: Ray stages that one elsewhere and copies
            # it back before W&B has finished writing (a trial's offline run went missing).
            folder = os.environ.get("WANDB_DIR") or os.path.abspath(sweep_dir if local else ".")
            os.makedirs(folder, exist_ok=True)
            # WANDB_MODE goes to the logging actors explicitly: they may run in a Ray cluster started before it was set.
            mode: dict[str, Any] = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
            out.append(WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or sweep, group=sweep, dir=folder, **mode))
    return out


def trial_params(spec: Any) -> dict[str, Any]:
    """A trial's parameters as the loggers record them (Tune's config of the trial, flattened by
    each logger to ``trial/method``, ``trial/train/k_shot``, ``trial/hparams/gamma``, …): scalars,
    other values as text."""

    def scalar(value: Any) -> Any:
        if value is None:
            return "None"  # TensorBoard's hparams refuse a None
        if isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, Mapping):
            return {str(k): scalar(v) for k, v in value.items()}
        return str(list(value) if isinstance(value, tuple) else value)

    return {"id": spec.trial_id, "method": spec.method, "family": spec.family, "sweep": spec.sweep,
            "budget": spec.budget, "table": ",".join(spec.table), "train": scalar(dict(spec.train)),
            "hparams": scalar(dict(spec.hparams))}
