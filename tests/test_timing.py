"""The timing rule (prunenet.latency.timing) on recorded timings: replayed through a fake clock, so that
what it decides depends only on the timings, never on how busy the machine running the test is."""
import io
import json
import math
import os

import numpy as np
import pytest

from prunenet.latency.timing import (NOTCH, TOLERANCE, Progress, noise, ratio, spread,
                             time_until_stable)

RECORDED = os.path.join(os.path.dirname(__file__), "data", "timings_busy.json")


class Replay:
    """Calls that take the recorded durations, one after another, on a fake clock."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = {k: list(v) for k, v in durations.items()}
        self.calls = {name: self._call(name) for name in durations}

    def _call(self, name):
        def run():
            self.now += self.durations[name].pop(0)
        return run

    def clock(self):
        return self.now


def _replay(durations, **rule):
    r = Replay(durations)
    return time_until_stable(r.calls, clock=r.clock, warmup=0, **rule)


def test_noise_is_the_notch_of_the_median():
    ts = [1.0, 1.1, 0.9, 1.2, 1.0, 0.95, 1.05, 1.3]
    q25, q50, q75 = np.percentile(ts, [25, 50, 75])
    assert spread(ts) == pytest.approx((q75 - q25) / q50)
    assert noise(ts) == pytest.approx(NOTCH * (q75 - q25) / q50 / math.sqrt(len(ts)))
    assert noise([1.0, 2.0]) == math.inf  # two timings tell no spread
    assert noise([1.0] * 9) == 0.0


def test_steady_timings_stop_at_the_fewest_rounds():
    rng = np.random.RandomState(0)
    steady = {"a": list(1e-2 * (1 + 0.002 * rng.randn(50))),
              "b": list(2e-2 * (1 + 0.002 * rng.randn(50)))}
    t = _replay(steady, min_repeats=5, max_repeats=30)
    assert t.repeats == 5 and not t.noisy
    assert t.worst <= TOLERANCE


def test_recorded_busy_timings_run_to_the_cap_and_say_how_noisy():
    rec = json.load(open(RECORDED))["recordings"]["one_more_core_busy"]
    durations = {"full": rec["full"], "half": rec["half_batch"]}
    t = _replay(durations, min_repeats=5, max_repeats=20)
    assert t.repeats == 20  # never within ±2% on that machine
    assert set(t.noisy) == {"full", "half"}
    worst = max(noise(rec["full"][:20]), noise(rec["half_batch"][:20]))
    assert max(t.noisy.values()) == pytest.approx(worst)
    line = t.describe()
    assert "\n" not in line and f"±{worst:.1%}" in line and "±2% needed" in line
    assert f"{spread(rec['full'][:20]):.0%}" in line or \
        f"{spread(rec['half_batch'][:20]):.0%}" in line


def test_timings_that_calm_down_stop_once_the_median_is_known():
    rng = np.random.RandomState(1)
    noisy_then_calm = list(1e-2 * (1 + 0.5 * rng.rand(6))) + list(1e-2 * (1 + 0.001 * rng.randn(60)))
    t = _replay({"a": noisy_then_calm}, min_repeats=5, max_repeats=60)
    assert 6 < t.repeats < 60 and not t.noisy
    assert noise(noisy_then_calm[:t.repeats]) <= TOLERANCE < noise(noisy_then_calm[:t.repeats - 1])


def test_warm_each_times_the_run_right_after_an_untimed_one_of_the_same_call():
    """Each call's first run after another call's is slow (cold caches, sleeping threads): with
    warm_each that run is untimed and the timed one follows it; without, the slow runs are what
    is timed."""
    rounds = 6
    slow_then_fast = [0.05, 0.01] * (rounds + 1)
    durations = {"a": slow_then_fast, "b": [2 * d for d in slow_then_fast]}
    warm = _replay(durations, min_repeats=rounds, max_repeats=rounds, warm_each=True)
    assert warm.seconds["a"] == pytest.approx([0.01] * rounds)
    assert warm.seconds["b"] == pytest.approx([0.02] * rounds)
    cold = _replay(durations, min_repeats=rounds, max_repeats=rounds)
    assert cold.seconds["a"][0] == 0.05 and ratio(cold.seconds["b"], cold.seconds["a"])[
        "ratio"] == pytest.approx(2.0)


def test_a_time_budget_stops_a_noisy_timing_early():
    rec = json.load(open(RECORDED))["recordings"]["one_more_core_busy"]
    durations = {"full": rec["full"], "half": rec["half_batch"]}
    per_round = np.asarray(rec["full"]) + np.asarray(rec["half_batch"])
    budget = float(per_round[:8].sum()) - 1e-9  # reached during the 8th round
    t = _replay(durations, min_repeats=3, max_repeats=40, budget_s=budget)
    assert t.repeats == 8 and t.elapsed_s >= budget and t.noisy


def test_a_ratio_of_interleaved_timings_cancels_what_slows_both():
    # both calls slowed alike by a busy machine, round by round: each median is uncertain,
    # their ratio is not
    rng = np.random.RandomState(2)
    load = 1 + 2 * rng.rand(30)
    a, b = list(0.010 * load), list(0.020 * load * (1 + 0.001 * rng.randn(30)))
    assert noise(a) > 0.1 and noise(b) > 0.1
    r = ratio(a, b)
    assert r["ratio"] == pytest.approx(0.5, rel=2e-3) and r["noise"] < 0.002
    assert r["repeats"] == 30


def test_recorded_ratio_is_the_median_of_the_rounds():
    rec = json.load(open(RECORDED))["recordings"]["one_more_core_busy"]
    r = ratio(rec["full"], rec["half_batch"])
    per_round = np.asarray(rec["full"]) / np.asarray(rec["half_batch"])
    assert r["ratio"] == pytest.approx(float(np.median(per_round)))
    assert r["noise"] == pytest.approx(noise(per_round))


def test_progress_speaks_only_after_ten_seconds_and_then_every_ten():
    now = [0.0]
    out = io.StringIO()
    p = Progress("latency table", stream=out, clock=lambda: now[0])
    for t in (1, 5, 9.9):
        now[0] = t
        p("round", force=True)
        p("round")
    assert out.getvalue() == ""
    for t in (10.5, 12, 19, 21):
        now[0] = t
        p(f"at {t}")
    lines = out.getvalue().splitlines()
    assert lines == ["latency table: at 10.5 (10 s)", "latency table: at 21 (21 s)"]
    now[0] = 22
    p("done", force=True)
    assert out.getvalue().splitlines()[-1] == "latency table: done (22 s)"


def test_repeats_must_make_sense():
    with pytest.raises(ValueError, match="min_repeats"):
        time_until_stable({"a": lambda: None}, min_repeats=5, max_repeats=3)


def test_the_fastest_has_its_own_noise():
    from prunenet.latency.timing import min_noise
    assert min_noise([1.3, 1.0, 2.0, 1.01]) == pytest.approx(0.01)
    assert min_noise([1.0, 1.0]) == math.inf
    # timings mostly slowed by a busy machine, but the fastest approached twice: the fastest is
    # known although the median is not
    slowed = [0.0100, 0.0300, 0.0101, 0.0250, 0.0400, 0.0350]
    t = _replay({"unit": slowed}, min_repeats=3, max_repeats=6, tolerance=0.02, statistic="min")
    assert t.repeats == 3 and not t.noisy and noise(slowed[:3]) > 0.5
    with pytest.raises(ValueError, match="statistic"):
        time_until_stable({"a": lambda: None}, statistic="mean")
