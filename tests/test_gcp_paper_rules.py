"""GCP as the paper runs it: λ chosen by the held-out debias loss, residual streams scored per
connection, zeroed channels pruned, folding right on small maps, naive uniform at random."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from prunenet import cost_model, trace
from prunenet.methods import DATA_FREE
from prunenet.gcp.schedule import GCPConfig, GCPSchedule, SEARCH_MIN_BATCHES, one_se_rule
from prunenet.run.gcp_steps import search_lines
from prunenet.training.models import randomize_batchnorm
from prunenet.core.select import select
from prunenet.core.surgery import network_params, widths_of
from prunenet.training.train import BatchStream
from prunenet.gcp.masked import DEBIAS, REGULARIZE, MaskedNetwork

from test_gcp import _toy_stream, _x


# -- the λ search -------------------------------------------------------------------------------
def _gcp(random_net, seed=0, size=16, reg=0.0):
    net = random_net("cifar_resnet20_v1", size, seed=seed)
    graph = trace(net, (1, 3, size, size))
    w = MaskedNetwork(net, graph)
    cfg = GCPConfig(target=0.6, steps=2, reg=reg, epochs_per_step=0.5, lr=0.02)
    return net, graph, w, GCPSchedule(w, cost_model(graph, "flops"), cfg, [mx.cpu()],
                                      progress=False)


def _heldout(w, size=16):
    """Per-image held-out losses of the debiased network on 64 fixed images."""
    batches = list(_toy_stream(size, n=64, batch=32, seed=5)(0, 0))

    def losses():
        fn = gluon.loss.SoftmaxCrossEntropyLoss()
        return np.concatenate([fn(w.block(DEBIAS)(a), b).asnumpy() for a, b in batches])
    return losses


def _values(w):
    """Every parameter and mask of a wrapper, in order (names differ between networks)."""
    return [w.get(n) for n in w.params] + [w.get(p.name) for p in w.mask_params.values()]


def _assert_same(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=str(i))


def _paired_se(a, b):
    """The standard error of the mean of a - b, computed apart from prunenet's rule."""
    import statistics
    d = [x - y for x, y in zip(a, b)]
    return statistics.stdev(d) / len(d) ** 0.5


def test_one_se_rule_takes_the_larger_lambda_within_one_standard_error_else_the_lowest():
    rng = np.random.RandomState(0)
    base = rng.exponential(size=400)
    noise = rng.normal(size=400)
    se_unit = _paired_se(base + noise, base)  # the paired difference's spread
    # candidates in increasing λ: the least loss, then one 0.5 SE above it, then one 3 SE above
    near = base + noise - noise.mean() + 0.5 * se_unit
    far = base + noise - noise.mean() + 3.0 * se_unit
    chosen, best, means, se = one_se_rule([base, near, far])
    assert best == 0 and chosen == 1
    assert se[1] == pytest.approx(_paired_se(near, base), rel=1e-9)
    assert means[1] - means[0] <= _paired_se(near, base) < means[2] - means[0]
    # the same candidate 2 SE above the least: not within, so the least is kept
    above = base + noise - noise.mean() + 2.0 * se_unit
    chosen, best, _, _ = one_se_rule([base, above, far])
    assert (chosen, best) == (0, 0)
    # a less regularising candidate never wins by a margin below its noise ...
    chosen, best, _, _ = one_se_rule([near, base, far])
    assert (chosen, best) == (1, 1)
    # ... and a candidate whose loss is not finite is never chosen
    broken = far.copy()
    broken[3] = np.nan
    assert one_se_rule([base, near, broken])[0] == 1
    # nor one that is not admissible (its first step alone went below the run's target)
    assert one_se_rule([base, near, far], admissible=[True, False, True])[0] == 0


def test_shrink_levels_run_from_nothing_zeroed_to_far_past_the_step_target(random_net):
    """ρ is in units of the median importance per unit cost, so its meaning does not depend on
    the learning rate or the step's length: one short step at ρ 0.03 zeroes next to nothing, at
    ρ 3 more than the step's target asks for, at either learning rate."""
    zeroed = {}
    for lr in (0.005, 0.05):
        for rho in (0.03, 3.0):
            _, graph, w, gcp = _gcp(random_net)
            gcp.config.lr = lr
            stream = BatchStream(_toy_stream(16))
            full = gcp.batches(stream, gcp.config.epochs_per_step)
            w.rescale()
            scale = gcp.shrink_scale()
            ratios = np.concatenate([s[k] / 1.0 for s, k, g in zip(w.scores(), w.keep,
                                                                    graph.groups)
                                     if g.prunable])
            assert 0 < scale <= ratios.max()
            gcp.config.reg = gcp.reg_of_shrink(rho, scale, full)
            assert gcp.config.reg == pytest.approx(rho * scale / (lr * full))
            records = gcp.run_step(1, stream)
            total = sum(int(k.sum()) for k, g in zip(w.keep, graph.groups) if g.prunable)
            zeroed[lr, rho] = records[0].zeroed_channels / total
    for lr in (0.005, 0.05):
        assert zeroed[lr, 0.03] < 0.05
        assert zeroed[lr, 3.0] > 1 - 0.6 ** 0.5  # the step's target removes less than this


def test_search_scores_lambda_zero_and_every_candidate_from_one_start_and_leaves_it(random_net):
    _, graph, w, gcp = _gcp(random_net)
    stream = BatchStream(_toy_stream(16))
    before = _values(w)
    position = stream.state()
    search = gcp.search_reg(stream, _heldout(w), [1.0, 0.1], fraction=0.25)
    assert search["grid"] == [0.0, 0.1, 1.0]  # λ 0 added, in increasing order
    assert search["regs"][0] == 0.0 and search["regs"][1] < search["regs"][2]
    per_image = np.array(search["per_image"])
    assert per_image.shape == (3, 64)
    chosen, best, means, se = one_se_rule(per_image, search["admissible"])
    assert (search["chosen_index"], search["best"]) == (chosen, best)
    assert gcp.config.reg == search["regs"][chosen] == search["chosen"]
    _assert_same(before, _values(w))  # the start is back for step 1
    assert stream.state() == position and all(k.all() for k in w.keep)
    # the candidates differ: λ changes what the short step keeps or how far it shrinks
    assert len(set(np.round(means, 6))) == 3
    # the candidates' batches over the T steps' (each phase a quarter, at least the floor)
    full = stream.count(gcp.config.epochs_per_step)
    short = min(full, max(SEARCH_MIN_BATCHES, round(full * 0.25)))
    assert search["share"] == pytest.approx(3 * short / (gcp.config.steps * full))
    aimed = 3 * 0.25 / gcp.config.steps  # before the floor
    assert search["aimed"] == pytest.approx(aimed)
    lines = search_lines(dict(search, share=2.5 * aimed))
    assert any(f"ran {2.5 * aimed:.2f}x the pruning steps' batches" in l for l in lines)
    assert not any("the pruning steps' batches" in l
                   for l in search_lines(dict(search, share=aimed)))


def test_auto_resumes_an_interrupted_search_where_it_stopped(random_net):
    """Given the state after two candidates, the search runs only the others and ends as an
    uninterrupted search does."""
    grid = [0.1, 1.0]
    _, _, w, gcp = _gcp(random_net)
    done = gcp.search_reg(BatchStream(_toy_stream(16)), _heldout(w), grid, fraction=0.25)

    _, _, w2, gcp2 = _gcp(random_net)
    saved = {}

    def stop_after_two(state):
        if sum(v is not None for v in state["losses"]) == 2:
            saved["state"] = state
            raise KeyboardInterrupt  # the kill
    with pytest.raises(KeyboardInterrupt):
        gcp2.search_reg(BatchStream(_toy_stream(16)), _heldout(w2), grid, fraction=0.25,
                        on_candidate=stop_after_two)

    _, _, w3, gcp3 = _gcp(random_net)  # a new process: the unpruned network again
    ran = []
    again = gcp3.search_reg(BatchStream(_toy_stream(16)), _heldout(w3), grid,
                            state=saved["state"],
                            on_candidate=lambda s: ran.append(gcp3.config.reg))
    assert len(ran) == 1  # only the third candidate ran again
    assert again["losses"] == pytest.approx(done["losses"], rel=1e-5)
    assert again["chosen_index"] == done["chosen_index"]
    assert gcp3.config.reg == gcp.config.reg


@pytest.fixture
def FASHION_FREE(small_gcp_args):
    """The small GCP run at 32 px on the whole synthetic set, 0.05 epochs a step and of
    fine-tuning, target 0.5, λ and lr left to their defaults."""
    return small_gcp_args(target=0.5, reg=None, lr=None, epochs_per_step=0.05,
                          finetune_epochs=0.05, train_limit=None, val_limit=None, input_size=32)


def _prune(args, env=None):
    return subprocess.run([sys.executable, "-m", "prunenet", "prune"] + args,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


@pytest.mark.e2e  # a whole path: GCP commands with the λ search, killed and resumed
def test_cli_auto_reports_its_grid_and_losses_and_resumes_a_killed_search(tmp_path, FASHION_FREE):
    grid = ["0.3", "3"]
    whole = tmp_path / "whole"
    done = _prune(FASHION_FREE + ["--shrink-grid", *grid, "--out", str(whole)])
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((whole / "report.json").read_text())
    search = report["reg_search"]
    assert search["grid"] == [0.0, 0.3, 3.0] and search["unit"] == "shrink"
    chosen, best, means, se = one_se_rule(search["per_image"], search["admissible"])
    assert search["chosen_index"] == chosen and report["reg"] == search["regs"][chosen]
    assert search["se"] == pytest.approx(list(se))
    assert search["holdout_images"] > 0 and search["trained_images"] > 0
    log = (whole / "log.txt").read_text()
    assert "λ search (held-out debias loss" in log and "ρ 0 (λ 0) →" in log
    assert f"chose ρ = {search['grid'][chosen]:g}" in log
    assert report["top1_recalibrated"] is not None

    killed = tmp_path / "killed"
    out = _prune(FASHION_FREE + ["--shrink-grid", *grid, "--out", str(killed)],
                 env={"PRUNENET_FAILPOINT": "search:2"})
    assert out.returncode != 0 and not (killed / "report.json").exists()
    ckpt = json.loads((killed / "checkpoint" / "checkpoint.json").read_text())
    assert ckpt["tag"] == "search-2" and ckpt["params"] == "ckpt-search-1.params"  # not rewritten
    resumed = _prune(["--resume", str(killed), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming the λ search after 2 of 3 candidates" in (killed / "log.txt").read_text()
    again = json.loads((killed / "report.json").read_text())
    assert again["reg_search"]["losses"] == pytest.approx(search["losses"], rel=1e-4)
    assert again["reg"] == report["reg"] and again["widths"] == report["widths"]


# -- scoring residual streams -------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["sum", "reach", "mean"])
def test_each_stream_rule_keeps_rescale_function_preserving(rule, random_net):
    net = random_net("resnet18_v1b", 32)
    x = _x((2, 3, 32, 32))
    ref = net(x).asnumpy()
    graph = trace(net, (1, 3, 32, 32))
    w = MaskedNetwork(net, graph, stream_score=rule)
    w.rescale()
    np.testing.assert_allclose(w.block(REGULARIZE)(x).asnumpy(), ref,
                               atol=2e-5 * np.abs(ref).max())
    w.rescale()  # a second rescale moves nothing more
    for g in graph.prunable_groups:
        np.testing.assert_allclose(w.consumer_norms(g.index), 1.0, rtol=1e-4)


@pytest.mark.parametrize("rule", ["sum", "reach", "mean"])
def test_a_weak_stream_channel_goes_before_a_strong_inner_one(rule, random_net):
    """One channel of the first stage's stream carries a twentieth of its usual signal in every
    producer: under every rule it is the first channel GCP removes."""
    net = random_net("resnet18_v1b", 32, seed=2)
    graph = trace(net, (1, 3, 32, 32))
    stream = next(g for g in graph.prunable_groups if g.tied)
    params = dict(net.collect_params().items())
    for name in stream.norms:
        gamma = params[graph.norms[name].gamma]
        g = gamma.data().asnumpy()
        g[5] *= 0.05
        gamma.set_data(mx.nd.array(g))
    w = MaskedNetwork(net, graph, stream_score=rule)
    w.rescale()
    scores = w.scores()
    cost = cost_model(graph, "flops")
    sel = select(graph, cost, scores, 0.999, round_to=1, min_width=8)
    removed = [(g.index, int(i)) for g in graph.prunable_groups
               for i in np.flatnonzero(~sel.keep[g.index])]
    assert removed[:1] == [(stream.index, 5)]
    # and an inner channel, not a stream one, is the least important otherwise
    inner = min((float(scores[g.index].min()), g.index) for g in graph.prunable_groups
                if not g.tied)
    assert scores[stream.index][5] < inner[0]


def test_l1_scores_a_stream_by_its_mean_producer(random_net):
    net = random_net("resnet50_v1d", 32)
    graph = trace(net, (1, 3, 32, 32))
    params = network_params(net)
    from prunenet.methods.l1 import filter_scores
    mean, total = filter_scores(graph, params, "mean"), filter_scores(graph, params, "sum")
    for g in graph.prunable_groups:
        np.testing.assert_allclose(total[g.index], mean[g.index] * len(g.producers), rtol=1e-9)
    # per producer the scores have mean 1 in every layer, so streams and inner groups compare
    ratios = [mean[g.index].mean() for g in graph.prunable_groups]
    assert max(ratios) / min(ratios) < 1.5


# -- zeroed channels ----------------------------------------------------------------------------
def test_zeroed_channels_never_survive_a_selection(random_net):
    net = random_net("resnet18_v1b", 32)
    graph = trace(net, (1, 3, 32, 32))
    cost = cost_model(graph, "flops")
    rng = np.random.RandomState(0)
    scores = [rng.uniform(0.5, 1.5, g.width) for g in graph.groups]
    zeros = {}
    for g in graph.prunable_groups[::2]:
        z = rng.choice(g.width, size=int(rng.randint(1, g.width - 8)), replace=False)
        scores[g.index][z] = 0.0
        zeros[g.index] = z
    sel = select(graph, cost, scores, 0.999, round_to=8, min_width=8, drop_zeros=True)
    for gi, z in zeros.items():
        assert not sel.keep[gi][z].any()
    assert sel.zero_channels_removed == sum(len(z) for z in zeros.values())
    widths = widths_of(sel.keep)
    assert all(widths[g.index] % 8 == 0 and widths[g.index] >= 8 for g in graph.prunable_groups)
    assert sel.achieved < 0.999 - sel.granularity  # below the target: zeros go regardless
    # without the rule the target alone decides
    plain = select(graph, cost, scores, 0.999, round_to=8, min_width=8)
    assert plain.blocks_removed == 1


def test_gcp_with_a_large_reg_prunes_what_it_zeroed(random_net):
    _, graph, w, gcp = _gcp(random_net, reg=30.0)  # a shrink of lr·λ·c ≈ 0.6 c per batch
    gcp.config.target = 0.9
    records = gcp.run_step(1, BatchStream(_toy_stream(16)))
    assert records[0].zeroed_channels > 0 and gcp.zeros_pruned > 0
    for g in graph.prunable_groups:
        s = np.abs(w.get(w.scale_name(g.index)))
        kept = w.keep[g.index]
        live = kept & (s > 0)
        assert live.sum() == kept.sum() or kept.sum() == 8, g.index  # none zero unless at min
    assert any("zeroed were pruned" in n for n in gcp.notes)


# -- gradients through a step -------------------------------------------------------------------
def test_regularize_gradients_of_stream_masks_and_classifier_after_a_step(random_net):
    """After a real GCP step has removed channels, autograd's gradients of the stream masks and
    of the classifier's weights in the regularize step equal finite differences (float64)."""
    _, graph, w, gcp = _gcp(random_net, seed=3, size=8, reg=0.05)
    gcp.config.target = 0.6
    gcp.run_step(1, BatchStream(_toy_stream(8)))
    assert any((~k).any() for k in w.keep)  # channels are gone
    w.rescale()  # as the next step begins
    block = w.block(REGULARIZE)
    block.cast("float64")
    x = _x((4, 3, 8, 8), seed=1).astype("float64")
    y = mx.nd.array([1, 2, 3, 4], dtype="float64")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    with autograd.record():
        out = loss_fn(block(x), y).sum()
    out.backward()
    dense = graph.layers[w.classifier[0]]
    checked = [w.mask_name(gi) for gi in w.masked_groups] + [dense.weight]
    rng = np.random.RandomState(0)
    for name in checked:
        param = w._param(name)
        grad, value = param.grad().asnumpy(), param.data().asnumpy()
        flat = value.reshape(-1)
        live = np.flatnonzero(flat != 0)
        for i in rng.choice(live, 3, replace=False):
            h = 1e-6
            loss = []
            for sign in (1, -1):
                v = flat.copy()
                v[i] += sign * h
                param.set_data(mx.nd.array(v.reshape(value.shape), dtype="float64"))
                loss.append(float(loss_fn(block(x), y).sum().asscalar()))
            param.set_data(mx.nd.array(value, dtype="float64"))
            fd = (loss[0] - loss[1]) / (2 * h)
            assert fd == pytest.approx(grad.reshape(-1)[i], rel=1e-4, abs=1e-7), (name, i)
        if name.startswith("prunenet_mask"):  # a removed channel's mask gets no gradient
            gi = int(name[len("prunenet_mask"):])
            assert np.all(grad[~w.keep[gi]] == 0)


# -- folding on small maps ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [7, 2])
def test_folding_a_dead_channel_into_a_3x3_consumer_is_right_on_small_maps(size):
    """conv → BN → ReLU → 3×3 conv (zero padding) → BN → global pool → dense: a removed channel
    that outputs the constant relu(β) is folded as its average over output positions, which the
    global pool then makes exact; subtracting the whole kernel sum (the first rule) is not."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(), gluon.nn.Activation("relu"),
            gluon.nn.Conv2D(16, 3, padding=1), gluon.nn.BatchNorm(),
            gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(5))
    net.initialize(mx.init.Xavier())
    x = _x((3, 3, size, size))
    net(x)
    randomize_batchnorm(net, seed=4)
    graph = trace(net, (1, 3, size, size))
    w = MaskedNetwork(net, graph)
    first = next(g for g in graph.prunable_groups
                 if graph.layers[g.consumers[0]].op == "Convolution")
    norm = w._bn_of[first.producers[0]]
    gamma, beta = w.get(norm.gamma), w.get(norm.beta)
    gamma[:8], beta[:8] = 0, np.abs(beta[:8]) + 0.5
    w.set(norm.gamma, gamma)
    w.set(norm.beta, beta)
    ref = w.block(REGULARIZE)(x).asnumpy()
    keep = [k.copy() for k in w.keep]
    keep[first.index][:8] = False
    consumer = graph.layers[first.consumers[0]]
    cover = w._tap_coverage(consumer.name)
    inside = [[np.mean([0 <= y + a - 1 < size and 0 <= x + b - 1 < size
                        for y in range(size) for x in range(size)]) for b in range(3)]
              for a in range(3)]  # counted position by position
    np.testing.assert_allclose(cover, inside)
    assert w.apply_keep(keep) == []
    folded = w.block(REGULARIZE)(x).asnumpy()
    np.testing.assert_allclose(folded, ref, atol=1e-4 * np.abs(ref).max())
    # the whole kernel sum would have been off by the border's share
    bn2 = w._bn_of[consumer.name]
    weight = w.get(consumer.weight).astype(np.float64)
    const = np.maximum(beta[:8], 0)
    whole = np.einsum("oikl,i->o", weight[:, :8], const)
    average = np.einsum("oikl,kl,i->o", weight[:, :8], cover, const)
    assert np.abs(whole - average).max() > 0.05 * np.abs(average).max()


# -- naive uniform ------------------------------------------------------------------------------
def test_uniform_draws_channels_at_random_with_the_same_widths(random_net):
    net = random_net("resnet18_v1b", 32)
    graph = trace(net, (1, 3, 32, 32))
    params, cost = network_params(net), cost_model(graph, "flops")
    a = DATA_FREE["uniform"](graph, params, cost, 0.5, seed=0)
    b = DATA_FREE["uniform"](graph, params, cost, 0.5, seed=1)
    again = DATA_FREE["uniform"](graph, params, cost, 0.5, seed=0)
    assert list(widths_of(a.keep)) == list(widths_of(b.keep))
    assert any((ka != kb).any() for ka, kb in zip(a.keep, b.keep))
    assert all((ka == kc).all() for ka, kc in zip(a.keep, again.keep))
    # every group keeps about the same fraction
    fractions = [widths_of(a.keep)[g.index] / g.width for g in graph.prunable_groups]
    assert max(fractions) - min(fractions) <= 8 / min(g.width for g in graph.prunable_groups)
    # uniform-l1 shrinks alike but keeps the largest filters
    c = DATA_FREE["uniform-l1"](graph, params, cost, 0.5)
    assert list(widths_of(c.keep)) == list(widths_of(a.keep))


def test_with_the_regulariser_acting_a_costly_channel_goes_before_a_cheaper_weaker_one(random_net):
    """The cost-weighted L1 at work: of a costly stream channel of moderate importance and a
    cheap inner channel of less importance, the regulariser zeroes the costly one first (λ·c
    is larger there), where λ = 0 would remove the cheap one first (its |s| is smaller)."""
    def fresh():
        net, graph, w, gcp = _gcp(random_net)
        gcp.config.round_to = gcp.config.min_width = 1
        gcp.reg_trainer._optimizer.keep_top = 1
        w.rescale()
        widths = np.array([int(k.sum()) for k in w.keep])
        return graph, w, gcp, w.cost_weights(gcp.cost.marginal(widths))

    graph, w, gcp, weights = fresh()
    scores = w.scores()
    cost = {g.index: float(weights[w.scale_name(g.index)][0]) for g in graph.prunable_groups}
    costly, cheap = max(cost, key=cost.get), min(cost, key=cost.get)
    assert cost[costly] > 2 * cost[cheap]
    # j: the costly group's channel of least importance per unit cost; i: a cheap channel less
    # important than j, but worth more per unit cost
    j = int(np.argmin(scores[costly]))
    ratio_j = scores[costly][j] / cost[costly]
    spared = int(np.argmax(scores[cheap]))  # keep_top: the group's largest is never thresholded
    fits = [i for i in range(len(scores[cheap])) if i != spared and
            scores[cheap][i] < scores[costly][j] and scores[cheap][i] / cost[cheap] > ratio_j]
    assert fits, "no cheap channel weaker than j but worth more per unit cost"
    i = max(fits, key=lambda k: scores[cheap][k])

    def step(shrink):
        graph, w, gcp, _ = fresh()
        stream = BatchStream(_toy_stream(16))
        full = gcp.batches(stream, gcp.config.epochs_per_step)
        gcp.config.reg = gcp.reg_of_shrink(shrink, gcp.shrink_scale(), full)
        gcp.config.rescale = False  # already rescaled, as the step would
        gcp.run_step(1, stream)
        return w.scores(), w.keep

    plain, keep0 = step(0.0)
    assert plain[cheap][i] < plain[costly][j]  # without the regulariser i goes first
    # with it, the costly channel j reaches zero while the cheap, weaker i survives
    for shrink in (0.3, 1.0, 3.0):
        acting, keep = step(shrink)
        if acting[costly][j] == 0 or not keep[costly][j]:
            break
    assert acting[costly][j] == 0 or not keep[costly][j], acting[costly][j]
    assert keep[cheap][i] and acting[cheap][i] > 0


def test_recalibrated_statistics_are_the_batches_and_the_network_keeps_its_own():
    """"Right after selection" re-estimates BatchNorm's statistics on training batches: inside,
    the running mean and variance are those batches' (the convolution's output computed apart),
    and afterwards the network has its own statistics back."""
    from prunenet.training.train import recalibrated
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(4, 3, in_channels=3), gluon.nn.BatchNorm(in_channels=4),
            gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.normal(2.0, 3.0, size=(16, 3, 8, 8)))
    conv, bn = net[0], net[1]
    mean = conv(x).asnumpy().mean(axis=(0, 2, 3))
    var = conv(x).asnumpy().var(axis=(0, 2, 3))
    own = bn.running_mean.data().asnumpy().copy()
    with recalibrated(net, [(x, mx.nd.zeros(16))] * 120, [mx.cpu()]):
        np.testing.assert_allclose(bn.running_mean.data().asnumpy(), mean, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(bn.running_var.data().asnumpy(), var, rtol=2e-2)
    np.testing.assert_array_equal(bn.running_mean.data().asnumpy(), own)
