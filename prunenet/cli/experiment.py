"""``prunenet experiment CONFIG`` and ``prunenet experiment table RESULTS.csv``."""
from __future__ import annotations

import sys
from typing import List, Optional

from ..errors import PrunenetError
from ..experiment import dry_run, load_config, results_table, run_experiment


def add_parser(subparsers) -> None:
    """Add ``prunenet experiment`` to the command line."""
    p = subparsers.add_parser(
        "experiment", help="run an experiment definition (experiments/configs/*.json)",
        description="Run an experiment config: every target pruned, fine-tuned, evaluated, "
                    "benchmarked, published and written to OUT/results.csv. "
                    "`prunenet experiment table RESULTS.csv` prints the paper's table.")
    p.add_argument("config", help="experiment config (JSON), or `table`")
    p.add_argument("results", nargs="*", default=[],
                   help="with `table`: results CSVs (several are merged into one table)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, build the network and compute the MACs at each "
                        "target; no data, no training")
    p.add_argument("--smoke", action="store_true",
                   help="a few iterations at 32 px of every phase on generated data and a "
                        "random network (no download)")
    p.add_argument("--only", default=None, metavar="NAME",
                   help="only the runs whose name matches (shell pattern)")
    p.add_argument("--out", default=None,
                   help="results folder (default experiments/results/<name>[-smoke])")
    p.add_argument("--data-dir", default=None, help="use this data folder instead of the config's")
    p.add_argument("--gpus", default=None,
                   help="use these GPU ids instead of the config's ('' for the CPU)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.config == "table":
        if not args.results:
            raise PrunenetError("experiment table needs the results CSV: "
                                "prunenet experiment table RESULTS.csv")
        print(results_table(*args.results))
        return 0
    if args.results:
        raise PrunenetError(f"unexpected argument {args.results[0]!r}: give one config")
    exp = load_config(args.config)
    if args.dry_run:
        dry_run(exp, args.only)
        return 0
    if args.gpus is not None:
        exp.gpus = args.gpus.strip()
    run_experiment(exp, args.out, smoke=args.smoke, only=args.only, data_dir=args.data_dir)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python experiments/run.py CONFIG ...``: the same as ``prunenet experiment``."""
    from . import main as cli_main
    return cli_main(["experiment"] + list(sys.argv[1:] if argv is None else argv))
