"""Nothing lost (issue 15): the one rule for output paths, the lock of a run's folder, write
errors as one line, checkpoints checked at resume, flags that --resume would ignore, and the
exported symbol's shapes. Each case failed (lost data, a traceback, or the wrong thing) before.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from prunenet.cli import main
from prunenet.errors import PrunenetError
from test_bad_input import one_line, refused, run

L = ["prune", "--model", "cifar_resnet20_v1", "--method", "l1", "--input-size", "32",
     "--target", "0.5"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
ENV.pop("PRUNENET_FAILPOINT", None)


def cli(argv, cwd=None, env=None, preexec_fn=None, timeout=300):
    """``prunenet ARGV`` in a subprocess: (exit code, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "prunenet"] + list(argv), cwd=cwd,
                          env=env or ENV, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn)
    return proc.returncode, proc.stderr


def listing(folder):
    return {os.path.relpath(os.path.join(r, f), folder): open(os.path.join(r, f), "rb").read()
            for r, _, files in os.walk(folder) for f in files}


@pytest.fixture(scope="module")
def G(small_gcp_args):
    """``prunenet prune`` of the small GCP run at 32 px, 0.05 epochs a step and of fine-tuning,
    target 0.5, λ and lr left to their defaults."""
    return ["prune"] + small_gcp_args(target=0.5, reg=None, lr=None, epochs_per_step=0.05,
                                      finetune_epochs=0.05, input_size=32)


@pytest.fixture(scope="module")
def gcp_run(tmp_path_factory, G):
    """A finished GCP run folder (with its checkpoint)."""
    out = str(tmp_path_factory.mktemp("gcp") / "run")
    assert main(G + ["--out", out]) == 0
    return out


# ------------------------------------------------------------------ the rule for --out

@pytest.mark.parametrize("out,words", [
    ("", ["--out is empty"]),  # was: the working directory's files deleted, "written to "
    (".", ["is the working directory"]),
    ("..", ["holds the working directory"]),
    # the root folder is checked in test_check_target_... only: a run is never pointed at it
    ("~", ["is your home folder"]),
    ("f.txt", ["is a file, not a folder"]),  # was: the file deleted, a run folder in its place
    ("mine", ["prunenet did not write"]),  # was: the user's folder deleted
])
@pytest.mark.parametrize("method", ["l1", "gcp"])
def test_overwrite_never_replaces_what_prunenet_did_not_write(tmp_path, monkeypatch, out, words,
                                                              method, G):
    work = tmp_path / "home" / "work"
    (work / "mine").mkdir(parents=True)
    (work / "mine" / "a.txt").write_text("mine")
    (work / "f.txt").write_text("data")
    (work / "keep.txt").write_text("keep")
    monkeypatch.setenv("HOME", str(work) if out == "~" else str(tmp_path / "elsewhere"))
    monkeypatch.chdir(work)
    before = listing(str(tmp_path))
    argv = (L if method == "l1" else G) + ["--out", out, "--overwrite"]
    refused(argv, *words)
    assert listing(str(tmp_path)) == before


def test_overwrite_replaces_a_run_folder_and_an_empty_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    assert run(L + ["--out", str(out), "--overwrite"])[0] == 0  # an empty folder holds nothing
    assert run(L + ["--out", str(out), "--overwrite", "--seed", "2"])[0] == 0
    with open(out / "report.json") as f:
        assert json.load(f)["seed"] == 2
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []  # no lock left


def _appear(path):
    """A stand-in for another program: make ``path`` with a user's file in it."""
    os.makedirs(path)
    with open(os.path.join(path, "user.txt"), "w") as f:
        f.write("made meanwhile")


@pytest.mark.parametrize("method,hook", [("l1", "check"), ("gcp", "price")])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_appears_while_a_run_works_is_kept(tmp_path, monkeypatch, method, hook,
                                                         overwrite, G):
    """The check of --out is done again under the lock where the folder is replaced (GCP used
    to check early and delete later: a folder made in between was deleted)."""
    from prunenet.run.pipeline import Pipeline
    out = str(tmp_path / "run")
    real = getattr(Pipeline, hook)

    def meanwhile(*args, **kwargs):
        if not os.path.exists(out):
            _appear(out)
        return real(*args, **kwargs)
    monkeypatch.setattr(Pipeline, hook, meanwhile)
    argv = (L if method == "l1" else G) + ["--out", out] + (["--overwrite"] if overwrite else [])
    refused(argv, "prunenet did not write" if overwrite else "already exists")
    assert os.listdir(out) == ["user.txt"]


@pytest.mark.e2e  # a whole path: two GCP commands
def test_two_writers_of_one_out_one_wins_the_other_names_it(tmp_path, G):
    """Two GCP runs on one --out: the second stops at once (exit 2) naming the first, which
    finishes alone (they used to both 'succeed' into a mixed folder)."""
    out = str(tmp_path / "run")
    first = subprocess.Popen([sys.executable, "-m", "prunenet"] + G + ["--seed", "1", "--out", out],
                             env=dict(ENV, PRUNENET_FAILPOINT="regularize:1:STOP"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = os.path.join(str(tmp_path), ".run.lock")
    try:  # the first pauses after its first batch, in the middle of its run
        deadline = time.time() + 120
        while time.time() < deadline:
            with open(f"/proc/{first.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.05)
        code, err = cli(G + ["--seed", "2", "--out", out, "--overwrite"])
        assert code == 2, err
        line = one_line(err, "is being written by", f"pid {first.pid}", "--seed 1", lock)
        assert "--seed 2" not in line
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.communicate()
    with open(os.path.join(out, "run.json")) as f:
        assert json.load(f)["seed"] == 1
    with open(os.path.join(out, "report.json")) as f:
        assert json.load(f)["settings"]["seed"] == 1
    with open(os.path.join(out, "log.txt")) as f:
        assert sum("before pruning" in line for line in f) == 1
    assert not os.path.exists(lock)
    # two data-free runs: the same rule
    from prunenet.io import outputs
    with outputs.hold_lock(lock, "--out " + out):
        code, err = cli(L + ["--out", out, "--overwrite"])
    assert code == 2 and f"pid {os.getpid()}" in err, err


def test_other_writers_follow_the_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("data")
    refused(["zoo", "export", "x", "--zoo", "z", "--format", "symbol", "--out", ""],
            "--out is empty")
    refused(["zoo", "publish", "r", "--zoo", ".", "--name", "x"], "--zoo . is the working")
    config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                          "resnet50_v1d_flops.json")
    refused(["experiment", config, "--smoke", "--out", "f.txt"], "is a file")
    os.mkdir(tmp_path / "mine")
    (tmp_path / "mine" / "a.txt").write_text("mine")
    refused(["experiment", config, "--smoke", "--out", "mine"], "not an experiment's results")
    refused(["plot", "tradeoff", "r.csv", "--out", ""], "--out is empty")
    assert sorted(os.listdir(tmp_path)) == ["f.txt", "mine"]
    assert os.listdir(tmp_path / "mine") == ["a.txt"]


# ------------------------------------------------------------------ ownership by a mark (issue 33)

def _wait_stopped(pid, limit=120):
    """Until the process ``pid`` is stopped (SIGSTOP at a failpoint ``NAME:N:STOP``)."""
    deadline = time.time() + limit
    while time.time() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never reached its failpoint")


def test_overwrite_replaces_only_a_marked_folder_of_nothing_but_prunenet_output(tmp_path):
    """Issue 33 (A01, Z01, Z02, A02, A04): a folder counted as prunenet's when it held any
    report.json with a "model" key, and --overwrite deleted all of it: the user's thesis.tex
    and report.json, a zoo published inside a run folder, a whole experiment folder."""
    from prunenet.zoo import store as zoo
    from prunenet.io.outputs import mark, read_mark
    user = tmp_path / "userproj"  # A01
    user.mkdir()
    (user / "thesis.tex").write_text("my thesis")
    (user / "report.json").write_text('{"model": "my-bert"}')
    before = listing(str(user))
    refused(L + ["--out", str(user), "--overwrite"], f"{user} carries no .prunenet mark",
            "prunenet did not write", "give another --out")
    os.remove(user / "thesis.tex")  # the user's report.json alone is not a run's either
    refused(L + ["--out", str(user), "--overwrite"], "carries no .prunenet mark")
    (user / "thesis.tex").write_text("my thesis")
    assert listing(str(user)) == before

    runf = tmp_path / "l1c"
    assert run(L + ["--out", str(runf)])[0] == 0
    assert read_mark(str(runf))["kind"] == "run" and "prunenet" in read_mark(str(runf))[
        "written_by"]
    refused(["zoo", "publish", str(runf), "--zoo", str(runf / "zoo"), "--name", "inside",
             "--no-bench"], f"--zoo {runf / 'zoo'} is inside the run folder {runf}")  # Z01
    assert not (runf / "zoo").exists()
    zoo.publish(str(runf), str(tmp_path / "z"), "inside", bench=False, log=None)
    assert read_mark(str(tmp_path / "z"))["kind"] == "zoo"
    shutil.copytree(tmp_path / "z", runf / "zoo")  # a zoo put there all the same (Z02)
    kept = listing(str(runf))
    refused(L + ["--out", str(runf), "--overwrite"], "holds a zoo zoo/", "move that out")
    (runf / "notes.txt").write_text("mine")
    shutil.rmtree(runf / "zoo")
    refused(L + ["--out", str(runf), "--overwrite"], "holds notes.txt")
    os.remove(runf / "notes.txt")
    shutil.copytree(tmp_path / "z", runf / "zoo")
    assert listing(str(runf)) == kept
    shutil.rmtree(runf / "zoo")
    # a folder of another kind: an experiment's, a zoo
    exp = tmp_path / "exp"
    exp.mkdir()
    mark(str(exp), "experiment")
    (exp / "results.csv").write_text("model\n")
    refused(L + ["--out", str(exp), "--overwrite"], "is a prunenet experiment folder, not a "
                                                      "run folder")
    refused(L + ["--out", str(tmp_path / "z"), "--overwrite"], "is a prunenet zoo folder")
    config = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                          "resnet50_v1d_flops.json")
    refused(["experiment", config, "--smoke", "--out", str(runf)],
            "is a prunenet run folder, not an experiment's results")  # was taken for one
    assert (exp / "results.csv").exists() and (tmp_path / "z" / "zoo.json").exists()
    # A02: the input of a run inside the folder it replaces; A04: a link to a run folder
    os.symlink(runf, tmp_path / "linkrun")
    refused(L + ["--out", str(tmp_path / "linkrun"), "--overwrite"], "is a symbolic link (to a "
                                                                     "folder)")
    refused(["prune", "--symbol", str(runf / "pruned-symbol.json"), "--params",
             str(runf / "pruned-0000.params"), "--method", "l1", "--target", "0.5",
             "--out", str(runf), "--overwrite"], f"--params {runf / 'pruned-0000.params'} is "
                                                 f"inside --out {runf}")
    assert listing(str(runf)) == {k: v for k, v in kept.items() if not k.startswith("zoo/")}
    # a run folder of an older version (no mark, only a run's files) is replaced, and marked
    os.remove(runf / ".prunenet")
    assert run(L + ["--out", str(runf), "--overwrite", "--seed", "3"])[0] == 0
    assert read_mark(str(runf))["kind"] == "run"
    assert json.loads((runf / "report.json").read_text())["seed"] == 3


def test_a_failed_run_leaves_no_empty_folders_behind(tmp_path):
    """Issue 33 (A08, A10): a refused run left the parent folders made for its --out (16
    nested empty folders for a path too long; np1/np2 for params that failed to load)."""
    bad = tmp_path / "trunc.params"
    bad.write_bytes(b"\x12\x01\x00\x00\x00\x00\x00\x00" + b"\x00" * 8)
    refused(L + ["--params", str(bad), "--out", str(tmp_path / "np1" / "np2" / "run")],
            "trunc.params")
    assert sorted(os.listdir(tmp_path)) == ["trunc.params"]
    refused(L + ["--out", os.path.join(str(tmp_path), *["y" * 250] * 18)], "File name too long",
            "choose a shorter one")
    assert sorted(os.listdir(tmp_path)) == ["trunc.params"]
    os.mkdir(tmp_path / "np1")  # a folder that was there is kept, empty or not
    refused(L + ["--params", str(bad), "--out", str(tmp_path / "np1" / "np2" / "run")],
            "trunc.params")
    assert sorted(os.listdir(tmp_path)) == ["np1", "trunc.params"] and not os.listdir(
        tmp_path / "np1")


@pytest.mark.e2e  # a whole path: a GCP command, interrupted
def test_an_interrupted_overwrite_of_a_trained_run_keeps_the_old_run(tmp_path, gcp_run, G):
    """Issue 33 (OW1): GCP with --overwrite deleted the old run when it started; Ctrl-C 8 s in
    left neither. Now the old folder waits aside: put back on Ctrl-C (or any failure), kept
    through a hard kill until the killed run is resumed to its end."""
    out = tmp_path / "run"
    shutil.copytree(gcp_run, out)
    if (out / ".prunenet").exists():  # as an older version wrote it: accepted by its run files
        os.remove(out / ".prunenet")
    before = listing(str(out))
    aside = tmp_path / ".run.replaced"
    argv = [sys.executable, "-m", "prunenet"] + G + ["--seed", "2", "--out", str(out),
                                                     "--overwrite"]
    ctrl_c = subprocess.Popen(argv, env=dict(ENV, PRUNENET_FAILPOINT="regularize:1:STOP"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_stopped(ctrl_c.pid)
        assert aside.exists() and json.loads((out / "run.json").read_text())["seed"] == 2
        ctrl_c.send_signal(signal.SIGINT)
    finally:
        ctrl_c.send_signal(signal.SIGCONT)
    assert ctrl_c.wait(timeout=300) == 130, ctrl_c.communicate()
    assert listing(str(out)) == before and not aside.exists()
    assert sorted(os.listdir(tmp_path)) == ["run"]  # nor a lock, nor a staging folder

    code, err = cli(G + ["--seed", "2", "--out", str(out), "--overwrite"],
                    env=dict(ENV, PRUNENET_FAILPOINT="regularize:1"))
    assert code == -signal.SIGKILL, err
    assert listing(str(aside)) == before  # the old run, whole, until the new one is
    assert json.loads((out / "run.json").read_text())["seed"] == 2
    code, err = cli(["prune", "--resume", str(out)])
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["settings"]["seed"] == 2
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_a_lock_held_by_another_writer_is_named_and_given_up_on(tmp_path):
    """Issue 33 (LK1): a publish waiting for another publisher's zoo lock printed nothing and
    waited for ever; now it names the holder at once and gives up after PRUNENET_LOCK_WAIT
    seconds in one line, or waits without end with --wait."""
    import fcntl
    runf = tmp_path / "r"
    assert run(L + ["--out", str(runf)])[0] == 0
    zoo_dir = tmp_path / "zoo_lock"
    zoo_dir.mkdir()
    publish = ["zoo", "publish", str(runf), "--zoo", str(zoo_dir), "--no-bench", "--name"]
    with open(zoo_dir / ".lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write("pid 99999 (prunenet zoo publish stuck)\n")
        held.flush()
        t0 = time.time()
        code, err = cli(publish + ["waiter"], env=dict(ENV, PRUNENET_LOCK_WAIT="0.5"), timeout=120)
        took = time.time() - t0
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 2, err
        assert lines[0].startswith(f"prunenet: waiting for zoo {zoo_dir}, held by pid 99999 "
                                   f"(prunenet zoo publish stuck)"), lines[0]
        assert "giving up after 0.5 s" in lines[0]
        one_line(lines[1], "still held by pid 99999 (prunenet zoo publish stuck) after 0.5 s",
                 "--wait")
        assert took < 60
        code, err = cli(publish + ["waiter"], env=dict(ENV, PRUNENET_LOCK_WAIT="soon"))
        one_line(err, "PRUNENET_LOCK_WAIT=soon is not a positive number of seconds")
        # --wait: past PRUNENET_LOCK_WAIT, until the holder lets go
        patient = subprocess.Popen([sys.executable, "-m", "prunenet"] + publish +
                                   ["patient", "--wait"], env=dict(ENV, PRUNENET_LOCK_WAIT="0.5"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = patient.stderr.readline()
        assert "held by pid 99999" in first and "until it is released" in first, first
        time.sleep(1.5)
        assert patient.poll() is None  # still waiting, past the 0.5 s
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
        out, err = patient.communicate(timeout=120)
    assert patient.returncode == 0, err
    assert "patient" in json.loads((zoo_dir / "zoo.json").read_text())["models"]


# ------------------------------------------------------------------ write errors

def _file_size_limit(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a short write instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("method", ["l1", "gcp"])
def test_a_full_disk_is_one_line_and_keeps_the_last_good_state(tmp_path, method, G):
    """No file may grow past 200 kB (as on a full disk): data-free runs fail at the final
    write, GCP at its first checkpoint; both used to end in a traceback."""
    out = str(tmp_path / "run")
    argv = (L if method == "l1" else G) + ["--out", out]
    code, err = cli(argv, preexec_fn=_file_size_limit(200_000))
    assert code == 2, err
    one_line(err, "cannot write", "what was written before is kept")
    if method == "l1":
        assert os.listdir(tmp_path) == []  # nothing half-written beside it either
    else:  # its settings were written: the run can be continued once there is room
        assert "run.json" in os.listdir(out)
        assert not [f for f in os.listdir(os.path.join(out, "checkpoint"))
                    if f.endswith(".tmp")] if os.path.isdir(os.path.join(out, "checkpoint")) \
            else True


@pytest.fixture
def read_only(tmp_path):
    """A read-only file system (a tmpfs mounted ro), or skip where it cannot be mounted."""
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield str(where)
    subprocess.run(["umount", str(where)], check=False)


def test_a_read_only_place_is_one_line(read_only, tmp_path, gcp_run, monkeypatch):
    refused(L + ["--out", os.path.join(read_only, "run")], "cannot write", "read-only")
    refused(["zoo", "publish", gcp_run, "--zoo", os.path.join(read_only, "zoo"), "--name", "g",
             "--no-bench"], "read-only")
    assert run(["zoo", "publish", gcp_run, "--zoo", str(tmp_path / "zoo"), "--name", "g",
                "--no-bench"])[0] == 0
    refused(["zoo", "export", "g", "--zoo", str(tmp_path / "zoo"), "--format", "symbol",
             "--out", read_only], "read-only")
    monkeypatch.setenv("PRUNENET_CACHE", read_only)  # refused before minutes of measuring
    refused(L + ["--objective", "latency", "--out", str(tmp_path / "lat")], "PRUNENET_CACHE",
            "read-only")


def test_environment_and_devices_that_made_tracebacks(tmp_path):
    code, err = cli(["count", "--model", "cifar_resnet20_v1"],
                    env=dict(ENV, OMP_NUM_THREADS="abc"))  # MXNet aborted: exit 134
    assert code == 2 and "OMP_NUM_THREADS='abc'" in one_line(err), (code, err)
    refused(L + ["--gpus=-1", "--out", str(tmp_path / "r")], "--gpus '-1'")
    (tmp_path / "cache").write_text("a file")
    env = dict(ENV, PRUNENET_CACHE=str(tmp_path / "cache"))
    code, err = cli(L + ["--objective", "latency", "--out", str(tmp_path / "r")], env=env)
    assert code == 2, err
    one_line(err, "PRUNENET_CACHE", str(tmp_path / "cache"))


def test_a_detector_is_built_without_downloading_its_backbone(monkeypatch):
    from gluoncv.model_zoo import model_store

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(model_store, "get_model_file", no_download)
    from prunenet.training.models import build_model
    net = build_model("yolo3_mobilenet1.0_voc")
    net.initialize()
    assert len(net(mx.nd.zeros((1, 3, 64, 64)))) == 3


# ------------------------------------------------------------------ resume

def test_resume_refuses_flags_that_differ_from_the_run(gcp_run):
    for extra, flag in ((["--target", "0.3"], "--target 0.3"), (["--lr", "0.5"], "--lr 0.5"),
                        (["--steps", "5"], "--steps 5"), (["--overwrite"], "--overwrite")):
        refused(["prune", "--resume", gcp_run] + extra, flag)


def test_resume_removes_leftovers_and_refuses_a_damaged_checkpoint(gcp_run, tmp_path):
    import shutil
    out = str(tmp_path / "run")
    shutil.copytree(gcp_run, out)
    leftovers = [os.path.join(out, ".report.json.x1.tmp"),
                 os.path.join(out, "checkpoint", ".ckpt-a.params.x2.tmp")]
    for path in leftovers:
        open(path, "w").close()
    assert run(["prune", "--resume", out, "--no-progress", "--target", "0.5"])[0] == 0
    assert not any(os.path.exists(p) for p in leftovers)
    ckpt = os.path.join(out, "checkpoint")
    states = [f for f in os.listdir(ckpt) if f.endswith(".states")]
    assert states, os.listdir(ckpt)
    path = os.path.join(ckpt, states[0])
    with open(path, "r+b") as f:  # one byte flipped
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x01]))
    refused(["prune", "--resume", out], "is damaged", states[0])


# ------------------------------------------------------------------ the exported symbol

def _module_outputs(symbol_file, params_file, x):
    """Bind the pair with ``mx.mod.Module``, shapes inferred from the data shape alone."""
    symbol = mx.sym.load(symbol_file)
    mod = mx.mod.Module(symbol, data_names=["data"], label_names=None)
    mod.bind(data_shapes=[("data", x.shape)], for_training=False)
    saved = mx.nd.load(params_file)
    mod.set_params({k[4:]: v for k, v in saved.items() if k.startswith("arg:")},
                   {k[4:]: v for k, v in saved.items() if k.startswith("aux:")})
    mod.forward(mx.io.DataBatch([mx.nd.array(x)]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def test_the_exported_symbol_carries_the_pruned_shapes(tmp_path):
    from prunenet.zoo.pruned import load_pruned
    out = str(tmp_path / "run")
    assert run(L + ["--out", out])[0] == 0
    x = np.random.RandomState(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    got = _module_outputs(os.path.join(out, "pruned-symbol.json"),
                          os.path.join(out, "pruned-0000.params"), x)
    expected = load_pruned(out)(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    zoo = str(tmp_path / "zoo")
    assert run(["zoo", "publish", out, "--zoo", zoo, "--name", "r20", "--no-bench"])[0] == 0
    code, err = run(["bench", "--zoo", zoo, "--name", "r20", "--batch-size", "2", "--repeats",
                     "1", "--warmup", "0", "--json"])
    assert code == 0, err
    assert run(["zoo", "export", "r20", "--zoo", zoo, "--format", "symbol", "--out",
                str(tmp_path / "ex")])[0] == 0
    ex = str(tmp_path / "ex")
    got = _module_outputs(os.path.join(ex, "r20-symbol.json"), os.path.join(ex, "r20-0000.params"),
                          x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ messages

def test_flags_are_not_abbreviated_and_advice_names_the_right_flag(tmp_path):
    # --mode is a flag of its own now (GluonCV's hybrid|imperative); an abbreviation still fails
    refused(L + ["--targ", "0.5", "--out", str(tmp_path / "r")], "unrecognized", "--targ")
    refused(["count", "--mod", "cifar_resnet20_v1"], "--mod")
    refused(L + ["--round-to", "10000", "--out", str(tmp_path / "r")], "round_to=10000")
    import stat
    if stat.S_ISCHR(os.stat("/dev/null").st_mode):  # a sandbox had made it a regular file
        refused(L + ["--params", "/dev/null", "--out", str(tmp_path / "r")],
                "not a regular file")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    refused(L + ["--params", fifo, "--out", str(tmp_path / "r")], "not a regular file")
    assert not os.path.exists(tmp_path / "r")


def test_a_diverging_finetune_names_finetune_lr(tmp_path, G):
    refused(G + ["--finetune-lr", "1e30", "--finetune-epochs", "0.5", "--steps", "1", "--out",
             str(tmp_path / "r")],
            "--finetune-lr")


def test_check_target_refuses_what_no_command_may_write(tmp_path, monkeypatch):
    from prunenet.io import outputs
    monkeypatch.chdir(tmp_path)
    for bad in ("", "  ", ".", "/"):
        with pytest.raises(PrunenetError):
            outputs.check_target(bad)
    (tmp_path / "f").write_text("x")
    with pytest.raises(PrunenetError, match="f is a file"):
        outputs.check_target("f/sub")
    assert outputs.check_target("new/run") == str(tmp_path / "new" / "run")


# ------------------------------------------------------------------ values read from user files

def _records(folder, labels, payloads):
    rec = mx.recordio.MXIndexedRecordIO(str(folder / "train.idx"), str(folder / "train.rec"), "w")
    for i, (label, payload) in enumerate(zip(labels, payloads)):
        rec.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), payload))
    rec.close()
    return str(folder / "train.rec")


@pytest.mark.parametrize("label,payload,words", [
    (7, None, ["record 3 (line 3 of", "has label 7, not a class id 0..3"]),  # trained silently
    (1.5, None, ["record 3", "has label 1.5"]),  # trained silently
    (-1, None, ["record 3", "has label -1"]),
    (1, b"garbage!" * 8, ["record 3", "holds no encoded image"]),  # failed inside OpenCV
])
def test_record_labels_and_payloads_are_checked_naming_the_record(tmp_path, label, payload,
                                                                   words):
    import cv2
    from prunenet.training.data import imagenet_record
    jpeg = cv2.imencode(".jpg", np.full((40, 40, 3), 128, np.uint8))[1].tobytes()
    labels, payloads = [0, 1, label, 3], [jpeg, jpeg, payload or jpeg, jpeg]
    rec = _records(tmp_path, labels, payloads)
    with pytest.raises(PrunenetError) as err:
        imagenet_record(rec, train=True, input_size=32, num_workers=1, classes=4)
    one_line("prunenet: error: " + str(err.value), rec, *words)
    ok = _records(tmp_path, [0, 1, 2, 3], [jpeg] * 4)
    assert len(imagenet_record(ok, train=True, input_size=32, num_workers=1, classes=4)) == 4


def test_two_names_of_one_output_take_one_lock(tmp_path):
    """Issue 33 (trial DUAL): ``--resume runs/dual`` and ``--resume link_dual`` (a symbolic link
    to it) took the locks ``.dual.lock`` and ``.link_dual.lock``, so both resumed the same run
    and one died on a checkpoint the other had deleted; the lock now follows the link."""
    import threading
    from prunenet.io.outputs import LockedError, exclusive
    real = tmp_path / "runs" / "dual"
    real.mkdir(parents=True)
    link = tmp_path / "link_dual"
    link.symlink_to(real, target_is_directory=True)
    second = []

    def other_writer():  # another thread: its own flock, as another process would take
        try:
            with exclusive(str(link), "--resume"):
                second.append("entered")
        except LockedError as err:
            second.append(str(err))
    with exclusive(str(real), "--resume"):
        thread = threading.Thread(target=other_writer)
        thread.start()
        thread.join(timeout=60)
    assert len(second) == 1 and second[0].startswith(f"--resume {link} is being written by"), \
        second
    assert not any(name.endswith(".lock") for name in os.listdir(tmp_path))  # none by the link


FULL_WRITE = """
import shutil, sys
from prunenet.errors import PrunenetError
from prunenet.io.files import atomic_path, write_json
source, target = sys.argv[1:3]
def copy():
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
for write in (copy, lambda: write_json(target, {"text": "x" * 400_000})):
    try:
        write()
        print("written")
    except PrunenetError as err:
        print("refused:", err)
"""


def test_a_full_disk_names_the_file_written_not_the_one_read(tmp_path):
    """Issue 33 (trial FD1, FD2): ``zoo publish`` onto a full disk named the run's params file it
    copied from (shutil puts the source in the error), or no file at all (a manifest write:
    "e.g. at the standard output"); every atomic write now names the file it writes."""
    source = tmp_path / "run" / "pruned-0000.params"
    source.parent.mkdir()
    source.write_bytes(os.urandom(300_000))
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    target = zoo_dir / "second.params"
    script = tmp_path / "full.py"
    script.write_text(FULL_WRITE)
    proc = subprocess.run([sys.executable, str(script), str(source), str(target)], env=ENV,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_file_size_limit(200_000))
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr[-2000:]
    for line in lines:
        assert line.startswith(f"refused: cannot write {target} (File too large)"), line
        assert str(source) not in line
    assert os.listdir(zoo_dir) == []  # no temporary file left either
