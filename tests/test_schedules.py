"""Fine-tuning's learning-rate schedules are GluonCV's (``LRScheduler`` phases in an
``LRSequential``) and give, iteration by iteration, the rates of the hand-written schedules they
replaced (issue 30): those formulas are written out here as the reference."""
import math

import numpy as np
import pytest

from prunenet.errors import PrunenetError
from prunenet.training.train import LR_MODES, cosine_lr, learning_rate


def _reference(mode, base, total, warmup, i, final=0.0):
    """The rate of iteration ``i`` as prunenet computed it by hand before it used GluonCV's."""
    if i < warmup:
        return base * (i + 1) / warmup
    done = min(1.0, (i - warmup) / max(1, total - warmup))
    if mode == "cosine":
        return final + (base - final) * 0.5 * (1 + math.cos(math.pi * done))
    if mode == "step":
        return base * 0.1 ** ((done >= 0.5) + (done >= 0.75))
    return base * (1 - done) ** (2 if mode == "poly" else 1)


@pytest.mark.parametrize("mode", LR_MODES)
def test_every_mode_gives_the_hand_written_rates_warm_up_included(mode):
    from gluoncv.utils import LRSequential
    assert isinstance(learning_rate(mode, 0.1, 10, 2), LRSequential)
    for total in (1, 2, 3, 7, 100, 101, 1003):
        for warmup in (0, 1, 2, 5, 50, 1200):  # 1200: longer than the whole run
            for base in (0.05, 1.0, 0.0123):
                lr_at = learning_rate(mode, base, total, warmup)
                for i in range(total):
                    want, got = _reference(mode, base, total, warmup, i), lr_at(i)
                    assert abs(got - want) <= 1e-12 * base, (mode, total, warmup, base, i)
                    # what MXNet's optimizer ops receive (float32): the very same rate
                    assert np.float32(got) == np.float32(want), (mode, total, warmup, base, i)
    # the steps fall on the first iteration at or past 50 % and 75 % of the decay
    step = learning_rate("step", 1.0, 104, 4)
    assert [step(53), step(54), step(78), step(79)] == [1.0, pytest.approx(0.1),
                                                        pytest.approx(0.1), pytest.approx(0.01)]


def test_cosine_decays_to_its_final_rate_and_unknown_modes_are_refused():
    lr_at = cosine_lr(0.5, 40, 4, final=0.01)
    for i in range(40):
        assert abs(lr_at(i) - _reference("cosine", 0.5, 40, 4, i, 0.01)) <= 1e-12
    assert lr_at(39) > 0.01 and abs(lr_at(40) - 0.01) <= 1e-15
    with pytest.raises(PrunenetError, match="--lr-mode 'exp': choose one of cosine, step"):
        learning_rate("exp", 0.1, 10)
