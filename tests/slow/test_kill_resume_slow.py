"""The long kill-and-resume variant: a kill after every batch of every phase, during every
checkpoint write and the export, on a 3-step run with fine-tuning over two epochs' worth of
batches. About 40 runs of ~15 s each, so it is marked ``slow`` and left out of the suite; run it
with

    .venv/bin/python -m pytest -m slow -q
"""
import pytest
from killresume import kill_and_resume, prune

pytestmark = pytest.mark.slow

# 8 batches an epoch: 4 per phase, 3 steps -> 12 regularize and 12 debias batches; 8 fine-tune
# batches; checkpoints every 2 batches and at every phase's end.
POINTS = ([f"regularize:{i}" for i in range(1, 13)] + [f"debias:{i}" for i in range(1, 13)] +
          [f"finetune:{i}" for i in range(1, 9)] + [f"checkpoint:{i}" for i in range(1, 20, 3)] +
          ["export:1"])


@pytest.fixture(scope="module")
def args(small_gcp_args):
    """The small GCP run with 3 steps, an epoch of fine-tuning and a checkpoint every 2 batches."""
    return small_gcp_args(steps=3, finetune_epochs=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, args):
    out = str(tmp_path_factory.mktemp("ref") / "run")
    code, err = prune(out, args)
    assert code == 0, err
    return out


@pytest.mark.parametrize("failpoint", POINTS)
def test_killed_at_every_point_a_run_resumes_to_the_same_network(tmp_path, reference, failpoint,
                                                                  args):
    kill_and_resume(tmp_path, failpoint, reference, args)
