"""Are runs under MXNet's default (threaded) engine equal bit for bit? Two uninterrupted runs of
the kill/resume harness's small GCP run, then runs killed right after each kind of checkpoint and
resumed, each compared with the first uninterrupted run (largest |difference| of any weight).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/threaded_determinism.py [--no-onednn]

With oneDNN (MXNet's default CPU kernels) and with ``--no-onednn`` (``MXNET_MKLDNN_ENABLED=0``)
every run is equal bit for bit (before issue #33's fix, fine-tuning with oneDNN was not).
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import killresume as kr  # noqa: E402
from conftest import small_gcp_args  # noqa: E402

ARGS = small_gcp_args(checkpoint_every=2)  # test_kill_resume's run

KILLS = ["checkpointed-phase:3", "checkpointed-step:1", "checkpointed-surgery:1",
         "checkpointed-finetune:1"]


def largest_difference(a, b):
    (wa, pa), (wb, pb) = kr.final(a), kr.final(b)
    return wa == wb, max(float(np.abs(pa[k] - pb[k]).max()) for k in pa)


def main() -> None:
    if "--no-onednn" in sys.argv:
        os.environ["MXNET_MKLDNN_ENABLED"] = "0"  # inherited by the harness's runs
    root = tempfile.mkdtemp(prefix="threaded-")
    refs = [os.path.join(root, f"ref{i}") for i in range(2)]
    for ref in refs:
        code, err = kr.prune(ref, ARGS)
        assert code == 0, err[-2000:]
    print(f"oneDNN {'off' if os.environ.get('MXNET_MKLDNN_ENABLED') == '0' else 'on'}; "
          f"two uninterrupted runs: widths equal, largest |dw| = "
          f"{largest_difference(*refs)}")
    for kill in KILLS:
        out = os.path.join(root, kill.replace(":", "-"))
        kr.prune(out, ARGS, failpoint=kill)
        code, err = kr.prune(out, resume=True)
        assert code == 0, err[-2000:]
        print(f"killed at {kill}, resumed: {largest_difference(refs[0], out)}")


if __name__ == "__main__":
    main()
