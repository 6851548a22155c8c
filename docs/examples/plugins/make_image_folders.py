"""Write a small ``image-folders`` dataset (folder_dataset.py's layout) to try the plugins on.

``python docs/examples/plugins/make_image_folders.py DATA_ROOT [N_CLASSES]`` writes
``DATA_ROOT/image-folders/``: ``N_CLASSES`` classes (default 40) of 20 PNG drawings each, taken
from the built-in procedural ``glyphs`` (so it needs no download), split 60 / 20 / 20 %.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image

from advmeta.data.glyphs import render


def main(root: str, n_classes: int = 40, per_class: int = 20) -> Path:
    folder = Path(root) / "image-folders"
    names = [f"glyph{c:03d}" for c in range(n_classes)]
    for c, name in enumerate(names):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(render(c, range(per_class), size=28)):
            Image.fromarray(image[0]).save(folder / name / f"{i}.png")
    n_train, n_val = int(0.6 * n_classes), int(0.2 * n_classes)
    splits = {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}
    (folder / "splits.json").write_text(json.dumps(splits, indent=1))
    print(f"{folder}: {n_classes} classes × {per_class} images "
          f"(train {n_train}, val {n_val}, test {n_classes - n_train - n_val})")
    return folder


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
