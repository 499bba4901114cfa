"""What a run reports: report.json's common fields, the environment it ran in, the latency objective's
predicted and measured fractions, the speed check and the lines the log prints."""
from __future__ import annotations

import os
import platform
import sys
from typing import Dict, List, Optional

import numpy as np

from ..core.costs import count
from ..core.graph import ChannelGraph
from ..core.select import Selection
from ..core.surgery import layer_widths, widths_of

__all__ = ["base_report", "RANDOM_WEIGHTS", "transfer_line", "latency_report", "latency_fields",
           "latency_line", "landed_below", "run_speed_check", "environment"]


def base_report(model: str, method: str, objective: str, target: float, selection: Selection,
                 graph: ChannelGraph, before: dict, timings: dict, command) -> dict:
    """The report fields every pruning run has (see docs/outputs.md)."""
    after = count(graph, widths_of(selection.keep))
    return {
        "model": model, "method": method, "objective": objective, "target": target,
        "achieved": selection.achieved, "granularity": selection.granularity,
        "macs_before": before["macs"], "macs_after": after["macs"],
        "params_before": before["params"], "params_after": after["params"],
        "widths": layer_widths(graph, selection.keep),
        "group_widths": [[int(k.sum()), int(k.size)] for k in selection.keep],
        "timings": timings, "environment": environment(),
        "command": command if command is not None else list(sys.argv),
        **({"solver": selection.solver} if selection.solver is not None else {}),
        **({"kept_whole": kept_whole(graph)} if kept_whole(graph) else {}),
    }


def kept_whole(graph: ChannelGraph) -> List[str]:
    """Why channel groups other than the network's input and output cannot be pruned (an op
    of unknown channel semantics, a shared weight, ...): each reason once."""
    reasons = [r for g in graph.groups if not g.prunable for r in g.reasons
               if not r.startswith("network ")]
    return list(dict.fromkeys(reasons))


def kept_whole_line(graph: ChannelGraph) -> Optional[str]:
    """The note saying which groups the pruning had to keep whole, or None."""
    reasons = kept_whole(graph)
    if not reasons:
        return None
    groups = sum(1 for g in graph.groups if not g.prunable and any(
        not r.startswith("network ") for r in g.reasons))
    more = f" (and {len(reasons) - 1} more reasons, in report.json)" if len(reasons) > 1 else ""
    return f"note: {groups} channel group(s) kept whole: {reasons[0]}{more}"


RANDOM_WEIGHTS = ("warning: no --params or --pretrained: pruning randomly initialised weights "
                  "(fine for trying the tool, meaningless for accuracy)")


def transfer_line(transfer: dict) -> str:
    """The log line saying that the output layer was replaced (transfer to other classes)."""
    return (f"transfer: the params file's {transfer['from_classes']}-class output layer "
            f"({', '.join(transfer['replaced'])}) was replaced by a freshly initialised "
            f"{transfer['classes']}-class one")


def latency_report(cost, keep, target: float) -> dict:
    """The report's latency fields for a selection made without measuring (GCP): predicted by
    the table, then measured side by side with the unpruned network."""
    if cost.name != "latency":
        return {}
    check = cost.check(widths_of(keep))
    check["met"] = check["measured"] <= target + check["noise"]
    return latency_fields(cost, check, target)


def latency_fields(cost, last: dict, target: float) -> dict:
    """The latency objective's report fields. ``achieved`` is the measured fraction of the
    unpruned latency (what the summary line prints), ``achieved_predicted`` the table's
    prediction of it, which the selection worked with."""
    from ..latency import NOISE_LIMIT
    table = cost.table
    return {"achieved": last["measured"], "achieved_predicted": last["predicted"],
            "latency_ms_before": last["full_ms"], "latency_ms_predicted": last["predicted_ms"],
            "latency_ms_measured": last["measured_ms"],
            "latency_fraction_predicted": last["predicted"],
            "latency_fraction_measured": last["measured"],
            "latency_fraction_noise": last["noise"],
            "latency_target_met": bool(last["met"]),
            "latency_too_noisy": bool(last["noise"] > NOISE_LIMIT * last["measured"]),
            "latency_table": {"path": table.path, "runtime": table.runtime, "device": table.device,
                              "batch_size": table.batch_size, "dtype": table.dtype,
                              "threads": table.threads}}


def latency_line(report: dict) -> str:
    if "latency_ms_measured" not in report:
        return ""
    line = (f"; latency {report['latency_ms_before']:.1f} -> {report['latency_ms_measured']:.1f} "
            f"ms per batch of {report['latency_table']['batch_size']}: measured "
            f"{report['latency_fraction_measured']:.3f} ±{report['latency_fraction_noise']:.3f} "
            f"of the unpruned ({report['latency_fraction_predicted']:.3f} predicted)")
    if report.get("latency_too_noisy"):
        line += "; TOO NOISY to tell whether the target was met"
    elif not report.get("latency_target_met", True):
        line += f"; target {report['target']} MISSED by more than the noise"
    elif landed_below(report):
        measured, target = report["latency_fraction_measured"], report["target"]
        refined = any(not r["met"] for r in report.get("latency_rounds", []))
        line += (f"; BELOW target {target} by {target - measured:.3f}, more than the noise "
                 f"and the largest block ({report['granularity']:.3f}) together: the network "
                 f"kept fewer channels than the target allows; "
                 + ("the selections tried above it measured over the target" if refined else
                    "prune at a higher --target to keep more"))
    return line


# a network this far below its target (as a fraction of it) is worth a line; closer is a
# normal landing of a selection made in blocks
BELOW_SHARE = 0.05


def landed_below(report: dict) -> bool:
    """Whether a run's measured latency is far below its target: further than the noise plus
    the largest block (:func:`prunenet.latency.cost.far_below`, the selection's own test) and
    more than :data:`BELOW_SHARE` of the target."""
    from ..latency.cost import far_below
    measured, target = report["latency_fraction_measured"], report["target"]
    return (far_below(target, measured, report["latency_fraction_noise"], report["granularity"])
            and measured < (1 - BELOW_SHARE) * target)


def run_speed_check(full, pruned, shape, before: dict, graph: ChannelGraph,
                     selection: Selection, gpus: str, objective: str,
                     latency_batch_size: int, ctx=None, runtime: str = "mxnet") -> dict:
    """A run's speed check on its device, in its ``runtime``: at the latency batch size for the
    latency objective, else at 16."""
    from ..latency.throughput import device, speed_check
    after = count(graph, widths_of(selection.keep))
    ctx = ctx or device((gpus or "").split(",")[0].strip())
    batch = latency_batch_size if objective == "latency" else 16
    return speed_check(full, pruned, shape, before["macs"], after["macs"], ctx, batch,
                       runtime=runtime)


def _installed(package: str) -> str:
    """The installed distribution's version (GluonCV's own ``__version__`` string differs)."""
    from importlib import metadata
    for name in (package, package + "-cu112"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def environment() -> Dict[str, object]:
    """Versions and settings needed to reproduce a run: package versions, MXNet's build
    features, thread count, and the prunenet git commit when it runs from a checkout."""
    import subprocess
    import mxnet as mx
    from ..version import __version__
    try:
        features = sorted(f.name for f in mx.runtime.Features().values() if f.enabled)
    except Exception:  # older builds have no runtime feature list
        features = []
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)),
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"prunenet": __version__, "git_commit": commit, "mxnet": _installed("mxnet"),
            "mxnet_features": features, "gluoncv": _installed("gluoncv"),
            "numpy": np.__version__, "onnx": _installed("onnx"),
            "onnxruntime": _installed("onnxruntime"),
            "python": platform.python_version(), "platform": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "mxnet_engine_type": os.environ.get("MXNET_ENGINE_TYPE", "ThreadedEnginePerDevice"),
            "cpu_count": os.cpu_count()}
