"""``autoattack``: the per-sample worst case over APGD-CE, targeted APGD-DLR and Square.

As AutoAttack (Croce & Hein, ICML 2020) runs its standard version: each attack only sees the
samples every earlier one failed to misclassify, and a sample keeps the first image that broke
it. The three differ in kind — a cross-entropy ascent, a scale-invariant margin ascent against
each other class in turn, and a gradient-free search — so a defence that only masks gradients
or only rescales its logits loses to one of them.

The samples an attack is given stay in the batch they came from: the model sees the whole
batch, the broken samples at their adversarial images, so a forward that couples samples
(transductive batch norm) is attacked as it is evaluated. A batch of tasks (leading dims
(T, B)) is attacked task by task, task t with its own generator, which makes the batch equal
the per-task calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from advmeta.attacks._core import Gen, ModelFn, check_inputs, check_steps, parse_norm
from advmeta.attacks._registry import register_attack
from advmeta.attacks.apgd_ce import apgd_ce
from advmeta.attacks.apgd_dlr import apgd_dlr
from advmeta.attacks.square import square
from advmeta.eps import Eps, parse_eps
from advmeta.errors import ConfigError

COMPONENTS = ("apgd-ce", "apgd-t", "square")


def _in_batch(model_fn: ModelFn, base: Tensor, idx: Tensor) -> ModelFn:
    """Logits of the samples ``idx`` when they are placed in ``base`` (the rest of the batch)."""

    def fn(xs: Tensor) -> Tensor:
        return model_fn(base.index_put((idx,), xs))[idx]

    return fn


def _task(model_fn: ModelFn, x: Tensor, t: int) -> ModelFn:
    task_fn = getattr(model_fn, "task_fn", None)
    if task_fn is not None:
        return lambda xt: task_fn(t, xt)
    return lambda xt: model_fn(torch.cat([x[:t], xt.unsqueeze(0), x[t + 1:]]))[t]


@register_attack("autoattack", norms=("linf",), stochastic=True, skips_misclassified=True, iterative=True,
                 gradient_free=True, test_params=(("steps", 100), ("n_queries", 1000)))
def autoattack(
    model_fn: ModelFn,
    x: Tensor,
    y: Tensor,
    *,
    eps: Eps,
    steps: int = 100,
    n_queries: int = 1000,
    p_init: float = 0.8,
    components: Sequence[str] = COMPONENTS,
    norm: str = "linf",
    generator: Gen = None,
) -> Tensor:
    """AutoAttack's standard cascade, ℓ∞.

    Args:
        model_fn: images (..., C, H, W) → logits (..., K).
        x: clean images in [0, 1]; y: true labels.
        eps: ℓ∞ budget.
        steps: iterations of each APGD run (AutoAttack: 100).
        n_queries: Square's queries per sample (AutoAttack: 5000; test default 1000).
        p_init: Square's initial square fraction.
        components: which of ``apgd-ce``, ``apgd-t`` (targeted APGD-DLR against each of the
            K − 1 other classes; untargeted DLR with 3 classes, skipped with 2) and ``square``
            run, in this order.
        norm: ``linf`` only.
        generator: randomness; one per task for a batch of tasks.

    Returns:
        Per sample, the first adversarial image that broke it, else the last attack's output
        (or the clean image when it was already misclassified).
    """
    parse_norm(norm, ("linf",))
    check_inputs(x, y)
    e = parse_eps(eps)
    steps = check_steps(steps)
    n_queries = check_steps(n_queries, "n_queries")
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown or not components:
        raise ConfigError(f"autoattack components must be some of {', '.join(COMPONENTS)}, got {list(components)}")
    x = x.detach()
    if e == 0:
        return x.clone()
    kw = {"eps": e, "steps": steps, "n_queries": n_queries, "p_init": p_init, "components": tuple(components)}
    if x.dim() > 4:
        gens = list(generator) if generator is not None and not isinstance(generator, torch.Generator) else None
        if gens is not None and len(gens) != x.shape[0]:
            raise ConfigError(f"{len(gens)} generators given for {x.shape[0]} tasks (one per leading index)")
        return torch.stack([
            autoattack(_task(model_fn, x, t), x[t], y[t], generator=gens[t] if gens is not None else generator, **kw)
            for t in range(x.shape[0])
        ])
    if x.dim() == 3:  # one image
        return autoattack(lambda xi: model_fn(xi.squeeze(0)).unsqueeze(0), x.unsqueeze(0), y.unsqueeze(0),
                          generator=generator, **kw).squeeze(0)
    return _cascade(model_fn, x, y, e, steps, n_queries, p_init, tuple(components), generator)


def _cascade(model_fn: ModelFn, x: Tensor, y: Tensor, e: float, steps: int, n_queries: int, p_init: float,
             components: tuple[str, ...], generator: Gen) -> Tensor:
    """The cascade on a batch of images (B, C, H, W): each component attacks the images still
    classified correctly; an image keeps the first adversarial version that broke it, else the last
    component's output."""
    adv = x.clone()
    with torch.no_grad():
        logits = model_fn(adv)
    n_classes = logits.shape[-1]
    robust = logits.argmax(-1) == y
    for name in components:
        idx = robust.nonzero().squeeze(-1)
        if idx.numel() == 0:
            break
        fn = _in_batch(model_fn, adv, idx)
        xs, ys = x[idx], y[idx]
        if name == "apgd-ce":
            out = apgd_ce(fn, xs, ys, eps=e, steps=steps, generator=generator)
        elif name == "apgd-t":
            if n_classes < 3:
                continue
            out = apgd_dlr(fn, xs, ys, eps=e, steps=steps, targeted=n_classes >= 4, generator=generator)
        else:
            out = square(fn, xs, ys, eps=e, n_queries=n_queries, p_init=p_init, generator=generator)
        with torch.no_grad():
            broken = fn(out).argmax(-1) != ys
        adv[idx[broken]] = out[broken]
        robust[idx[broken]] = False
        if name == components[-1]:
            adv[idx[~broken]] = out[~broken]
    return adv
