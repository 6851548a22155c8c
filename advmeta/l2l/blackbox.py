"""The black-box table: adversarial examples crafted on one trained network, applied to another.

Every ordered pair (source, target) of the given networks, the diagonal included (there it is
the white-box attack). The examples of each source are crafted once and reused for every target.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from advmeta.env import resolve_device
from advmeta.eps import Eps, parse_eps
from advmeta.l2l.data import L2LData, to_float
from advmeta.l2l.evaluate import _row, accuracy, attack_spec, base_row, held_out, resolve_source


def blackbox_table(
    sources: Mapping[str, Any],
    *,
    attack: str = "pgd-20",
    eps: Eps = "8/255",
    data: L2LData | None = None,
    n_test: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Transfer accuracy for every (source, target) pair of trained L2L-family networks.

    Args:
        sources: display name → checkpoint path, run folder or ``L2LCheckpoint``.
        attack: protocol attack crafted on each source (see ``attack_spec``).
        eps: its ℓ∞ budget.
        data: the classification data if already loaded (else from the first checkpoint's config).
        n_test: first this-many held-out images (None: all).
        batch_size: images per attack batch.
        seed: seed of the attack's random start.
        device: where to attack.
        progress: one line per pair on stderr.

    Returns:
        ``summary`` rows (scenario ``l2l``, attack ``transfer``), one per pair; the row's
        ``method``/``hparams`` describe the *target*, ``attack_params`` names the source.
    """
    from advmeta.attacks import get_attack

    dev = resolve_device(device)
    cks = {name: resolve_source(src, dev) for name, src in sources.items()}
    first = next(iter(cks.values()))
    x, y = held_out(first, data, n_test)
    e = parse_eps(eps)
    spec = attack_spec(attack, e)
    crafted: dict[str, torch.Tensor] = {}
    for name, ck in cks.items():
        gen = torch.Generator(device=dev).manual_seed(seed)
        ck.classifier.eval()
        parts = []
        for start in range(0, len(y), batch_size):
            xb = to_float(x[start : start + batch_size], dev)
            yb = y[start : start + batch_size].to(dev)
            if spec is None:
                parts.append(xb.cpu())
                continue
            parts.append(get_attack(spec[0])(ck.classifier, xb, yb, generator=gen, **spec[1]).cpu())
        crafted[name] = torch.cat(parts)
    rows = []
    for target, ck in cks.items():
        base = base_row(ck, len(y), dev)
        for source, x_adv in crafted.items():
            t0 = time.perf_counter()
            correct, loss = accuracy(ck.classifier, x_adv, y, None, batch_size, dev)
            row = _row(base, "transfer", spec, e, correct, loss, time.perf_counter() - t0,
                       {"source": source, "target": target, "base": attack, "seed": seed})
            row["query"] = "adv"
            rows.append(row)
            if progress:
                print(f"[blackbox] {source} -> {target}: {row['acc']:.2f}", file=sys.stderr)
    return rows


def blackbox_matrix(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows of :func:`blackbox_table` as a source × target accuracy matrix (%)."""
    import json

    recs = [{**json.loads(r["attack_params"]), "acc": r["acc"]} for r in rows]
    frame = pd.DataFrame(recs)
    return frame.pivot(index="source", columns="target", values="acc")
