"""Issue #28: does prunenet's timer see what a deployed network sees? For ``resnet18_v1b`` at
64 px and its half- and quarter-width networks, the latency ratios (pruned over unpruned) two
ways, side by side:

- *deployed*: each network alone in a process of its own, run batch after batch (ONNX Runtime's
  default session options; MXNet hybridized), the median of 40 batches after 5 untimed ones;
- *timer*: ``UnitTimer.ratio`` as the latency objective's check uses it — the two networks in
  one process, in turn, by the timing rule — and the noise of the table's unit timings at full
  widths (``UnitTimer.time``, what a latency table stores).

Not a test: run it on an idle machine, one thread per core as deployed, e.g.

    OMP_NUM_THREADS=2 python benchmarks/runtime_threads.py --runtime onnxruntime --batch-sizes 1 32

docs/latency.md ("ONNX Runtime's threads") gives what it measured.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def _networks(batch: int):
    """name -> MXNet symbol, and the traced graph and cost (for the units)."""
    import numpy as np
    from prunenet import trace
    from prunenet.latency.cost import LatencyCost, _resized_symbol
    from prunenet.latency.table import LatencyTable
    from prunenet.training.models import load_model
    graph = trace(load_model("resnet18_v1b", input_size=64), (1, 3, 64, 64))
    LatencyCost._calibrate = lambda self: None  # the units' specs only, no table measured
    cost = LatencyCost(graph, LatencyTable())
    quarter = np.maximum(8, graph.full_widths() // 4)
    return {"full": graph.symbol, "half": _resized_symbol(graph, cost.half_widths()),
            "quarter": _resized_symbol(graph, quarter)}, graph, cost


def alone(runtime: str, which: str, batch: int) -> str:
    """Median ms of one network run batch after batch, alone in this process, and the noise of
    that median (:func:`prunenet.latency.timing.noise`), as ``"MS NOISE"``."""
    import numpy as np
    from prunenet.latency import runtimes
    sym = _networks(batch)[0][which]
    shapes = {"data": (batch, 3, 64, 64)}
    if runtime == "mxnet":
        run = runtimes.MXNetRuntime().symbol_call(sym, shapes)
    else:  # ONNX Runtime's defaults, as a deployment has them
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = runtimes.threads()
        model = runtimes.onnx_model(sym, runtimes.initial_params(sym, shapes), shapes)
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        feeds = {"data": np.random.rand(*shapes["data"]).astype(np.float32)}

        def run() -> None:
            session.run(None, feeds)
    for _ in range(5):
        run()
    times = []
    for _ in range(40):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    from prunenet.latency.timing import noise
    return f"{float(np.median(times)) * 1e3} {noise(times)}"


def timer_ratios(runtime: str, batch: int) -> dict:
    from prunenet.latency.timer import UnitTimer
    nets, graph, cost = _networks(batch)
    timer = UnitTimer(batch_size=batch, runtime=runtime)
    calls = {k: timer.network_call(s, (3, 64, 64)) for k, s in nets.items()}
    out = {}
    for k in ("half", "quarter"):
        r = timer.ratio({k: calls[k], "full": calls["full"]}, k, "full")
        out[k] = (r["ratio"], r["noise"], r["full_ms"])
    full = graph.full_widths()
    units = {}
    for idx, layer in enumerate(cost.layers):
        if layer.name in cost.specs:
            i, o = cost._widths_of(idx, full)
            units[layer.name] = timer.unit_call(cost.specs[layer.name], i, o)
    _, timings = timer.time(units)
    out["units_noise"] = timings.worst
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", default="onnxruntime", choices=("mxnet", "onnxruntime"))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    p.add_argument("--alone", nargs=2, metavar=("NETWORK", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.alone:
        print(alone(args.runtime, args.alone[0], int(args.alone[1])))
        return 0
    print(f"resnet18_v1b 64 px in {args.runtime}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '')}")
    for batch in args.batch_sizes:
        deployed, noisy = {}, {}
        for which in ("full", "half", "quarter"):
            out = subprocess.run([sys.executable, __file__, "--runtime", args.runtime,
                                  "--alone", which, str(batch)], check=True,
                                 capture_output=True, text=True).stdout.split()
            deployed[which], noisy[which] = float(out[-2]), float(out[-1])
        timed = timer_ratios(args.runtime, batch)
        from prunenet.latency.timing import TOLERANCE
        print(f"batch {batch}: unpruned {deployed['full']:.2f} ms deployed, "
              f"{timed['half'][2]:.2f} ms timed")
        worst = max(noisy.values())
        if worst > TOLERANCE:  # the deployed figures are medians of 40 batches
            print(f"    too noisy: a deployed median is uncertain by ±{worst:.1%} (more than "
                  f"±{TOLERANCE:.0%}); run it on an idle machine")
        for k in ("half", "quarter"):
            r, noise, _ = timed[k]
            print(f"    {k} / unpruned: deployed {deployed[k] / deployed['full']:.3f}, "
                  f"timer {r:.3f} ±{noise:.1%}")
        print(f"    the table's units at full widths: worst noise ±{timed['units_noise']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
