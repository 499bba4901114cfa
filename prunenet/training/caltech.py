"""The Caltech-256 protocol's split (:func:`caltech_split`): a fixed number of random training
images per class, the rest for testing, as symbolic links."""
from __future__ import annotations

import json
import os

from ..errors import PrunenetError

__all__ = ["caltech_split"]


def caltech_split(source: str, out: str, train_per_class: int = 60, seed: int = 0) -> str:
    """Split the class folders of ``source`` (Caltech-256's ``256_ObjectCategories``) into
    ``out/train`` (``train_per_class`` random images of each class) and ``out/val`` (the rest),
    as symbolic links; every class needs at least that many images. Returns ``out``."""
    import numpy as np
    from .data import IMAGE_EXTENSIONS
    source = os.path.abspath(os.path.expanduser(source))
    if not os.path.isdir(source):
        raise PrunenetError(f"Caltech folder {source} does not exist; give data.data_dir (or "
                            f"--data-dir) the folder of its class sub-folders")
    classes = sorted(d for d in os.listdir(source)
                     if not d.startswith(".") and os.path.isdir(os.path.join(source, d)))
    if not classes:
        raise PrunenetError(f"Caltech folder {source} has no class sub-folders")
    files = {}
    for c in classes:
        images = sorted(n for n in os.listdir(os.path.join(source, c))
                        if n.lower().endswith(IMAGE_EXTENSIONS))
        if len(images) < train_per_class:
            raise PrunenetError(f"Caltech folder {source}: class {c} has {len(images)} images, "
                                f"fewer than the {train_per_class} training images per class "
                                f"the protocol takes; remove the class or lower "
                                f"data.train_per_class")
        files[c] = images
    stamp = os.path.join(out, "split.json")
    wanted = {"source": source, "train_per_class": train_per_class, "seed": seed,
              "classes": len(classes)}
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == wanted:
                return out
    from ..io.files import staged_dir, write_json
    with staged_dir(out, overwrite=True, kind="caltech-split",
                    own=("train", "val", "split.json")) as stage:
        for i, c in enumerate(classes):
            order = np.random.RandomState([seed, i]).permutation(len(files[c]))
            for split, part in (("train", order[:train_per_class]),
                                ("val", order[train_per_class:])):
                os.makedirs(os.path.join(stage, split, c), exist_ok=True)
                for j in part:
                    os.symlink(os.path.join(source, c, files[c][j]),
                               os.path.join(stage, split, c, files[c][j]))
        write_json(os.path.join(stage, "split.json"), wanted)
    return out
