"""Any few-shot model under advmeta's evaluation: a torch module and how it meets an episode.

A module maps images in [0, 1], shape (N, C, H, W), to an output per image; ``adapt`` says how
an episode's support turns it into a classifier of the query (:class:`Adapt`):

- ``finetune``: the module's outputs are the N-way logits; every weight is fine-tuned on the
  support with ``steps`` steps of SGD at ``lr`` (MAML's meta-test, Finn et al. 2017).
- ``finetune-head``: the outputs are features; a linear head is fitted on the support's features
  with ``steps`` steps of SGD at ``lr``, started from the prototype classifier (weights 2·p_c, biases
  −‖p_c‖², which ranks classes as ``protonet`` does: Triantafillou et al. 2020's Proto-MAML start).
- ``protonet``: the outputs are features; a query's logits are minus its squared distances to
  the class means of the support's features (Snell et al. 2017).
- ``none``: the module classifies the episode itself: ``module(support_x, support_y, query_x)``
  with support_x (S, C, H, W) in [0, 1], support_y (S,) int64 labels 0 … N−1 (class-major),
  query_x (B, C, H, W), returning (B, N) logits; one episode per call.

Each adaptation is a :class:`advmeta.learners.Learner` (``adapted``, ``episode_fn``, ...), so the
evaluator attacks an external model exactly as advmeta's own learners: on the query at the adapted
model, and through the adaptation (the support perturbed). The module runs in ``eval()`` mode
(batch norm with its running statistics, no dropout).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advmeta.attacks import ModelFn
from advmeta.errors import ConfigError
from advmeta.learners import Learner
from advmeta.learners._maml import MAMLBase


class Adapt(str, Enum):
    """How an external module meets an episode (see the module docstring)."""

    FINETUNE = "finetune"
    FINETUNE_HEAD = "finetune-head"
    PROTONET = "protonet"
    NONE = "none"


def parse_adapt(value: str | Adapt) -> Adapt:
    """``value`` as an :class:`Adapt`; :class:`ConfigError` naming the known ones otherwise."""
    try:
        return Adapt(value)
    except ValueError:
        raise ConfigError(f"unknown adaptation {value!r}; known: {', '.join(a.value for a in Adapt)}") from None


@dataclass(frozen=True)
class ExternalConfig:
    """The settings of an external model's adaptation (the rows' ``hparams``).

    Attributes:
        adapt: ``finetune`` | ``finetune-head`` | ``protonet`` | ``none``.
        steps: SGD steps on the support (``finetune``, ``finetune-head``; 0 otherwise).
        lr: their learning rate.
        normalize: ``"mean…,std…"`` applied inside the model (attacks stay in pixel space); empty: none.
    """

    adapt: str
    steps: int = 0
    lr: float = 0.01
    normalize: str = ""

    # The names MAML's shared inner loop reads (``finetune`` is MAML's meta-test on this module).
    @property
    def inner_lr(self) -> float:
        return self.lr

    @property
    def inner_steps(self) -> int:
        return self.steps

    @property
    def test_inner_steps(self) -> int:
        return self.steps

    @property
    def first_order(self) -> bool:
        return False


# -- loading a user's module ------------------------------------------------------------------------

def load_factory(spec: str) -> tuple[nn.Module, str]:
    """The module a factory returns: ``PKG.MODULE:FACTORY`` (imported from the current folder or the
    Python path) or ``path/to/file.py:FACTORY``; also its name (the factory's).

    Raises:
        ConfigError: malformed, not importable, no such factory, the factory failed, or it did not
            return a ``torch.nn.Module`` (one line each, naming it).
    """
    m = re.fullmatch(r"(.+?):([A-Za-z_][\w.]*)", spec or "")
    if not m:
        raise ConfigError(f"--model {spec!r}: expected PKG.MODULE:FACTORY or FILE.py:FACTORY")
    where, attr = m.groups()
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"--model {spec}: no file {where}")
            mspec = importlib.util.spec_from_file_location(f"advmeta_external_{path.stem}", path)
            assert mspec is not None and mspec.loader is not None
            module = importlib.util.module_from_spec(mspec)
            mspec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` would find the user's own package
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any error of the user's code is their input's
        raise ConfigError(f"--model {spec}: cannot import {where} ({type(err).__name__}: {_line(err)})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"--model {spec}: {where} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"--model {spec}: {attr} is not callable")
    try:
        made = obj()
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"--model {spec}: the factory raised {type(err).__name__}: {_line(err)}") from None
    if not isinstance(made, nn.Module):
        raise ConfigError(f"--model {spec}: the factory returned {type(made).__name__}, not a torch.nn.Module")
    return made, attr.split(".")[-1]


def _line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_weights(module: nn.Module, path: str | Path) -> str:
    """Load a state dict into ``module`` (strictly) from a file of tensors only; its SHA-256.

    The file is read with ``weights_only=True`` (:func:`advmeta.checkpoint.load_tensors`), or
    with safetensors for ``.safetensors``. A mapping of names to tensors, or one under
    ``state_dict`` / ``model`` (an advmeta checkpoint's ``state.model`` too), is accepted.

    Raises:
        DataNotFoundError: no file. UnsafeFileError: the file would run code when unpickled.
        ConfigError: no state dict in it, or it does not fit the module (missing, unexpected or
            mis-shaped tensors).
    """
    from advmeta.checkpoint import load_tensors
    from advmeta.errors import DataNotFoundError

    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"weights file {path} not found")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError("reading .safetensors weights needs the safetensors package (pip install "
                              "safetensors)") from None
        state: Any = load_file(str(p))
    else:
        state = load_tensors(p, what="weights file")
    for key in ("state_dict", "model", "state"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            if key == "state" and "model" in state:
                state = state["model"]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"weights file {path} holds no state dict (a mapping of parameter names to tensors)")
    try:
        module.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        detail = "; ".join(s.strip() for s in str(err).splitlines()[1:] if s.strip()) or _line(err)
        raise ConfigError(f"weights file {path} does not fit the module: {detail[:400]}") from None
    return file_sha256(p)


def parse_normalize(text: str | None, channels: int) -> tuple[Tensor, Tensor] | None:
    """``MEAN,STD`` (one value each) or C means then C stds, as (C, 1, 1) tensors; None for no text."""
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--normalize {text!r}: expected numbers MEAN,STD or {channels} means then {channels} "
                          "stds") from None
    if len(values) == 2:
        values = [values[0]] * channels + [values[1]] * channels
    if len(values) != 2 * channels or any(s <= 0 for s in values[channels:]):
        raise ConfigError(f"--normalize {text!r}: expected MEAN,STD or {channels} means then {channels} positive stds")
    t = torch.tensor(values, dtype=torch.float32).view(2, channels, 1, 1)
    return t[0], t[1]


class Normalized(nn.Module):
    """``module`` fed ``(x − mean) / std`` for images in [0, 1] (the attacks stay in pixel space);
    with ``episode=True`` the images of ``(support_x, support_y, query_x)`` are normalised."""

    def __init__(self, module: nn.Module, mean: Tensor, std: Tensor, episode: bool = False) -> None:
        super().__init__()
        self.module = module
        self.episode = episode
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def _norm(self, x: Tensor) -> Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return (x - mean) / std

    def forward(self, *args: Tensor) -> Tensor:
        if self.episode:
            sx, sy, qx = args
            out: Tensor = self.module(self._norm(sx), sy, self._norm(qx))
        else:
            out = self.module(self._norm(args[0]))
        return out


# -- the adaptations as learners -------------------------------------------------------------------

def _features(net: nn.Module, x: Tensor) -> Tensor:
    """Per-image features, flattened. Shape: (T, B, C, H, W) → (T, B, D)."""
    t, b = x.shape[:2]
    out: Tensor = net(x.reshape(t * b, *x.shape[2:]))
    return out.reshape(t, b, -1)


def _prototypes(fs: Tensor, sy: Tensor, n_way: int) -> Tensor:
    """Class means of the support features. Shape: (T, S, D), (T, S) → (T, N, D)."""
    onehot = F.one_hot(sy, n_way).to(fs.dtype)
    return onehot.transpose(1, 2) @ fs / onehot.sum(1)[..., None]


def _neg_sq_dist(fq: Tensor, protos: Tensor) -> Tensor:
    """−‖q − p‖², written out (no square root: finite gradients at zero distance). (T,B,D),(T,N,D) → (T,B,N)."""
    return 2 * fq @ protos.transpose(1, 2) - (fq * fq).sum(-1, keepdim=True) - (protos * protos).sum(-1)[:, None, :]


def _with_task_fn(fn: Callable[[Tensor], Tensor], one: Callable[[int, Tensor], Tensor]) -> ModelFn:
    fn.task_fn = one  # type: ignore[attr-defined]  # attacks then run task by task (advmeta.attacks.input_grad)
    return fn


class ExternalFinetune(MAMLBase):
    """``finetune``: every weight fine-tuned on the support (MAML's meta-test machinery)."""

    name: ClassVar[str] = "external-finetune"

    @property
    def first_order(self) -> bool | None:
        return None


class ExternalHead(Learner):
    """``finetune-head``: a linear head on the module's features, from the prototype classifier."""

    name: ClassVar[str] = "external-finetune-head"
    maml_family: ClassVar[bool] = True

    def _heads(self, fs: Tensor, sy: Tensor, steps: int, create_graph: bool) -> list[tuple[Tensor, Tensor]]:
        n_way = int(sy.max()) + 1
        protos = _prototypes(fs, sy, n_way)
        w, b = 2 * protos, -(protos * protos).sum(-1)
        if not create_graph:
            w, b = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
        out = [(w, b)]
        with torch.enable_grad():
            for _ in range(steps):
                logits = fs @ w.transpose(1, 2) + b[:, None, :]
                # each task's mean support loss, summed over tasks: per-task gradients
                loss = F.cross_entropy(logits.reshape(-1, n_way), sy.reshape(-1), reduction="sum") / sy.shape[1]
                gw, gb = torch.autograd.grad(loss, (w, b), create_graph=create_graph)
                w, b = w - self.cfg.lr * gw, b - self.cfg.lr * gb
                if not create_graph:
                    w, b = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
                out.append((w, b))
        return out

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        with torch.no_grad():
            fs = _features(self.net, support_x)
        fns: list[ModelFn] = []
        for w, b in self._heads(fs, support_y, steps, create_graph=False):
            w, b = w.detach(), b.detach()

            def fn(x: Tensor, w: Tensor = w, b: Tensor = b) -> Tensor:
                return _features(self.net, x) @ w.transpose(1, 2) + b[:, None, :]

            def one(t: int, xt: Tensor, w: Tensor = w, b: Tensor = b) -> Tensor:
                feats: Tensor = self.net(xt).flatten(1)
                return feats @ w[t].T + b[t]

            fns.append(_with_task_fn(fn, one))
        return fns

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        def fn(support_x: Tensor, query_x: Tensor) -> Tensor:
            w, b = self._heads(_features(self.net, support_x), support_y, steps, create_graph=True)[-1]
            return _features(self.net, query_x) @ w.transpose(1, 2) + b[:, None, :]

        return fn


class ExternalProto(Learner):
    """``protonet``: minus squared distances to the support's class means of the module's features."""

    name: ClassVar[str] = "external-protonet"

    def _logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        protos = _prototypes(_features(self.net, support_x), support_y, int(support_y.max()) + 1)
        return _neg_sq_dist(_features(self.net, query_x), protos)

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        with torch.no_grad():
            protos = _prototypes(_features(self.net, support_x), support_y, int(support_y.max()) + 1)

        def fn(x: Tensor) -> Tensor:
            return _neg_sq_dist(_features(self.net, x), protos)

        def one(t: int, xt: Tensor) -> Tensor:
            return _neg_sq_dist(self.net(xt).flatten(1)[None], protos[t:t + 1])[0]

        return [_with_task_fn(fn, one)]

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda support_x, query_x: self._logits(support_x, support_y, query_x)


class ExternalEpisode(Learner):
    """``none``: the module classifies an episode itself, ``module(support_x, support_y, query_x)``."""

    name: ClassVar[str] = "external-episode"

    def _logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        return torch.stack([self.net(support_x[t], support_y[t], query_x[t]) for t in range(support_x.shape[0])])

    def adapted(self, support_x: Tensor, support_y: Tensor, steps: int) -> list[ModelFn]:
        sx = support_x.detach()

        def fn(x: Tensor) -> Tensor:
            return self._logits(sx, support_y, x)

        def one(t: int, xt: Tensor) -> Tensor:
            out: Tensor = self.net(sx[t], support_y[t], xt)
            return out

        return [_with_task_fn(fn, one)]

    def episode_fn(self, support_y: Tensor, steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda support_x, query_x: self._logits(support_x, support_y, query_x)


_CLASSES: dict[Adapt, type[Learner]] = {Adapt.FINETUNE: ExternalFinetune, Adapt.FINETUNE_HEAD: ExternalHead,
                                        Adapt.PROTONET: ExternalProto, Adapt.NONE: ExternalEpisode}


def external_learner(module: nn.Module, adapt: str | Adapt, *, steps: int | None = None, lr: float = 0.01,
                     normalize: str | None = None, channels: int = 3) -> Learner:
    """``module`` as a learner the evaluator attacks (:func:`advmeta.evaluate.evaluate_learner`).

    Args:
        module: images in [0, 1] (N, C, H, W) → logits or features (``none``: see the module docstring).
        adapt: how it meets an episode (:class:`Adapt`).
        steps: SGD steps on the support (``finetune``, ``finetune-head``; default 10); ignored otherwise.
        lr: their learning rate.
        normalize: ``MEAN,STD`` (or C means, C stds) the module expects its inputs normalised with.
        channels: the images' channels (for ``normalize``).
    """
    kind = parse_adapt(adapt)
    tuned = kind in (Adapt.FINETUNE, Adapt.FINETUNE_HEAD)
    n_steps = (10 if steps is None else int(steps)) if tuned else 0
    if n_steps < 0 or (tuned and not lr > 0):
        raise ConfigError(f"adaptation {kind.value}: steps must be >= 0 and lr > 0 (got {steps}, {lr})")
    net = module
    stats = parse_normalize(normalize, channels)
    if stats is not None:
        net = Normalized(module, *stats, episode=kind is Adapt.NONE)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)  # θ is a constant of every attack; fine-tuning makes its own copies
    cfg = ExternalConfig(kind.value, n_steps, float(lr) if tuned else 0.0, normalize or "")
    return _CLASSES[kind](cfg, net)


def probe(learner: Learner, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> None:
    """Run the model on one episode and check its output before an evaluation starts.

    Raises:
        ConfigError: the module's output has the wrong shape for its adaptation, or is not finite.
    """
    adapt = getattr(learner.cfg, "adapt", "")
    n_way = int(support_y.max()) + 1
    what = f"the module (adapt {adapt})"
    with torch.no_grad():
        try:
            if adapt in (Adapt.FINETUNE.value, Adapt.PROTONET.value, Adapt.FINETUNE_HEAD.value):
                out = learner.net(support_x[0])
                if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != support_x.shape[1]:
                    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    raise ConfigError(f"{what} returns {shape} for {support_x.shape[1]} images of shape "
                                      f"{tuple(support_x.shape[2:])}: expected one output row per image")
                if adapt == Adapt.FINETUNE.value and tuple(out.shape) != (support_x.shape[1], n_way):
                    raise ConfigError(f"{what} returns {tuple(out.shape)} for {support_x.shape[1]} images: finetune "
                                      f"needs {n_way}-way logits (use finetune-head or protonet for features)")
            logits = learner.adapted(support_x, support_y, 0)[0](query_x)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - the user's module failed on valid images
            raise ConfigError(f"{what} failed on a {tuple(support_x.shape[2:])} episode: {type(err).__name__}: "
                              f"{_line(err)}") from None
    want = (query_x.shape[0], query_x.shape[1], n_way)
    if not isinstance(logits, Tensor) or tuple(logits.shape) != want:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ConfigError(f"{what} gives logits of shape {got} for {query_x.shape[1]} queries of an {n_way}-way "
                          f"episode; expected {want[1:]} per episode")
    if not bool(torch.isfinite(logits).all()):
        raise ConfigError(f"{what} returns non-finite logits (NaN or inf) on a clean episode")


def count_forwards(module: nn.Module) -> tuple[Callable[[], dict[str, int]], Callable[[], None]]:
    """Count the module's forward calls and the images they carried (a forward pre-hook on it).

    Returns:
        A function returning ``{"calls": ..., "images": ...}`` so far, and one removing the hook.
    """
    counts = {"calls": 0, "images": 0}

    def hook(_: nn.Module, args: Sequence[Any]) -> None:
        counts["calls"] += 1
        counts["images"] += sum(int(a.shape[0]) for a in args if isinstance(a, Tensor) and a.is_floating_point()
                                and a.dim() == 4)

    handle = module.register_forward_pre_hook(hook)
    return (lambda: dict(counts)), handle.remove
