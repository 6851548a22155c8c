"""A plain PyTorch few-shot learner: Prototypical Networks (Snell et al., 2017) on Omniglot.

It imports nothing from advmeta: it is the kind of model a researcher brings to
``advmeta evaluate`` (README, "Robustness of your own model"). It trains on the 964 characters of
Omniglot's ``images_background.zip`` — the standard (Vinyals) test characters all come from
``images_evaluation.zip``, so none of them is seen — each turned by 0/90/180/270 degrees into its
own class, as the Vinyals split does.

Train (a few minutes on one CPU core)::

    python examples/protonet_omniglot.py --data $ADVMETA_DATA/omniglot --out protonet_omniglot.pt

``model()`` is the factory ``advmeta evaluate --model examples/protonet_omniglot.py:model`` calls:
a module taking images in [0, 1], shape (N, 1, 28, 28), strokes bright on black (how advmeta
feeds Omniglot, and how this script trains), returning one feature vector per image.
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


def model(width: int = 32) -> nn.Module:
    """Four conv blocks (3×3 conv, batch norm, ReLU, 2×2 max-pool) and a flatten: (N, 1, 28, 28) → (N, width)."""
    def block(c_in: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(1), block(width), block(width), block(width), nn.Flatten())


def load_characters(zip_path: Path) -> torch.Tensor:
    """Every character's 20 drawings, 28×28, strokes 1.0 on 0.0. Shape: (characters, 20, 1, 28, 28)."""
    chars: dict[str, list[np.ndarray]] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(".png"):
                with Image.open(io.BytesIO(zf.read(name))) as im:
                    small = im.convert("L").resize((28, 28), Image.Resampling.LANCZOS)
                chars.setdefault(name.rsplit("/", 1)[0], []).append(255 - np.asarray(small, dtype=np.uint8))
    data = np.stack([np.stack(v[:20]) for v in chars.values()])
    return torch.from_numpy(data).float().div(255).unsqueeze(2)


def episode(data: torch.Tensor, n_way: int, k_shot: int, q_query: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A random episode of rotated characters: support (N*K, 1, 28, 28), query (N*Q, ...), their labels."""
    classes = torch.randperm(data.shape[0] * 4, generator=gen)[:n_way]
    images = []
    for c in classes.tolist():
        pick = torch.randperm(data.shape[1], generator=gen)[:k_shot + q_query]
        images.append(torch.rot90(data[c // 4, pick], c % 4, dims=(-2, -1)))
    x = torch.stack(images)  # (N, K + Q, 1, 28, 28)
    labels = torch.arange(n_way)
    return (x[:, :k_shot].reshape(-1, 1, 28, 28), labels.repeat_interleave(k_shot),
            x[:, k_shot:].reshape(-1, 1, 28, 28), labels.repeat_interleave(q_query))


def proto_logits(net: nn.Module, sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, n_way: int) -> torch.Tensor:
    """Minus the squared distances of the query's features to the class means of the support's."""
    fs, fq = net(sx), net(qx)
    protos = torch.stack([fs[sy == c].mean(0) for c in range(n_way)])
    return -torch.cdist(fq, protos).pow(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with images_background.zip")
    parser.add_argument("--out", type=Path, default=Path("protonet_omniglot.pt"))
    parser.add_argument("--episodes", type=int, default=1500)
    parser.add_argument("--n-way", type=int, default=20)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--q-query", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = load_characters(args.data / "images_background.zip")
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0, accs = time.perf_counter(), []
    for i in range(1, args.episodes + 1):
        sx, sy, qx, qy = episode(data, args.n_way, args.k_shot, args.q_query, gen)
        logits = proto_logits(net, sx, sy, qx, args.n_way)
        loss = F.cross_entropy(logits, qy)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accs.append(float((logits.argmax(1) == qy).float().mean()))
        if i % 100 == 0:
            print(f"episode {i}: loss {loss.item():.3f}, {args.n_way}-way training accuracy "
                  f"{100 * np.mean(accs[-100:]):.1f} % ({time.perf_counter() - t0:.0f} s)", flush=True)
    torch.save(net.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
