"""A resumed run is the run, with a large budget: the property of tests/test_resume_property.py
(a small GCP run with drawn settings, killed at a drawn pass of a drawn failpoint, resumed,
compared bit for bit with the uninterrupted run) over many drawn examples. Each line printed is
one example; the first that differs stops it with Hypothesis's smallest failing example.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/resume_property.py [EXAMPLES]

EXAMPLES defaults to 100 (about 13 s each on a busy 2-core machine; 20 took 253 s, all equal).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import test_resume_property as prop  # noqa: E402


def main() -> None:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    t0 = time.time()
    prop.drawn_test(examples)()
    print(f"{examples} drawn runs killed and resumed: all equal bit for bit "
          f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
