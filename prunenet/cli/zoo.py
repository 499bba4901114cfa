"""``prunenet zoo publish|list|verify|export|pull``: a model zoo from the command line."""
from __future__ import annotations

import os

from ..errors import PrunenetError
from ..latency.runtimes import RUNTIMES
from ..zoo.store import (ZOO_ENV, cache_folder, entry_of, format_table, publish, pull, read_manifest,
                   verify)
from ..latency.settings import BenchConfig
from .args import one_line, positive_int, settings_flags


def add_parser(subparsers) -> None:
    """Add ``zoo publish|list|verify|export|pull`` to the ``prunenet`` command line."""
    p = subparsers.add_parser("zoo", help="publish pruned models to a model zoo, list, verify "
                                          "and export them, fetch a served zoo")
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION", parser_class=type(p))
    sub.required = True

    q = sub.add_parser("publish", help="publish a prunenet prune output folder")
    q.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of prunenet prune")
    q.add_argument("--zoo", required=True, metavar="FOLDER",
                   help="the zoo folder (created if missing); serve it as it is to share it")
    q.add_argument("--name", required=True, help="model name, e.g. resnet50_v1d_0.5_flops")
    q.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    q.add_argument("--wait", action="store_true",
                   help="wait without end for another writer of the zoo (default: give up "
                        "after $PRUNENET_LOCK_WAIT seconds, 120 unless set)")
    q.add_argument("--no-bench", action="store_true",
                   help="do not measure throughput (unless the run holds one, it stays empty)")
    settings_flags({"timing": q}, BenchConfig)
    q.add_argument("--gpus", default="", help="GPU id to measure on, e.g. 0 (default: CPU)")
    q.add_argument("--runtime", default="mxnet", choices=RUNTIMES + ("both",),
                   help="where the throughput is measured: mxnet, onnxruntime (the network "
                        "exported to ONNX), or both in one interleaved timing (default mxnet)")
    q.set_defaults(func=_publish)

    q = sub.add_parser("list", help="list the zoo's models as a table")
    _zoo_argument(q)
    q.add_argument("--json", action="store_true", help="print the manifest's models as JSON")
    q.set_defaults(func=_list)

    q = sub.add_parser("verify", help="check every model's hashes and shapes")
    _zoo_argument(q)
    q.set_defaults(func=_verify)

    q = sub.add_parser("export", help="export a model for deployment (MXNet symbol or ONNX)")
    q.add_argument("name", metavar="NAME", help="model name in the zoo (or a GluonCV pruned "
                                                "ResNet whose weights are local)")
    _zoo_argument(q)
    q.add_argument("--format", required=True, choices=["symbol", "onnx"],
                   help="symbol: NAME-symbol.json + NAME-0000.params; onnx: NAME.onnx")
    q.add_argument("--out", required=True, help="output folder (created if missing)")
    q.add_argument("--input-size", type=positive_int, default=None,
                   help="input image size (default: the size the model was pruned at)")
    q.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    q.set_defaults(func=_export)

    q = sub.add_parser("pull", help="download models of a zoo served over HTTP(S) into the cache "
                                    "without loading them")
    env = os.environ.get(ZOO_ENV)
    q.add_argument("url", metavar="URL", nargs=None if not env else "?", default=env,
                   help=f"the URL the zoo is served at (default: ${ZOO_ENV})")
    q.add_argument("--name", action="append", default=[],
                   help="a model to download (repeatable; default: every model)")
    q.set_defaults(func=_pull)


def _zoo_argument(parser) -> None:
    """``--zoo FOLDER_OR_URL``, required unless ``$PRUNENET_ZOO`` names a default."""
    env = os.environ.get(ZOO_ENV)
    parser.add_argument("--zoo", required=not env, default=env, metavar="FOLDER_OR_URL",
                        help=f"the zoo: a folder, or the http(s):// URL it is served at "
                             f"(default: ${ZOO_ENV}{', unset' if not env else ''})")


def _publish(args) -> int:
    from ..io.devices import contexts
    publish(args.run_dir, args.zoo, args.name, overwrite=args.overwrite, bench=not args.no_bench,
            batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup,
            ctx=contexts(args.gpus)[0],
            wait=args.wait, runtime=args.runtime)
    return 0


def _pull(args) -> int:
    fetched = pull(args.url, args.name or None)
    for name, paths in fetched.items():
        print(f"{name}: {', '.join(paths[role] for role in sorted(paths))}")
    print(f"{len(fetched)} model(s) in {cache_folder(args.url)}, sha1-checked")
    return 0


def _list(args) -> int:
    import json
    doc = read_manifest(args.zoo)
    models = {name: entry_of(args.zoo, name, doc) for name in doc["models"]}
    if args.json:
        print(json.dumps(models, indent=2))
    elif not models:
        print(f"the zoo at {args.zoo} has no models")
    else:
        print(format_table(models))
    return 0


def _verify(args) -> int:
    import sys
    result = verify(args.zoo)
    for name in result.ok:
        print(f"ok       {name}")
    for problem in result.problems:
        print(f"FAILED   {one_line(problem)}")
    for note in result.notes:
        print(f"note     {one_line(note)}")
    print(f"{len(result.ok)} model(s) verified, {len(result.problems)} problem(s)",
          file=sys.stderr if result.problems else sys.stdout)
    return 1 if result.problems else 0


def _export(args) -> int:
    from ..zoo.export import export
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise PrunenetError(f"--out {args.out} is a file; give a folder for the exported files")
    written = export(args.name, args.zoo, args.format, args.out, input_size=args.input_size,
                     overwrite=args.overwrite)
    check = ("" if written["max_abs_diff"] is None else
             f" (outputs checked against MXNet's: largest difference "
             f"{written['max_abs_diff']:.1e})")
    print(f"wrote {', '.join(written['files'])}{check}")
    return 0
