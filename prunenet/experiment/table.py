"""The paper-style results table: results CSVs as one Markdown table per model and dataset
(:func:`results_table`)."""
from __future__ import annotations

import os
from typing import Dict, List

from ..errors import PrunenetError
from ..io.records import read_results

__all__ = ["results_table"]

_LABELS = {"flops": "GCP-f", "params": "GCP-p", "latency": "GCP-t"}


def _label(row: dict) -> str:
    """The name of a row's method in the table (GCP with its objective)."""
    if row["method"] == "unpruned":
        return "unpruned"
    if row["method"] == "gcp":
        return _LABELS.get(row["objective"], "GCP")
    return row["method"].capitalize()


def _num(value, scale: float, unit: str, digits: int = 2) -> str:
    """``value / scale`` with ``digits`` decimals and ``unit``; "" for a missing value."""
    try:
        return f"{float(value) / scale:.{digits}f}{unit}"
    except (TypeError, ValueError):
        return ""


def results_table(*paths: str) -> str:
    """Results CSVs (e.g. GCP's and the uniform baseline's) as the paper's tables (Markdown): one
    per model and dataset, the unpruned network first, then each target with the uniform
    baseline next to GCP."""
    groups: Dict[tuple, List[dict]] = {}
    for path in paths:
        rows = read_results(path)
        if not rows:
            raise PrunenetError(f"results file {path} " + (
                "does not exist" if not os.path.exists(path) else "holds no rows"))
        for r in rows:
            group = groups.setdefault((r["dataset"], r["model"]), [])
            if r["method"] != "unpruned" or all(g["method"] != "unpruned" for g in group):
                group.append(r)  # one unpruned row per table
    out = []
    for (dataset, model), rs in sorted(groups.items()):
        def order(r):
            target = float(r["target"]) if r["target"] else 1.0
            return (-target, r["method"] != "unpruned", r["method"] == "gcp", r["objective"])
        out += [f"### {model} on {dataset}", "",
                "| | α | # Params. | # FLOPs (MACs) | Top-1 | Top-5 | img/s |",
                "|---|---|---|---|---|---|---|"]
        for r in sorted(rs, key=order):
            alpha = "" if r["method"] == "unpruned" else f"{float(r['target']):g}"
            out.append(f"| {_label(r)} | {alpha} | {_num(r['params'], 1e6, 'M')} | "
                       f"{_num(r['macs'], 1e9, 'G', 3)} | {_num(r['top1'], 0.01, '%')} | "
                       f"{_num(r['top5'], 0.01, '%')} | {_num(r['throughput_img_s'], 1, '', 0)} |")
        out.append("")
    return "\n".join(out)
