"""Generated image data for smoke runs: small JPEGs whose colour tells the class, written in
ImageNet's RecordIO layout (:func:`make_smoke_records`) or Caltech-256's folder layout
(:func:`make_smoke_folder`)."""
from __future__ import annotations

import os

__all__ = ["make_smoke_records", "make_smoke_folder"]


def _jpeg(rng, label: int, size: int) -> bytes:
    """A noisy ``size`` x ``size`` JPEG whose colour and brightness depend on ``label``."""
    import cv2
    import numpy as np
    base = np.zeros((size, size, 3), np.float32)
    base[..., label % 3] = 160 + 20 * (label // 3)
    image = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def make_smoke_records(folder: str, classes: int = 4, train_per_class: int = 8,
                       val_per_class: int = 2, size: int = 40, seed: int = 0) -> str:
    """Write ``train.rec``/``.idx`` and ``val.rec``/``.idx`` of generated JPEGs into ``folder``
    (ImageNet's layout, for smoke runs); returns ``folder``."""
    import mxnet as mx
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(folder, split + ".idx"),
                                            os.path.join(folder, split + ".rec"), "w")
        i = 0
        for label in range(classes):
            for _ in range(per_class):
                header = mx.recordio.IRHeader(0, float(label), i, 0)
                rec.write_idx(i, mx.recordio.pack(header, _jpeg(rng, label, size)))
                i += 1
        rec.close()
    return folder


def make_smoke_folder(folder: str, classes: int = 3, per_class: int = 62, size: int = 40,
                      seed: int = 0) -> str:
    """Write ``folder/<class>/*.jpg`` of generated images (Caltech-256's layout); returns it."""
    import numpy as np
    rng = np.random.RandomState(seed)
    for label in range(classes):
        sub = os.path.join(folder, f"{label + 1:03d}.class{label}")
        os.makedirs(sub, exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(sub, f"{i:04d}.jpg"), "wb") as f:
                f.write(_jpeg(rng, label, size))
    return folder
