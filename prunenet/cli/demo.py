"""``prunenet demo``: the README's main job, a ResNet-18 trained, pruned with GCP and compared."""
from __future__ import annotations

import os

from ..errors import PrunenetError


def add_parser(sub) -> None:
    """Add ``prunenet demo`` to the command line."""
    p = sub.add_parser("demo", help="train, prune with GCP and compare a ResNet-18 on "
                                    "Fashion-MNIST (the README's main job)")
    p.add_argument("--quick", action="store_true", help="a small subset, for tests (~2 min)")
    p.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST IDX files")
    p.add_argument("--cache-dir", default=None,
                   help="where the trained base is cached (default ~/.cache/prunenet or "
                        "$PRUNENET_CACHE)")
    p.add_argument("--gpus", default="", help="GPU ids, e.g. 0 (default: CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    from ..demo import run_demo
    for flag, path in (("--out", args.out), ("--cache-dir", args.cache_dir)):
        if path and os.path.isfile(os.path.expanduser(path)):
            raise PrunenetError(f"{flag} {path} is a file; give a folder")
    run_demo(args.out, quick=args.quick, data_dir=args.data_dir, cache_dir=args.cache_dir,
             gpus=args.gpus, progress=not args.no_progress)
    return 0
