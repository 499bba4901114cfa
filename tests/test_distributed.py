"""Data-parallel GCP through MXNet's parameter server, on loopback: one scheduler, one server and
two CPU workers (``dist_sync``), each a real ``prunenet prune`` process as ``launch.py`` starts
them. Bounded in time; every process is killed at the end whatever happens."""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from prunenet.io.files import load_params, read_json

WORKERS = 2
DEADLINE_S = 150  # the whole job; it takes about a minute here


@pytest.fixture
def RUN(small_gcp_args):
    """``prunenet prune`` of the small GCP run with λ 0.2 and seed 7; steps, epochs and batch
    size left to each test (or their defaults)."""
    return ["prune"] + small_gcp_args(reg=0.2, seed=7, steps=None, epochs_per_step=None,
                                      finetune_epochs=None, batch_size=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv, log_dir, workers: int = WORKERS):
    """Run ``prunenet ARGV`` as ``workers`` workers of a loopback parameter-server job; return
    the workers' exit codes and their logs."""
    env = dict(os.environ, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(_free_port()),
               DMLC_NUM_SERVER="1", DMLC_NUM_WORKER=str(workers), DMLC_INTERFACE="lo",
               OMP_NUM_THREADS="1", PS_VERBOSE="0")
    procs, logs = [], []

    def start(role: str, cmd, name: str):
        log = open(os.path.join(log_dir, f"{name}.log"), "w")
        logs.append(log.name)
        procs.append(subprocess.Popen(cmd, env=dict(env, DMLC_ROLE=role), stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    serve = [sys.executable, "-c", "import mxnet"]  # MXNet serves on import for these roles
    try:
        start("scheduler", serve, "scheduler")
        start("server", serve, "server")
        for rank in range(workers):
            start("worker", [sys.executable, "-m", "prunenet"] + list(argv), f"worker{rank}")
        deadline = time.time() + DEADLINE_S
        codes = []
        try:
            for p in procs[2:]:
                codes.append(p.wait(timeout=max(1.0, deadline - time.time())))
            for p in procs[:2]:  # the workers' exit tells the scheduler and server to stop
                p.wait(timeout=max(1.0, min(30.0, deadline - time.time())))
        except subprocess.TimeoutExpired:
            tails = "\n".join(f"== {name}\n{open(name).read()[-2000:]}" for name in logs)
            pytest.fail(f"the job did not end within {DEADLINE_S} s:\n{tails}")
        return codes, [open(name).read() for name in logs[2:]]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _outcome(folder):
    report = read_json(os.path.join(folder, "report.json"))
    params = load_params(os.path.join(folder, next(f for f in os.listdir(folder)
                                                   if f.endswith(".params"))))
    return report, params


def _same_widths(a: dict, b: dict) -> None:
    """Same kept widths, layer by layer (layer names carry a per-process prefix)."""
    assert a["group_widths"] == b["group_widths"]
    assert list(a["widths"].values()) == list(b["widths"].values())


def test_two_workers_run_gcp_steps_and_end_with_the_same_network(tmp_path, RUN):
    out = str(tmp_path / "run")
    codes, logs = launch(RUN + ["--steps", "2", "--epochs-per-step", "0.5",
                                "--finetune-epochs", "0.25", "--batch-size", "8",
                                "--kvstore", "dist_sync", "--out", out], str(tmp_path))
    assert codes == [0] * WORKERS, "\n".join(log[-3000:] for log in logs)
    first, first_params = _outcome(out)
    second, second_params = _outcome(out + ".worker1")  # rank 1 writes beside rank 0
    assert first["settings"]["kvstore"] == "dist_sync"
    assert first["achieved"] <= 0.6 and first["macs_after"] < first["macs_before"]
    _same_widths(first, second)
    # one update for both, BatchNorm statistics averaged after every pass: the same weights
    assert sorted(first_params) == sorted(second_params)
    for name, value in first_params.items():
        np.testing.assert_allclose(second_params[name], value, rtol=0, atol=1e-6, err_msg=name)
    assert first["top1_after"] == second["top1_after"]


def test_regularize_only_equals_one_process_with_the_same_global_batch(tmp_path, RUN):
    """BatchNorm on its running statistics, no debias, no fine-tuning: two workers with 8
    images each compute, summed, the gradient of one process's batch of 16."""
    # a random network on its initial BatchNorm statistics has wild gradients: a small rate
    # keeps float32 rounding from being amplified step by step
    regularize_only = RUN + ["--steps", "1", "--epochs-per-step", "0.5", "--debias-epochs", "0",
                             "--finetune-epochs", "0", "--lr", "0.002"]
    dist = str(tmp_path / "dist")
    codes, logs = launch(regularize_only + ["--batch-size", "8", "--kvstore", "dist_sync",
                                            "--out", dist], str(tmp_path))
    assert codes == [0] * WORKERS, "\n".join(log[-3000:] for log in logs)
    single = str(tmp_path / "single")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "prunenet"] + regularize_only +
                          ["--batch-size", "16", "--out", single], env=env,
                          capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-3000:]
    one, one_params = _outcome(single)
    for folder in (dist, dist + ".worker1"):
        report, params = _outcome(folder)
        _same_widths(report, one)
        assert report["achieved"] == one["achieved"]
        for name, value in one_params.items():
            # equal up to float32 summation order (measured: 5e-5 at most, on betas that moved
            # 0.4); a worker updating with its half-batch gradient alone, or with the sum
            # scaled by its own batch, is off by percents of that movement
            scale = 1.0 + float(np.abs(value).max())
            np.testing.assert_allclose(params[name], value, rtol=0, atol=2e-4 * scale,
                                       err_msg=name)


def test_a_distributed_kvstore_outside_a_launched_job_is_refused(tmp_path, RUN):
    from prunenet.cli import main
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_")}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "prunenet"] + RUN +
                          ["--kvstore", "dist_sync", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "DMLC_ROLE" in lines[0] and "launch.py" in lines[0], done.stderr
    assert not out.exists()
    with pytest.raises(SystemExit) as stop:  # argparse's choices
        main(RUN + ["--kvstore", "dist_async", "--out", str(out)])
    assert stop.value.code == 2
    from prunenet.training.distributed import Workers
    from prunenet.errors import PrunenetError
    with pytest.raises(PrunenetError, match="asynchronous updates cannot keep"):
        Workers("dist_async")
    with pytest.raises(PrunenetError, match="MXNet 1.9.1 has no Horovod kvstore"):
        Workers("horovod")
    with pytest.raises(SystemExit):
        main(["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--target", "0.5",
              "--kvstore", "horovod", "--out", str(out)])
    # a data-free method trains nothing to share
    done = subprocess.run([sys.executable, "-m", "prunenet", "prune", "--model",
                           "cifar_resnet20_v1", "--method", "l1", "--target", "0.5", "--kvstore",
                           "dist_sync", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "trains nothing to share among workers" in done.stderr
    assert not out.exists()


def test_a_worker_that_cannot_start_stops_the_others(tmp_path, RUN):
    """Rank 1 finds its output folder taken; rank 0 must not wait for it forever."""
    out = str(tmp_path / "run")
    os.makedirs(out + ".worker1")
    codes, logs = launch(RUN + ["--steps", "1", "--epochs-per-step", "0.25",
                                "--finetune-epochs", "0", "--batch-size", "8",
                                "--kvstore", "dist_sync", "--out", out], str(tmp_path))
    assert sorted(codes) == [2, 2], "\n".join(log[-2000:] for log in logs)
    errors = sorted(log.strip().splitlines()[-1] for log in logs)
    assert any("run.worker1 already exists" in e for e in errors), errors
    assert any("1 other worker(s) of this distributed run stopped" in e for e in errors), errors
    assert not os.path.exists(out)


def test_what_a_distributed_run_cannot_do_is_refused_before_any_work(tmp_path):
    import dataclasses
    from prunenet.errors import PrunenetError
    from prunenet.io.files import write_json
    from prunenet.run.folder import data_run
    from prunenet.run.settings import DataRun
    run = DataRun(model="cifar_resnet20_v1", out=str(tmp_path / "lat"), target=0.6,
                  dataset="synthetic", objective="latency", kvstore="dist_sync")
    with pytest.raises(PrunenetError, match="each worker would measure its own latencies"):
        data_run(run, log=None)
    assert not (tmp_path / "lat").exists()
    folder = tmp_path / "interrupted"
    folder.mkdir()
    write_json(str(folder / "run.json"), dataclasses.asdict(dataclasses.replace(
        run, objective="flops", out=str(folder))))
    with pytest.raises(PrunenetError, match="resuming a distributed run is not supported yet"):
        data_run(DataRun(model="", out=str(folder), target=0.5), resume=True, log=None)
    assert os.listdir(folder) == ["run.json"]
