"""A zoo served over HTTP: a real ``http.server`` on loopback serves a published zoo folder;
models load by URL, are cached, reused offline, and every failure is one line that keeps the
cache whole."""
import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import threading
import time

import mxnet as mx
import numpy as np
import pytest

from prunenet.io import download
from prunenet.zoo import store as zoo
from prunenet.cli import main
from prunenet.plot import read_points
from prunenet.errors import PrunenetError
from prunenet.run.folder import prune_run
from prunenet.zoo.pruned import load_pruned
from test_zoo import cli, one_line

RESNET = "resnet18_v1b_0.5_flops"  # GluonCV's pruned-ResNet format: shape file + params
SYMBOL = "cifar_resnet20_v1_0.6_flops"  # any other network: MXNet symbol + params


def sha1(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class CutShort(Quiet):
    """Announces each ``.params`` file whole (Content-Length) but sends half, then hangs up."""

    def copyfile(self, source, outputfile):
        if self.path.endswith(".params"):
            data = source.read()
            outputfile.write(data[:len(data) // 2])
            self.close_connection = True
        else:
            super().copyfile(source, outputfile)


class Trickle(Quiet):
    """Sends ``zoo.json`` one byte every 0.25 s for its first 40 bytes (10 s), then the rest:
    never silent for long, so only a deadline on the whole download stops waiting for it."""

    def copyfile(self, source, outputfile):
        data = source.read()
        try:
            if self.path.endswith("zoo.json"):
                for i in range(min(40, len(data))):
                    outputfile.write(data[i:i + 1])
                    outputfile.flush()
                    time.sleep(0.25)
                data = data[40:]
            outputfile.write(data)
        except OSError:  # the client gave up
            self.close_connection = True


@contextlib.contextmanager
def serving(folder, handler=Quiet):
    """``folder`` served by ``http.server`` on 127.0.0.1 at a free port; yields its URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/zoo"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    """A fresh cache per test, no proxy between us and loopback, and a short timeout."""
    monkeypatch.setenv("PRUNENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PRUNENET_ZOO", raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(download, "TIMEOUT", 10.0)


@pytest.fixture(scope="module")
def published(tmp_path_factory, random_net):
    """A zoo folder holding a GluonCV-format and a symbol-format model, and their runs."""
    root = tmp_path_factory.mktemp("published")
    runs = {}
    for name, model, size in ((RESNET, "resnet18_v1b", 64), (SYMBOL, "cifar_resnet20_v1", 32)):
        base = str(root / f"{model}.params")
        random_net(model, size, seed=3, classes=10).save_parameters(base)
        runs[name] = str(root / name)
        prune_run(model, "l1", "flops", 0.5 if name == RESNET else 0.6, runs[name],
                  params=base, input_size=size, classes=10, log=lambda message: None)
        zoo.publish(runs[name], str(root / "zoo"), name, batch_size=2, repeats=1, warmup=1,
                    log=None)
    return str(root / "zoo"), runs


@pytest.fixture()
def site(published, tmp_path):
    """A copy of the published zoo under ``SITE/zoo`` (tests alter it), and the runs."""
    folder, runs = published
    shutil.copytree(folder, tmp_path / "site" / "zoo")
    return tmp_path / "site", runs


def probe(name, batch=2):
    size = 64 if name == RESNET else 32
    return mx.nd.array(np.random.RandomState(1).normal(size=(batch, 3, size, size)))


def manifest(site):
    with open(site / "zoo" / "zoo.json") as f:
        return json.load(f)["models"]


def test_manifest_describes_each_file_and_measurement(site):
    entries = manifest(site[0])
    for name, fmt, family, shape in ((RESNET, zoo.RESNET_FORMAT, "ResNetV1b", [1, 3, 64, 64]),
                                     (SYMBOL, zoo.SYMBOL_FORMAT, "CIFARResNetV1",
                                      [1, 3, 32, 32])):
        e = entries[name]
        assert (e["format"], e["family"], e["input_shape"], e["classes"]) == \
            (fmt, family, shape, 10)
        for role, fname in e["files"].items():
            path = site[0] / "zoo" / fname
            assert fname.startswith(name + "-") and sha1(path)[:8] in fname
            assert (e["sha1"][role], e["sizes"][role]) == (sha1(path), os.path.getsize(path))
        assert e["throughput_img_s"] > 0 and e["batch_size"] == 2 and e["device"] == "cpu(0)"
        assert e["macs"] < e["macs_base"] and e["params"] <= e["params_base"]


def test_both_formats_load_by_url_then_from_the_cache_offline(site, tmp_path, capsys,
                                                                monkeypatch):
    folder, runs = site
    with serving(folder) as url:
        nets = {name: zoo.get_model(name, pretrained=True, root=url) for name in (RESNET, SYMBOL)}
        assert cli("zoo", "list", "--zoo", url) == 0
        table = capsys.readouterr().out.splitlines()
    for name, net in nets.items():
        x = probe(name)
        assert np.array_equal(net(x).asnumpy(), load_pruned(runs[name])(x).asnumpy())
    # the cache: the manifest and the four files under their published names, nothing else
    cache = zoo.cache_folder(url)
    assert cache.startswith(str(tmp_path / "cache" / "zoo" / "127.0.0.1_"))
    entries = manifest(folder)
    names = sorted(["zoo.json"] + [f for e in entries.values() for f in e["files"].values()])
    assert files_under(cache) == names
    for e in entries.values():
        for role, fname in e["files"].items():
            assert sha1(os.path.join(cache, fname)) == e["sha1"][role]
    # zoo list over HTTP: input size, dataset and device columns
    header = table[0].split()
    rows = {line.split()[0]: dict(zip(header, line.split())) for line in table[1:]}
    assert rows[RESNET]["input"] == "3x64x64" and rows[SYMBOL]["input"] == "3x32x32"
    assert rows[RESNET]["device"] == "cpu(0)" and rows[RESNET]["dataset"] == "-"
    assert rows[SYMBOL]["batch"] == "2" and float(rows[SYMBOL]["img/s"]) > 0
    assert cli("zoo", "list", "--zoo", str(folder / "zoo")) == 0  # a folder: the same table
    assert capsys.readouterr().out.splitlines() == table

    # server stopped: the cache serves, a note says the manifest is the cached one
    capsys.readouterr()
    monkeypatch.setenv("PRUNENET_ZOO", url)  # the default zoo, as MXNET_GLUON_REPO
    for name in (RESNET, SYMBOL):
        x = probe(name)
        net = zoo.get_model(name, pretrained=True)
        assert np.array_equal(net(x).asnumpy(), load_pruned(runs[name])(x).asnumpy())
    err = capsys.readouterr().err
    assert "using the manifest cached" in err and "unreachable" in err
    assert cli("zoo", "list") == 0 and RESNET in capsys.readouterr().out
    # the other commands that read a zoo take the URL too
    out = tmp_path / "deploy"
    assert cli("zoo", "export", SYMBOL, "--zoo", url, "--format", "symbol", "--out",
               str(out)) == 0
    assert sorted(os.listdir(out)) == [f"{SYMBOL}-0000.params", f"{SYMBOL}-symbol.json"]
    capsys.readouterr()
    assert main(["bench", "--zoo", url, "--name", RESNET, "--batch-size", "1", "--repeats", "1",
                 "--warmup", "0", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["input_shape"] == [3, 64, 64] and RESNET in measured["models"]
    with pytest.raises(PrunenetError, match=f"zoo manifest {url}/zoo.json has no model with "
                                            f"both 'top1'"):
        read_points(url)  # plot tradeoff: these data-free runs have no top-1


def test_the_cache_is_refreshed_and_repaired(site, capsys):
    """A damaged cached file is downloaded again; a model published later appears."""
    folder, runs = site
    with serving(folder) as url:
        zoo.get_model(RESNET, pretrained=True, root=url)
        params = os.path.join(zoo.cache_folder(url), manifest(folder)[RESNET]["files"]["params"])
        with open(params, "r+b") as f:
            f.write(b"\0" * 16)
        capsys.readouterr()
        x = probe(RESNET)
        net = zoo.get_model(RESNET, pretrained=True, root=url)
        assert "does not match its sha1; downloading it again" in capsys.readouterr().err
        assert np.array_equal(net(x).asnumpy(), load_pruned(runs[RESNET])(x).asnumpy())
        zoo.publish(runs[RESNET], str(folder / "zoo"), "later", bench=False, log=None)
        assert zoo.describe("later", url)["sha1"] == manifest(folder)["later"]["sha1"]


def test_a_file_altered_on_the_server_is_refused_and_discarded(site, capsys):
    folder, runs = site
    entry = manifest(folder)[RESNET]
    served = folder / "zoo" / entry["files"]["params"]
    good = served.read_bytes()
    served.write_bytes(good + bytes(8))  # another size
    with serving(folder) as url:
        with pytest.raises(PrunenetError) as err:
            zoo.get_model(RESNET, pretrained=True, root=url)
        one_line(str(err.value), url, f"is {len(good) + 8} bytes, not the {len(good)}",
                 "discarded")
        served.write_bytes(good[:-8] + bytes(8))  # same size, other bytes
        with pytest.raises(PrunenetError) as err:
            zoo.get_model(RESNET, pretrained=True, root=url)
        one_line(str(err.value), url, entry["files"]["params"], "sha1", "discarded")
        cache = zoo.cache_folder(url)
        # the good shape file stays cached, the bad weights are nowhere, not even half
        assert files_under(cache) == sorted(["zoo.json", entry["files"]["shapes"]])
        assert cli("zoo", "verify", "--zoo", url) == 1
        out = capsys.readouterr().out
        assert [line for line in out.splitlines() if line.startswith("FAILED")] == \
            [f"FAILED   {err.value}"] and f"ok       {SYMBOL}" in out
        served.write_bytes(good)  # repaired on the server: loads
        x = probe(RESNET)
        net = zoo.get_model(RESNET, pretrained=True, root=url)
        assert np.array_equal(net(x).asnumpy(), load_pruned(runs[RESNET])(x).asnumpy())


def test_a_server_closing_mid_file_leaves_no_file_under_its_final_name(site):
    folder, _ = site
    entry = manifest(folder)[SYMBOL]
    size = entry["sizes"]["params"]
    with serving(folder, CutShort) as url:
        with pytest.raises(PrunenetError) as err:
            zoo.get_model(SYMBOL, pretrained=True, root=url)
    one_line(str(err.value), url, "cut short", f"after {size // 2} of {size} bytes",
             "nothing was kept")
    assert files_under(zoo.cache_folder(url)) == sorted(["zoo.json", entry["files"]["symbol"]])


def test_404_unreachable_and_non_zoo_manifests_are_one_line(site, capsys):
    folder, _ = site
    entry = manifest(folder)[RESNET]
    os.remove(folder / "zoo" / entry["files"]["params"])
    with serving(folder) as url:
        with pytest.raises(PrunenetError) as err:
            zoo.get_model(RESNET, pretrained=True, root=url)
        one_line(str(err.value), f"{url}/{entry['files']['params']}", "HTTP 404",
                 "upload the whole published folder")
        for name in (RESNET, SYMBOL):  # the shape file or the symbol alone builds the network
            assert zoo.get_model(name, root=url)(probe(name)).shape == (2, 10)
        base = url[:-len("/zoo")]
        capsys.readouterr()
        assert cli("zoo", "list", "--zoo", base + "/nothing") == 2  # no zoo.json there
        one_line(capsys.readouterr().err, f"{base}/nothing/zoo.json", "HTTP 404",
                 "no prunenet zoo is served there")
        cached = os.path.join(zoo.cache_folder(url), "zoo.json")
        before = sha1(cached)
        for text in ('{"hello": 1}', "<html><body>Index of /zoo</body></html>"):
            (folder / "zoo" / "zoo.json").write_text(text)
            assert cli("zoo", "list", "--zoo", url) == 2
            one_line(capsys.readouterr().err, f"{url}/zoo.json",
                     "not a prunenet zoo manifest" if text[0] == "{" else "is not valid JSON")
            assert sha1(cached) == before  # the cached manifest is kept
    url = f"http://127.0.0.1:{free_port()}/zoo"
    with pytest.raises(PrunenetError) as err:
        zoo.get_model(RESNET, pretrained=True, root=url)
    one_line(str(err.value), f"{url}/zoo.json", "unreachable", "refused")
    assert cli("zoo", "pull", url) == 2
    one_line(capsys.readouterr().err, url, "unreachable")


def test_a_trickling_server_is_given_up_on_at_the_download_deadline(site, capsys,
                                                                    monkeypatch):
    """Issue 33 (Z09): a server sending the manifest a byte at a time was waited on without end
    (the limit was per read); now the whole download has a deadline."""
    folder, _ = site
    monkeypatch.setenv("PRUNENET_DOWNLOAD_DEADLINE", "2")
    with serving(folder, Trickle) as url:
        t0 = time.monotonic()
        assert cli("zoo", "list", "--zoo", url) == 2
        took = time.monotonic() - t0
        one_line(capsys.readouterr().err, f"{url}/zoo.json", "cut short",
                 "not done within the 2 s a download may take", "PRUNENET_DOWNLOAD_DEADLINE")
    assert took < 6, took
    assert not os.path.exists(os.path.join(zoo.cache_folder(url), "zoo.json"))
    monkeypatch.setenv("PRUNENET_DOWNLOAD_DEADLINE", "soon")
    assert cli("zoo", "list", "--zoo", url) == 2
    one_line(capsys.readouterr().err, "PRUNENET_DOWNLOAD_DEADLINE=soon is not a positive number")


def test_zoo_pull_fetches_without_loading(site, tmp_path, capsys, monkeypatch):
    folder, _ = site
    entries = manifest(folder)
    with serving(folder) as url:
        assert cli("zoo", "pull", url, "--name", SYMBOL) == 0
        out = capsys.readouterr().out
        cache = zoo.cache_folder(url)
        assert files_under(cache) == sorted(["zoo.json", *entries[SYMBOL]["files"].values()])
        assert cache in out and entries[SYMBOL]["files"]["params"] in out
        path = zoo.get_model_file(SYMBOL, root=url)  # as GluonCV's model_store names it
        assert path == os.path.join(cache, entries[SYMBOL]["files"]["params"])
        assert sha1(path) == entries[SYMBOL]["sha1"]["params"]
        assert cli("zoo", "pull", url, "--name", "nope") == 2
        one_line(capsys.readouterr().err, "has no model nope", RESNET)
        monkeypatch.setenv("PRUNENET_ZOO", url + "/zoo.json")  # the manifest's URL works too
        assert cli("zoo", "pull") == 0
        assert len(files_under(cache)) == 5
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert cli("zoo", "pull", str(folder / "zoo")) == 2
    one_line(capsys.readouterr().err, "not an http:// or https:// URL")
    for bad in ("http://example.com/zoo", "s3://bucket/zoo"):
        assert cli("zoo", "publish", site[1][RESNET], "--zoo", bad, "--name", "x",
                   "--no-bench") == 2
        one_line(capsys.readouterr().err, bad, "publish writes a folder")
    assert cli("zoo", "list", "--zoo", "ftp://example.com/zoo") == 2
    one_line(capsys.readouterr().err, "cannot download", "http://")
    assert sorted(os.listdir(tmp_path)) == ["cache", "site"]  # no ./http:/example.com/zoo


def test_an_entry_with_wrong_sizes_is_refused(site, capsys):
    folder, _ = site
    doc = json.loads((folder / "zoo" / "zoo.json").read_text())
    doc["models"][RESNET]["sizes"] = {"params": -1}
    (folder / "zoo" / "zoo.json").write_text(json.dumps(doc))
    with serving(folder) as url:
        assert cli("zoo", "list", "--zoo", url) == 2
    one_line(capsys.readouterr().err, f"{url}/zoo.json", f"model {RESNET} has sizes",
             "not file sizes in bytes")


def test_a_cache_that_cannot_be_written_is_one_line(site, tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("PRUNENET_CACHE", str(blocker))
    with serving(site[0]) as url:
        with pytest.raises(PrunenetError) as err:
            zoo.get_model(RESNET, pretrained=True, root=url)
    one_line(str(err.value), f"cannot download into {blocker}", "PRUNENET_CACHE")
    assert blocker.read_text() == "x"


class Loop(Quiet):
    """Answers every request with a 302 to the same path."""

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_loop_is_not_told_to_try_again_later(tmp_path, capsys):
    """Issue 33 (trial Z04): a server redirecting to itself was answered "try again later",
    though no wait mends a loop; the line now says to check the URL."""
    with serving(tmp_path, Loop) as url:
        assert cli("zoo", "list", "--zoo", url) == 2
    err = capsys.readouterr().err
    one_line(err, f"{url}/zoo.json", "HTTP 302", "redirects in a loop", "check the URL")
    assert "try again later" not in err
