"""Measuring in ONNX Runtime (``--runtime onnxruntime``): pruned networks exported to ONNX compute
what MXNet computes; the latency objective measured there meets its target or refuses;
``--round-to auto`` picks the block size the timing table rewards; bench in both runtimes."""
import json
import time

import mxnet as mx
import numpy as np
import pytest

from prunenet import PrunenetError, cost_model, trace
from prunenet.methods import DATA_FREE
from prunenet.latency.runtimes import MXNetRuntime, OnnxRuntime, get_runtime
from prunenet.core.surgery import network_params

ORT = "onnxruntime/CPUExecutionProvider"


def _pruned(net, shape, name=None):
    """``net`` pruned by l1 to half its MACs (a GluonCV ``name`` rebuilt as GluonCV's)."""
    from prunenet.zoo.pruned import prune_network
    graph = trace(net, shape)
    sel = DATA_FREE["l1"](graph, network_params(net), cost_model(graph, "flops"), 0.5)
    assert sel.achieved <= 0.5
    return prune_network(net, graph, sel.keep, name).net


def _symbol_network(random_net, tmp_path):
    """A network loaded as ``--symbol`` loads it: a HybridBlock.export pair read back."""
    from prunenet.training.models import load_network
    net = random_net("cifar_resnet20_v1", 16)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 16, 16)))
    prefix = str(tmp_path / "exported")
    net.export(prefix)
    loaded, _, shape = load_network(symbol=f"{prefix}-symbol.json",
                                    params=f"{prefix}-0000.params", input_size=16)
    return loaded, shape


@pytest.mark.parametrize("which", ["resnet", "mobilenetv2", "symbol"])
def test_a_pruned_network_in_onnx_runtime_computes_what_mxnet_computes(which, tmp_path, random_net):
    if which == "symbol":
        net, shape = _symbol_network(random_net, tmp_path)
        name = None
    else:
        name = {"resnet": "resnet18_v1b", "mobilenetv2": "mobilenetv2_0.25"}[which]
        net, shape = random_net(name, 32), (1, 3, 32, 32)
    pruned = _pruned(net, shape, name)
    x = np.random.RandomState(1).normal(size=(2,) + tuple(shape[1:])).astype(np.float32)
    expected = MXNetRuntime().outputs(pruned, x)
    got = OnnxRuntime().outputs(pruned, x)
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert scale > 1e-3  # a network that computes something
    assert float(np.abs(got - expected).max()) <= 1e-4 * max(1.0, scale)


def test_the_sessions_timed_stop_spinning_after_a_run_and_whole_networks_are_timed_warm(
        monkeypatch):
    """Sessions timed in turn must not run beside each other's spinning thread pools (measured
    in docs/latency.md: a batch 1.8x slower, ratios ±17 %): every session prunenet makes stops
    its threads' spinning when a run returns, and spins within a run as deployed; and whole
    networks are timed right after an untimed batch of their own."""
    from prunenet.latency import timing
    from prunenet.latency.timer import UnitTimer
    rt = OnnxRuntime()
    sym = mx.sym.Activation(mx.sym.var("data"), act_type="relu")
    made = []
    real = rt.session
    monkeypatch.setattr(rt, "session", lambda model: made.append(real(model)) or made[-1])
    rt.symbol_call(sym, {"data": (1, 4)})()
    options = made[0].get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    seen = {}
    real_tus = timing.time_until_stable
    monkeypatch.setattr(timing, "time_until_stable",
                        lambda calls, **k: seen.update(k) or real_tus(calls, **k))
    timer = UnitTimer(batch_size=1, repeats=3, warmup=0, runtime="onnxruntime")
    call = timer.network_call(sym, (4,))
    timer.ratio({"a": call, "b": call}, "a", "b", budget_s=0.1)
    assert seen["warm_each"] is True


def test_a_layer_the_export_cannot_express_is_refused_naming_it():
    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv0")
    sym = mx.sym.SoftmaxActivation(conv, mode="channel", name="attention")
    with pytest.raises(PrunenetError, match=r"layer attention \(SoftmaxActivation\) cannot be "
                                            r"exported to ONNX.*--runtime mxnet") as err:
        OnnxRuntime().symbol_call(sym, {"data": (1, 3, 8, 8)})
    assert "\n" not in str(err.value)
    MXNetRuntime().symbol_call(sym, {"data": (1, 3, 8, 8)})()  # MXNet itself runs it


def test_onnx_runtime_refuses_float16_and_a_missing_gpu_provider():
    with pytest.raises(PrunenetError, match="float32 networks.*--dtype float32"):
        get_runtime("onnxruntime", dtype="float16")
    with pytest.raises(PrunenetError, match="unknown runtime 'tvm'"):
        get_runtime("tvm")


class _Machine:
    """What the sleeping machine knows: the ONNX sessions built, and whether pruning pays."""

    def __init__(self):
        self.sessions, self.pruning_pays, self.full_macs = 0, True, None


@pytest.fixture
def onnx_sleeping_machine(monkeypatch, independent_count):
    """ONNX Runtime on the sleeping machine: every unit and network is really exported to ONNX
    and loaded in an InferenceSession, and each call then sleeps the sleeping machine's known
    cost of its MACs — or, once ``pruning_pays`` is off, a whole network (a symbol of more than
    three convolutions) sleeps as long as the unpruned one, whatever its widths."""
    from test_latency import machine_ms
    machine = _Machine()
    real = OnnxRuntime.symbol_call

    def call(self, symbol, shapes, params=None):
        real(self, symbol, shapes, params)  # exported and loaded for real
        machine.sessions += 1
        shape = shapes["data"]
        macs = independent_count(symbol, (1,) + tuple(shape[1:]))[0]
        whole = symbol.tojson().count('"Convolution"') > 3
        if whole and machine.full_macs is None:
            machine.full_macs = macs  # the first network measured is the unpruned one
        if whole and not machine.pruning_pays:
            macs = machine.full_macs
        seconds = machine_ms(macs, shape[0]) / 1e3
        return lambda: time.sleep(seconds)
    monkeypatch.setattr(OnnxRuntime, "symbol_call", call)
    return machine


@pytest.mark.e2e  # a whole path: a command that measures and prunes
def test_the_latency_objective_in_onnx_runtime_meets_its_target(tmp_path, onnx_sleeping_machine,
                                                                independent_count):
    from test_latency import _reachable_latency_target, machine_ms
    from prunenet.cli import main
    from prunenet.io.files import read_json
    from prunenet.latency import LatencyTable
    from prunenet.training.models import load_model
    from prunenet.zoo.pruned import load_pruned
    table, out = tmp_path / "table.json", tmp_path / "run"
    target = _reachable_latency_target(str(table), runtime="onnxruntime")
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--objective",
                 "latency", "--runtime", "onnxruntime", "--target", str(target),
                 "--latency-table", str(table), "--latency-batch-size", "16",
                 "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    assert report["latency_table"]["runtime"] == ORT and report["speed_check"]["runtime"] == ORT
    assert report["latency_target_met"]
    assert report["latency_fraction_measured"] <= target + report["latency_fraction_noise"]
    assert onnx_sleeping_machine.sessions > 10  # units and networks exported, loaded
    saved = json.loads(table.read_text())
    assert saved["runtime"] == ORT and saved["units"]
    data = mx.sym.var("data")  # what was measured is the sleeping machine's cost of the network
    full, pruned = (independent_count(net(data), (1, 3, 32, 32))[0]
                    for net in (load_model("cifar_resnet20_v1"), load_pruned(str(out))))
    expected = machine_ms(pruned) / machine_ms(full)
    assert report["latency_fraction_measured"] == pytest.approx(expected, abs=0.03)
    with pytest.raises(PrunenetError, match=r"is for cpu, batch 16, float32, \d+ threads, ONNX "
                                            r"Runtime \(CPUExecutionProvider\), not .*batch 16, "
                                            r"float32, \d+ threads; latency depends on all five"):
        LatencyTable.open(str(table), batch_size=16, measure=False)  # MXNet's: another table


@pytest.mark.e2e  # a whole path: a command that measures and prunes
def test_the_latency_objective_in_onnx_runtime_refuses_a_missed_target(
        tmp_path, onnx_sleeping_machine):
    from test_latency import _reachable_latency_target
    from prunenet.training.models import input_shape, load_model
    from prunenet.run.pipeline import method_selection, objective_cost, select_with
    table = str(tmp_path / "table.json")
    target = _reachable_latency_target(table, runtime="onnxruntime")
    net = load_model("cifar_resnet20_v1")
    graph = trace(net, input_shape("cifar_resnet20_v1"))
    cost = objective_cost(graph, "latency", "cifar_resnet20_v1", latency_table=table,
                          latency_batch_size=16, runtime="onnxruntime")
    onnx_sleeping_machine.pruning_pays = False  # a pruned network now runs as slow as before
    params = network_params(net)
    with pytest.raises(PrunenetError, match=rf"latency target {target} missed: the pruned "
                                            r"network measured (1\.0|0\.99).*--objective flops") as err:
        select_with(lambda a: method_selection("l1", graph, params, cost, a), cost, target)
    assert "\n" not in str(err.value)


def _constructed_table(graph, best: int):
    """A latency table (no timer) whose units save ``best``'s block the most time per channel:
    a unit's latency is its width, less a bonus at every multiple of ``best`` below full."""
    from prunenet.latency import LatencyTable
    from prunenet.latency.blocks import BLOCKS, _points
    table = LatencyTable("cpu", 4, "float32", runtime=ORT)
    table.references = [1.0]
    for spec, i, o, fewer in _points(graph, BLOCKS):
        entries = table.units.setdefault(spec.key, {})
        for a, b in [(i, o)] + fewer:
            removed = o - b
            bonus = 2.0 * removed if removed % best == 0 else 0.0  # whole vectors gone
            entries[f"{a},{b}"] = float(b) * 10 - bonus
    return table


@pytest.mark.parametrize("best", [4, 16])
def test_round_to_auto_picks_the_block_the_timing_table_makes_best(best, random_net):
    from prunenet.latency.blocks import block_gains, choose_block
    graph = trace(random_net("cifar_resnet20_v1", 16), (1, 3, 16, 16))
    gains = block_gains(_constructed_table(graph, best), graph)
    assert set(gains) == {1, 4, 8, 16, 32}
    assert choose_block(gains) == best
    # 16 saves 12 per channel when 16 is the runtime's block; so do 32 (a multiple): the smaller
    # wins alike; 4 saves it when 4 is, and so do 8, 16, 32
    assert gains[1] == pytest.approx(10.0) and gains[best] == pytest.approx(12.0)


def test_round_to_auto_in_a_run_measures_and_reports_the_blocks(tmp_path, capsys):
    from prunenet.cli import main
    from prunenet.io.files import read_json
    out = tmp_path / "run"
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
                 "--round-to", "auto", "--runtime", "onnxruntime", "--latency-batch-size", "2",
                 "--latency-table", str(tmp_path / "t.json"), "--no-speed-check",
                 "--out", str(out)]) == 0
    report = read_json(str(out / "report.json"))
    auto = report["round_to_auto"]
    assert auto["runtime"] == ORT and report["round_to"] == auto["chosen"] in (1, 4, 8, 16, 32)
    assert set(auto["ms_saved_per_channel"]) == {"1", "4", "8", "16", "32"}
    assert "--round-to auto: time saved per channel removed in ONNX Runtime" in \
        capsys.readouterr().out
    chosen = auto["chosen"]  # the selection removed channels in blocks of the chosen size
    removed = [full - kept for kept, full in report["group_widths"] if kept < full]
    assert removed and all(r % chosen == 0 for r in removed)


def test_bench_in_both_runtimes_interleaved(capsys, random_net):
    from prunenet.latency.throughput import throughput
    nets = {"a": random_net("cifar_resnet20_v1", 16), "b": random_net("cifar_resnet20_v2", 16)}
    out = throughput(nets, (3, 16, 16), batch_size=2, repeats=3, warmup=1, runtime="both")
    assert list(out) == ["a@mxnet", "b@mxnet", "a@onnxruntime", "b@onnxruntime"]
    assert {r["runtime"] for r in out.values()} == {"mxnet", ORT}
    assert out["a@onnxruntime"]["speedup"] == 1.0 == out["a@mxnet"]["speedup"]
    assert len({r["rounds"] for r in out.values()}) == 1  # one interleaved timing


def test_round_to_auto_with_a_dataset_is_refused(tmp_path, capsys):
    from prunenet.cli import main
    assert main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
                 "--round-to", "auto", "--dataset", "synthetic",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--round-to auto works with the data-free methods" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_zoo_list_shows_the_onnx_runtime_throughput_beside_mxnets_where_recorded():
    from prunenet.zoo.store import format_table
    entry = {"base": "resnet18_v1b", "macs": 9e8, "throughput_img_s": 120.4, "batch_size": 64,
             "input_shape": [1, 3, 224, 224], "device": "cpu"}
    plain = format_table({"a": entry}).splitlines()
    assert "ORT_img/s" not in plain[0]
    lines = format_table({"a": dict(entry, throughput_img_s_onnxruntime=181.6),
                          "b": entry}).splitlines()
    header = lines[0].split()
    at = header.index("ORT_img/s")
    assert header[at - 1] == "img/s"
    assert lines[1].split()[at - 1:at + 1] == ["120", "182"]
    assert lines[2].split()[at] == "-"


def test_the_timed_onnx_model_lets_onnx_runtime_fold_batchnorm_into_the_convolution(tmp_path):
    """MXNet's exporter lists the weights among the graph's inputs, where ONNX Runtime must
    treat them as replaceable and cannot fold the BatchNorm; the model prunenet times has them
    as initializers only, and the optimised graph has no BatchNormalization left."""
    import onnx
    import onnxruntime
    from prunenet.latency.units import UnitSpec
    from prunenet.latency.runtimes import initial_params, onnx_model
    spec = UnitSpec("conv", kernel=(3, 3), pad=(1, 1), in_hw=(8, 8),
                    post=("Activation(act_type=relu)",))
    sym, shapes = spec.symbol(16, 16), {"data": (2, 16, 8, 8)}
    model = onnx_model(sym, initial_params(sym, shapes), shapes)
    assert [i.name for i in model.graph.input] == ["data"]

    def optimised_ops(m):
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
        onnxruntime.InferenceSession(m.SerializeToString(), options,
                                     providers=["CPUExecutionProvider"])
        return {n.op_type for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node}
    assert "BatchNormalization" not in optimised_ops(model)
    as_exported = onnx.ModelProto()
    as_exported.CopyFrom(model)  # the weights among the inputs again, as MXNet writes them
    as_exported.graph.input.extend(onnx.helper.make_tensor_value_info(
        init.name, init.data_type, list(init.dims)) for init in model.graph.initializer)
    assert "BatchNormalization" in optimised_ops(as_exported)


def test_bench_command_names_the_runtime(capsys):
    from test_bench import _bench
    assert _bench(["--model", "cifar_resnet20_v1", "--input-size", "16", "--batch-size", "2",
                   "--repeats", "2", "--warmup", "0", "--runtime", "onnxruntime", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runtime"] == "onnxruntime"
    assert doc["models"]["cifar_resnet20_v1"]["runtime"] == ORT
    assert _bench(["--model", "cifar_resnet20_v1", "--input-size", "16", "--batch-size", "2",
                   "--repeats", "2", "--warmup", "0", "--runtime", "both"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MXNet and ONNX Runtime (CPUExecutionProvider), cpu, batch 2")
    assert [line.split()[0] for line in lines[2:4]] == ["cifar_resnet20_v1@mxnet",
                                                        "cifar_resnet20_v1@onnxruntime"]


def test_round_to_auto_chooses_among_the_blocks_that_can_reach_the_target(monkeypatch):
    """The block that saves the most time per channel is passed over when it cannot reach the
    target (a noisy table once chose 32 for cifar_resnet20_v1 at α 0.5, which only 0.77 of the
    FLOPs can be reached with); none reaching it is one line."""
    import types
    import prunenet.latency as latency
    import prunenet.latency.blocks as blocks
    from prunenet.errors import PrunenetError
    from prunenet.run.folder import auto_round_to
    monkeypatch.setattr(latency.LatencyTable, "open",
                        classmethod(lambda cls, *a, **k: types.SimpleNamespace(runtime="mxnet")))
    monkeypatch.setattr(blocks, "block_gains", lambda table, graph: {1: 0.1, 4: 0.2, 32: 0.9})
    lines = []
    chosen, info = auto_round_to(None, "", None, 2, "float32", "mxnet", lines.append,
                                 fits=lambda b: b < 32)
    assert chosen == 4 and info["round_to_auto"]["chosen"] == 4
    assert "32 cannot reach the target" in lines[0]
    assert auto_round_to(None, "", None, 2, "float32", "mxnet", lines.append)[0] == 32
    with pytest.raises(PrunenetError, match="no block size of 1, 4, 32 can reach the target"):
        auto_round_to(None, "", None, 2, "float32", "mxnet", lines.append, fits=lambda b: False)
