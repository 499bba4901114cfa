"""The files a run folder and an experiment's results hold: their names, the columns of
``results.csv`` and ``steps.csv``, and the one reader and writer of each."""
from __future__ import annotations

import csv
import io
import math
import os
from typing import List, Optional, Sequence, Tuple

from ..errors import PrunenetError

__all__ = ["SHAPES_FILE", "PARAMS_FILE", "SYMBOL_PREFIX", "REPORT_FILE", "STEPS_FILE",
           "RUN_FILE", "LOG_FILE", "CHECKPOINT_DIR", "DEMO_FILE", "RUN_ENTRIES",
           "RESULTS_COLUMNS", "STEP_COLUMNS", "OPTIONAL_STEP_COLUMNS", "read_csv", "number", "read_results", "put_result",
           "has_result", "write_steps", "read_steps", "read_report"]

# a run folder
SHAPES_FILE = "shapes.json"
PARAMS_FILE = "pruned.params"
SYMBOL_PREFIX = "pruned"
REPORT_FILE = "report.json"
STEPS_FILE = "steps.csv"
RUN_FILE = "run.json"
LOG_FILE = "log.txt"
CHECKPOINT_DIR = "checkpoint"
DEMO_FILE = "demo.json"  # what prunenet demo adds to its run folder
# every entry prunenet writes in a run folder: --overwrite replaces one holding nothing else
RUN_ENTRIES = (REPORT_FILE, RUN_FILE, LOG_FILE, STEPS_FILE, SHAPES_FILE, PARAMS_FILE,
               f"{SYMBOL_PREFIX}-symbol.json", f"{SYMBOL_PREFIX}-0000.params", CHECKPOINT_DIR,
               DEMO_FILE)

# an experiment's results.csv (DESIGN.md's schema), one row per run
RESULTS_COLUMNS = ["model", "method", "objective", "target", "achieved", "macs", "params",
                   "top1", "top5", "throughput_img_s", "batch_size", "device", "dataset", "seed",
                   "run_dir"]
# a GCP run's steps.csv, one row per phase of each step
STEP_COLUMNS = ["step", "phase", "target", "achieved", "loss", "top1", "zeroed_channels", "lr",
                "time_s"]
OPTIONAL_STEP_COLUMNS = ["val_top1"]  # top-1 on held-out data after a step (the Python API's)


def read_csv(path: str, required: Sequence[str], what: str) -> List[Tuple[int, dict]]:
    """(line number, row) of a CSV file with a header holding every ``required`` column; an
    error naming the file (and the column) when it is missing, unreadable or has no rows."""
    from .files import require_file
    require_file(path, what)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = [line for line in f if not line.startswith("#")]
    except UnicodeDecodeError:
        raise PrunenetError(f"{what} {path} is not UTF-8 text; give a CSV file") from None
    except OSError as err:
        raise PrunenetError(f"{what} {path} cannot be read ({err.strerror or err})") from None
    reader = csv.reader(lines)
    header = next(reader, None)
    if not header or not any(h.strip() for h in header):
        raise PrunenetError(f"{what} {path} is empty: it needs a header with the columns "
                            f"{', '.join(required)} and at least one row")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PrunenetError(f"{what} {path} has no column {missing[0]!r}{more}; its header "
                            f"must hold {', '.join(required)}")
    rows = []
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        if len(values) > len(header):
            raise PrunenetError(f"{what} {path} line {number} has {len(values)} fields, the "
                                f"header {len(header)}")
        rows.append((number, {h: (values[i].strip() if i < len(values) else "")
                              for i, h in enumerate(header)}))
    if not rows:
        raise PrunenetError(f"{what} {path} has no rows, only its header; nothing to plot")
    return rows


def number(row: dict, column: str, path: str, line: int, what: str) -> Optional[float]:
    """The row's ``column`` as a finite number, None when empty."""
    text = row.get(column, "")
    if text in ("", None):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise PrunenetError(f"{what} {path} line {line}: column {column!r} holds {text!r}, "
                            f"not a finite number")
    return value


def read_report(run_dir: str) -> dict:
    """A run's ``report.json``, checked to hold ``widths`` as {layer: [kept, original]}."""
    from .files import read_json
    if not os.path.isdir(run_dir):
        raise PrunenetError(f"run folder {run_dir} " + (
            "is a file; give the folder of a prunenet prune run" if os.path.exists(run_dir)
            else "does not exist"))
    path = os.path.join(run_dir, REPORT_FILE)
    report = read_json(path, "run report")
    widths = report.get("widths") if isinstance(report, dict) else None
    if not isinstance(widths, dict) or not widths:
        raise PrunenetError(f"run report {path} has no 'widths' object of {{layer: [kept, "
                            f"original]}}; give the folder of a finished prunenet prune run")
    for layer, pair in widths.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in pair)
                and 0 <= pair[0] <= pair[1] and pair[1] > 0):
            raise PrunenetError(f"run report {path}: 'widths' of {layer} is {pair!r}, not "
                                f"[kept, original] whole numbers with kept <= original")
    return report


def read_steps(run_dir: str) -> List[dict]:
    """A GCP run's ``steps.csv`` rows, numbers parsed (None where empty)."""
    if not os.path.isdir(run_dir):
        raise PrunenetError(f"run folder {run_dir} " + (
            "is a file; give the folder of a prunenet prune run" if os.path.exists(run_dir)
            else "does not exist"))
    path = os.path.join(run_dir, STEPS_FILE)
    what = "steps file"
    rows = []
    for line, row in read_csv(path, STEP_COLUMNS, what):
        parsed = {c: number(row, c, path, line, what)
                  for c in STEP_COLUMNS + OPTIONAL_STEP_COLUMNS if c != "phase"}
        parsed["phase"] = row["phase"]
        rows.append(parsed)
    return rows


def read_results(path: str) -> List[dict]:
    """The rows of a results CSV as text, none when the file does not exist yet; a file
    without the schema's columns is refused."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        missing = [c for c in RESULTS_COLUMNS if c not in reader.fieldnames]
        if missing:
            raise PrunenetError(f"results file {path} lacks column {missing[0]}; it is not a "
                                f"prunenet results CSV ({', '.join(RESULTS_COLUMNS)})")
        return list(reader)


def put_result(path: str, row: dict) -> None:
    """Add ``row`` to the results CSV (replacing a row of the same run_dir and method),
    rewritten atomically."""
    from .files import atomic_path
    rows = [r for r in read_results(path)
            if (r["run_dir"], r["method"]) != (row["run_dir"], row["method"])]
    rows.append({k: ("" if row.get(k) is None else row.get(k)) for k in RESULTS_COLUMNS})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULTS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(buf.getvalue())


def has_result(path: str, run_dir: str) -> bool:
    """Whether the results CSV has a pruned network's row for ``run_dir``."""
    return any(r["run_dir"] == run_dir and r["method"] != "unpruned"
               for r in read_results(path))


def write_steps(path: str, rows: List[dict]) -> None:
    """Write a run's ``steps.csv`` atomically (the optional columns when some row has them)."""
    from .files import atomic_path
    buf = io.StringIO()
    extra = [c for c in OPTIONAL_STEP_COLUMNS if any(c in row for row in rows)]
    writer = csv.DictWriter(buf, fieldnames=STEP_COLUMNS + extra)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(buf.getvalue())
