"""A resumed run is the run, for drawn settings: Hypothesis draws a small GCP run (fractional
epochs per step and for debiasing, batch size, steps, fine-tuning length, warm-up and schedule,
checkpoint and loss-read intervals, seed), runs it uninterrupted while noting every failpoint it
passes, draws one of those passes, kills a second run there, resumes it and compares widths,
weights and ``steps.csv`` bit for bit (tests/killresume.py). A few examples here;
``benchmarks/resume_property.py`` draws many more.
"""
import collections
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from killresume import kill_and_resume, prune

# every failpoint but "write": its first passes come before run.json exists, and a folder
# without it is no run to resume (test_kill_resume kills one inside a checkpoint's write).
# Hypothesis tries the simplest draw first: the first of each list, the middle pass, and a
# fraction of 0.35 (the integer 0), so that even a budget of one example kills a fine-tuning.
KILLABLE = ("finetune", "debias", "regularize", "checkpointed-finetune", "checkpointed-phase",
            "checkpointed-step", "checkpointed-surgery", "checkpoint", "export")


def _rotated(low: int, high: int, first: int):
    """The integers low..high, drawn simplest as ``first``."""
    return st.integers(0, high - low).map(lambda k: (k + first - low) % (high - low + 1) + low)


@st.composite
def small_runs(draw):
    """``prunenet prune`` arguments of a small GCP run (64 training images)."""
    fraction = _rotated(5, 100, 35).map(lambda percent: str(percent / 100))
    return ["--model", "cifar_resnet20_v1", "--method", "gcp", "--dataset", "synthetic",
            "--target", draw(st.sampled_from(["0.5", "0.7"])),
            "--steps", str(draw(_rotated(1, 3, 2))), "--reg", "0.05", "--lr", "0.02",
            "--epochs-per-step", draw(fraction), "--debias-epochs", draw(fraction),
            "--finetune-epochs", draw(st.one_of(fraction, st.just("0"))),
            "--warmup-epochs", draw(st.sampled_from(["0", "0.25"])),
            "--lr-mode", draw(st.sampled_from(["cosine", "step"])),
            "--batch-size", str(draw(st.sampled_from([8, 4, 16]))),
            "--checkpoint-every", str(draw(_rotated(1, 4, 3))),
            "--sync-every", str(draw(_rotated(1, 3, 2))),
            "--seed", str(draw(st.integers(0, 3))),
            "--train-limit", "64", "--val-limit", "16", "--no-progress", "--no-speed-check"]


def check_drawn(args, data) -> None:
    """Run ``args`` whole, then killed at a drawn pass of a failpoint and resumed: the same."""
    with tempfile.TemporaryDirectory() as tmp:
        reference, passes = os.path.join(tmp, "whole"), os.path.join(tmp, "passes")
        code, err = prune(reference, args, passes=passes)
        assert code == 0, err[-2000:]
        with open(passes) as f:
            counts = collections.Counter(line.strip() for line in f)
        name = data.draw(st.sampled_from([n for n in KILLABLE if n in counts]), "failpoint")
        nth = data.draw(_rotated(1, counts[name], (counts[name] + 1) // 2), "pass")
        print(f"{' '.join(args)}: killed at {name}:{nth} of {counts[name]}", flush=True)
        kill_and_resume(tmp, f"{name}:{nth}", reference, args)


def drawn_test(examples: int):
    """The property as a test of ``examples`` drawn runs."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))(
        given(args=small_runs(), data=st.data())(check_drawn))


test_a_run_killed_at_a_drawn_point_resumes_to_the_uninterrupted_run = drawn_test(2)
