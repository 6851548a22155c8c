"""Episodes per second: advmeta's sampler against decoding every image with PIL per episode.

The baseline is the usual torchvision / learn2learn path: a per-image dataset whose
``__getitem__`` opens the JPEG with PIL, converts it to RGB and applies ``to_tensor``; a task
sampler picks N classes and K + Q images per class with Python's ``random`` and stacks them.
(learn2learn's TaskDataset adds more Python overhead on top; this baseline leaves it out, so
the ratio is conservative.) Both loaders run interleaved in one process, on the same machine
state, producing the same float32 tensors in [0, 1]; the ratio is measured in this one run.

Usage:
    ADVMETA_DATA=../shared/data python -m advmeta.benchmarks.sampler [--rounds 5] [--meta-batch 4]
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from advmeta.data import EpisodeSampler, EpisodeSpec, load_fewshot
from advmeta.env import configure_allocator


class PILEpisodes:
    """Decode-per-episode baseline over ``images/`` + ``train.csv``."""

    def __init__(self, root: Path, n_way: int, k_shot: int, q_query: int, seed: int = 0) -> None:
        with open(root / "train.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        self.by_class: dict[str, list[Path]] = {}
        for fname, label in rows:
            self.by_class.setdefault(label, []).append(root / "images" / fname)
        self.classes = sorted(self.by_class)
        self.n, self.k, self.q = n_way, k_shot, q_query
        self.rng = random.Random(seed)

    def load(self, path: Path) -> torch.Tensor:
        with Image.open(path) as im:
            image: torch.Tensor = to_tensor(im.convert("RGB"))  # torchvision is untyped
            return image

    def episode(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sx, sy, qx, qy = [], [], [], []
        for label, cls in enumerate(self.rng.sample(self.classes, self.n)):
            paths = self.rng.sample(self.by_class[cls], self.k + self.q)
            sx += [self.load(p) for p in paths[: self.k]]
            qx += [self.load(p) for p in paths[self.k:]]
            sy += [label] * self.k
            qy += [label] * self.q
        return torch.stack(sx), torch.tensor(sy), torch.stack(qx), torch.tensor(qy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-episodes", type=int, default=20, help="per round")
    ap.add_argument("--sampler-episodes", type=int, default=200, help="per round")
    ap.add_argument("--meta-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both loaders)")
    ap.add_argument("--system-allocator", action="store_true",
                    help="leave glibc's default mmap/trim thresholds (see advmeta.env.configure_allocator)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.system_allocator:
        configure_allocator()  # as advmeta's train/evaluate/CLI do; it applies to both loaders
    n, k, q = 5, 5, 15

    t0 = time.perf_counter()
    ds = load_fewshot("miniimagenet", data_root=args.data_root)
    load_s = time.perf_counter() - t0
    info = ds.info()
    sampler = EpisodeSampler(ds, "train", EpisodeSpec(n, k, q), seed=0)
    baseline = PILEpisodes(Path(info["root"]), n, k, q)
    print(f"mini-ImageNet ({info['form']}, {info['root']}): train {ds.split('train').num_classes} classes, "
          f"{int(ds.split('train').counts().sum())} images; load {load_s:.2f} s "
          f"(first decode into the cache took {info.get('decode_seconds')} s; {info['cache_note']})")
    print(f"5-way 5-shot 15-query, meta-batch {args.meta_batch}, torch threads {args.threads}, "
          f"{args.rounds} interleaved rounds")

    sampler.sample(range(args.meta_batch)), baseline.episode()  # warm-up
    t_base = t_ours = t_u8 = 0.0
    next_index = 0
    for _ in range(args.rounds):
        t = time.perf_counter()
        for _ in range(args.baseline_episodes):
            baseline.episode()
        t_base += time.perf_counter() - t
        for dtype in (torch.float32, torch.uint8):
            t = time.perf_counter()
            for _ in range(args.sampler_episodes // args.meta_batch):
                ep = sampler.sample(range(next_index, next_index + args.meta_batch), dtype=dtype)
                next_index += args.meta_batch
            dt = time.perf_counter() - t
            if dtype == torch.float32:
                t_ours += dt
            else:
                t_u8 += dt
        assert ep.query_x.shape == (args.meta_batch, n * q, 3, 84, 84)
    n_base = args.rounds * args.baseline_episodes
    n_ours = args.rounds * (args.sampler_episodes // args.meta_batch) * args.meta_batch
    r_base, r_ours, r_u8 = n_base / t_base, n_ours / t_ours, n_ours / t_u8
    print(f"PIL decode per episode (torchvision/learn2learn path): {r_base:8.1f} episodes/s")
    print(f"advmeta EpisodeSampler, float32 [0,1]:                 {r_ours:8.1f} episodes/s")
    print(f"advmeta EpisodeSampler, uint8 (convert on device):      {r_u8:8.1f} episodes/s")
    print(f"speed-up, float32 output: {r_ours / r_base:.1f}x   (uint8 output: {r_u8 / r_base:.1f}x; target >= 50x)")


if __name__ == "__main__":
    main()
