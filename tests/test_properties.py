"""Property-based bad input: hypothesis breaks shape files, zoo manifests and latency tables in
many ways, and the real readers (through ``prunenet.cli.main`` where a command reads the file)
must refuse every one on a single line: never a traceback, never a silently wrong result."""
import json
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from prunenet.zoo import store as zoo
from prunenet.errors import PrunenetError
from prunenet.io.files import read_json
from prunenet.latency import LatencyTable
from prunenet.run.folder import prune_run
from test_bad_input import COUNT, SHAPES, _table_doc, one_line, run, write

FEW = settings(max_examples=30, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])
GOOD_SHAPES = read_json(SHAPES)
LAYERS = sorted(GOOD_SHAPES)
CONVS = [k for k in LAYERS if "conv" in k or "down" in k]  # all but the classifier
NOT_UTF8 = st.sampled_from([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"])
# JSON values that are no list of whole numbers
NOT_A_SHAPE = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6), st.floats(), st.just([]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.one_of(st.floats(), st.text(max_size=2), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2)), min_size=1, max_size=4))
NOT_A_NUMBER = st.one_of(st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2),
                         st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                         st.floats(max_value=-1e-9), st.integers(max_value=-1),
                         st.just(float("nan")), st.just(float("inf")), st.just(10 ** 400))


def _mkdir():
    return tempfile.mkdtemp(prefix="prunenet-property-")


def _count_refuses(content):
    """``prunenet count --shapes FILE`` on ``content`` exits 2 with one line naming FILE."""
    folder = _mkdir()
    try:
        path = write(os.path.join(folder, "shapes.json"), content)
        code, err = run(COUNT + [path])
        assert code == 2, (code, err, content)
        one_line(err, "prunenet: error: shape file " + path)
    finally:
        shutil.rmtree(folder)


def _with(key, value):
    return dict(GOOD_SHAPES, **{key: value})


# ------------------------------------------------------------------ shape files

def test_the_unbroken_shape_file_is_accepted():
    code, err = run(COUNT + [SHAPES])
    assert code == 0, err


@FEW
@given(st.sampled_from(LAYERS), NOT_A_SHAPE)
def test_shapes_of_the_wrong_type(key, value):
    _count_refuses(_with(key, value))


@FEW
@given(st.sampled_from(LAYERS), st.data())
def test_sizes_below_one_or_above_the_model(key, data):
    shape = list(GOOD_SHAPES[key])
    at = data.draw(st.integers(0, len(shape) - 1))
    if key in CONVS and at == 0 and data.draw(st.booleans()):  # wider than any resnet18 layer
        shape[0] = data.draw(st.integers(513, 10 ** 30))
    else:
        shape[at] = data.draw(st.integers(max_value=0))
    _count_refuses(_with(key, shape))


@FEW
@given(st.sets(st.sampled_from(LAYERS), min_size=1))
def test_layers_missing(gone):
    _count_refuses({k: v for k, v in GOOD_SHAPES.items() if k not in gone})


@FEW
@given(st.text(min_size=1, max_size=30).filter(lambda k: k not in GOOD_SHAPES),
       st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_layers_the_model_lacks(key, shape):
    _count_refuses(_with(key, shape))


@FEW
@given(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.integers(),
                 st.floats(), st.none(), st.booleans(), st.just({})))
def test_shape_files_that_are_no_object(doc):
    _count_refuses(doc)


# ------------------------------------------------------------------ zoo manifests

@pytest.fixture(scope="module")
def one_model_zoo(tmp_path_factory):
    """A zoo holding one GluonCV-format model, ``m`` (resnet18_v1b, 10 classes, 32x32)."""
    root = tmp_path_factory.mktemp("zoo")
    prune_run("resnet18_v1b", "l1", "flops", 0.5, str(root / "run"), input_size=32, classes=10,
              command=["prunenet"], log=lambda message: None)
    path = str(root / "zoo")
    zoo.publish(str(root / "run"), path, "m", bench=False, log=None)
    return path, read_json(os.path.join(path, "zoo.json"))


def _zoo_refuses(path, content, whole):
    """``zoo list`` exits 2 on one line; ``zoo verify`` also (``whole``: the manifest is
    unreadable) or exits 1 with one FAILED line for the model."""
    write(os.path.join(path, "zoo.json"), content)
    code, err = run(["zoo", "list", "--zoo", path])
    assert code == 2, (code, err, content)
    one_line(err, "zoo manifest")
    code, err = run(["zoo", "verify", "--zoo", path])
    if whole:
        assert code == 2, (code, err)
        one_line(err, "zoo manifest")
    else:
        assert code == 1, (code, err)
        result = zoo.verify(path)
        assert result.ok == [] and len(result.problems) == 1, result


def test_the_unbroken_manifest_is_accepted(one_model_zoo):
    path, doc = one_model_zoo
    write(os.path.join(path, "zoo.json"), doc)
    assert run(["zoo", "list", "--zoo", path])[0] == 0
    assert run(["zoo", "verify", "--zoo", path])[0] == 0


@FEW
@given(st.one_of(
    st.fixed_dictionaries({"version": st.one_of(
        st.none(), st.booleans(), st.text(max_size=3), st.floats(), st.integers(max_value=0),
        st.integers(min_value=2), st.lists(st.integers(), max_size=2))}),
    st.fixed_dictionaries({"models": st.one_of(st.none(), st.lists(st.integers(), max_size=2),
                                               st.text(max_size=3), st.integers())}),
))
def test_manifests_broken_as_a_whole(one_model_zoo, change):
    path, doc = one_model_zoo
    _zoo_refuses(path, dict(doc, **change), whole=True)


@FEW
@given(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=5), st.integers(),
                 st.none()))
def test_manifests_that_are_no_object(one_model_zoo, content):
    _zoo_refuses(one_model_zoo[0], content, whole=True)


def _entry_changes():
    """(field, bad value) for one entry; None as the value removes the field."""
    roles = st.sampled_from(["shapes", "params"])
    return st.one_of(
        st.tuples(st.sampled_from(["files", "sha1"]),
                  st.one_of(st.none(), st.text(max_size=3), st.lists(st.text(), max_size=2))),
        st.tuples(st.just("format"), st.one_of(
            st.none(), st.integers(), st.text(max_size=8).filter(lambda f: f not in zoo.FORMATS))),
        st.tuples(st.just("base"), st.one_of(st.none(), st.integers(), st.booleans(),
                                              st.lists(st.text(max_size=3), max_size=2))),
        st.tuples(st.sampled_from(zoo._FIGURES), NOT_A_NUMBER),
        st.tuples(st.just("input_shape"), st.one_of(
            st.text(max_size=3), st.integers(), st.lists(st.integers(1, 64), max_size=3),
            st.lists(st.integers(max_value=0), min_size=4, max_size=4),
            st.just([1, 3, 2 ** 20, 2 ** 20]))),
        st.tuples(st.tuples(st.sampled_from(["files", "sha1"]), roles), st.one_of(
            st.none(), st.integers(), st.lists(st.text(), max_size=1))),
        st.tuples(st.tuples(st.just("files"), roles), st.one_of(
            st.text(max_size=12).map(lambda t: "../" + t), st.text(max_size=12).map(
                lambda t: "." + t), st.text(max_size=6).map(lambda t: t + "\n"))),
    )


@FEW
@given(st.one_of(_entry_changes(), st.tuples(
    st.just("name"), st.text(max_size=12).filter(lambda n: not zoo._NAME.fullmatch(n)))))
def test_manifest_entries_broken(one_model_zoo, change):
    path, doc = one_model_zoo
    doc = json.loads(json.dumps(doc))  # a deep copy
    field, value = change
    entry = doc["models"]["m"]
    if field == "name":
        doc["models"] = {value: entry}
    elif isinstance(field, tuple):  # one role of files or sha1
        entry[field[0]][field[1]] = value
    elif value is None:
        del entry[field]
    else:
        entry[field] = value
    _zoo_refuses(path, doc, whole=False)


@FEW
@given(st.sampled_from(["shapes", "manifest", "latency"]), st.data())
def test_truncated_or_not_utf8_files(one_model_zoo, kind, data):
    """Any file cut short, or with bytes that are no UTF-8 put anywhere, is refused."""
    text = json.dumps({"shapes": GOOD_SHAPES, "manifest": one_model_zoo[1],
                       "latency": _table_doc()}[kind]).encode()
    if data.draw(st.booleans()):
        content = text[:data.draw(st.integers(0, len(text) - 1))]
    else:
        at = data.draw(st.integers(0, len(text)))
        content = text[:at] + data.draw(NOT_UTF8) + text[at:]
    if kind == "shapes":
        _count_refuses(content)
    elif kind == "manifest":
        _zoo_refuses(one_model_zoo[0], content, whole=True)
    else:
        _table_refuses(content)


# ------------------------------------------------------------------ latency tables

def _table_refuses(content):
    folder = _mkdir()
    try:
        path = write(os.path.join(folder, "table.json"), content)
        with pytest.raises(PrunenetError) as err:
            LatencyTable.open(path, batch_size=4, measure=False)
        assert "\n" not in str(err.value) and path in str(err.value)
    finally:
        shutil.rmtree(folder)


def test_the_unbroken_latency_table_is_accepted(tmp_path):
    table = LatencyTable.open(write(tmp_path / "t.json", _table_doc()), batch_size=4,
                              measure=False)
    assert table.units == _table_doc()["units"] and table.reference_ms == 1.5


@FEW
@given(st.one_of(
    st.tuples(st.sampled_from(["units", "networks"]),
              st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=3))),
    st.tuples(st.just("references_ms"), st.one_of(
        st.none(), st.text(max_size=3), st.lists(NOT_A_NUMBER, min_size=1, max_size=3),
        st.just([0.0]))),
    st.tuples(st.just("unit value"), NOT_A_NUMBER),
    st.tuples(st.just("unit point"), st.text(max_size=8).filter(
        lambda p: not (p.count(",") == 1 and all(s.isdigit() and s[0] != "0"
                                                 for s in p.split(","))))),
    st.tuples(st.just("network"), st.one_of(NOT_A_NUMBER, st.just(0), st.just(None))),
    st.tuples(st.sampled_from(["device", "dtype", "threads", "batch_size", "format"]),
              st.one_of(st.none(), st.integers(max_value=0), st.lists(st.text(), max_size=1),
                        st.text(max_size=3))),
))
def test_latency_tables_broken(change):
    field, value = change
    doc = _table_doc()
    if field == "unit value":
        doc["units"]["conv/k3x3"]["8,8"] = value
    elif field == "unit point":
        doc["units"]["conv/k3x3"] = {value: 0.5}
    elif field == "network":
        doc["networks"]["net"]["latency"] = value
    else:
        assume(value != doc.get(field))  # "1" is this process's thread count
        doc[field] = value
    _table_refuses(doc)
