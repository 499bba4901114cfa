"""Run an experiment definition: the same as ``prunenet experiment``.

    python experiments/run.py experiments/configs/resnet50_v1d_flops.json [--dry-run] [--smoke]
        [--only NAME] [--out DIR] [--data-dir DIR]
    python experiments/run.py table experiments/results/resnet50_v1d_flops/results.csv
"""
import sys

from prunenet.cli.experiment import main

if __name__ == "__main__":
    sys.exit(main())
