"""Kill a GCP run anywhere, resume it, get the same network (fast variant; the long one is in
tests/slow/, the drawn one in test_resume_property.py). Also: two runs with the same seed are
identical. All under MXNet's default engine and kernels (tests/killresume.py)."""
import os

import pytest
from killresume import final, kill_and_resume, prune, rows

import numpy as np


@pytest.fixture(scope="module")
def args(small_gcp_args):
    """The small GCP run with a checkpoint every 2 batches."""
    return small_gcp_args(checkpoint_every=2)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, args):
    out = str(tmp_path_factory.mktemp("ref") / "run")
    code, err = prune(out, args)
    assert code == 0, err
    return out


def test_two_runs_with_the_same_seed_are_identical(reference, tmp_path, args):
    out = str(tmp_path / "again")
    assert prune(out, args)[0] == 0
    (w1, p1), (w2, p2) = final(reference), final(out)
    assert w1 == w2 and sorted(p1) == sorted(p2)
    for name in p1:
        np.testing.assert_array_equal(p1[name], p2[name], err_msg=name)
    assert rows(reference) == rows(out)
    with open(os.path.join(reference, "report.json")) as f:
        env = __import__("json").load(f)["environment"]
    assert {"mxnet", "omp_num_threads", "mxnet_engine_type"} <= set(env)


# 8 batches an epoch, 4 a phase, a checkpoint every 2: regularize:3 and debias:7 fall between
# checkpoints, inside step 1's regularize epoch and step 2's debias epoch; checkpoint:4 is the
# write of step 1's first debias checkpoint; finetune:3 is inside fine-tuning; export:1 is after
# the pruned network's files were written, before report.json.
@pytest.mark.parametrize("failpoint", ["regularize:3", "debias:7", "checkpoint:4", "finetune:3",
                                       "export:1"])
def test_killed_anywhere_a_run_resumes_to_the_same_network(tmp_path, reference, failpoint,
                                                          args):
    kill_and_resume(tmp_path, failpoint, reference, args)


# Killed right after each kind of checkpoint is in force: inside a phase (step 1's first debias
# checkpoint), at a step's end, right after the surgery, inside fine-tuning; bit for bit.
@pytest.mark.parametrize("failpoint", ["checkpointed-phase:3", "checkpointed-step:1",
                                       "checkpointed-surgery:1", "checkpointed-finetune:1"])
def test_killed_after_any_checkpoint_a_run_resumes_to_the_same_network(tmp_path, reference,
                                                                        failpoint, args):
    kill_and_resume(tmp_path, failpoint, reference, args)


def test_a_kill_inside_a_write_leaves_no_temporary_file_after_the_resume(tmp_path, reference,
                                                                           args):
    """Killed with a checkpoint file half-written (its temporary file on disk)."""
    kill_and_resume(tmp_path, "write:9", reference, args, leaves_temporary=True)
