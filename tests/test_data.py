import gzip
import pathlib
import pickle
import re
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch
import yaml

from fasternet_space import make_subset
from fasternet_space.data import DataError, _read_fashion, load_dataset, read_idx
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.conftest import TINY_SPACE


def test_digits_ship_with_the_package_and_are_deterministic():
    a = load_dataset("digits", 32, seed=4)
    b = load_dataset("digits", 32, seed=4)
    assert a.train_x.shape == (1438, 1, 32, 32) and a.test_x.shape == (359, 1, 32, 32)
    assert a.classes == 10 and a.channels == 1
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert abs(float(a.train_x.mean())) < 1e-4  # normalised with the training split's statistics
    assert not torch.equal(load_dataset("digits", 32, seed=5).test_y, a.test_y)


def _cifar_entry(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5",
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, n).tolist(), b"filenames": [b"img_%d.png" % i for i in range(n)]}


def _cifar_batch(path, n, seed, protocol=pickle.DEFAULT_PROTOCOL, changes=()):
    with open(path, "wb") as f:
        pickle.dump({**_cifar_entry(n, seed), **dict(changes)}, f, protocol=protocol)


def _published_batch(path, n, seed):
    """The bytes of the batches on the CIFAR-10 site: cPickle protocol 2 from Python 2 (keys are py2 str, read
    back as bytes) with the array under numpy < 2's names."""
    entry = _cifar_entry(n, seed)
    raw = entry[b"data"].tobytes()
    path.write_bytes(
        b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04"
        b"K\x00\x85U\x01b\x87Rq\x05(K\x01J" + struct.pack("<i", n) + b"M\x00\x0c\x86cnumpy\ndtype\nq\x06"
        b"U\x02u1K\x00K\x01\x87Rq\x07"
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T" + struct.pack("<i", len(raw)) + raw
        + b"tbU\x06labelsq\x08](" + b"".join(b"K" + bytes([v]) for v in entry[b"labels"]) + b"eu.")
    return entry


def _cifar_dir(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    for i in (1, 2):
        _cifar_batch(tmp_path / f"data_batch_{i}", 20, i)
    _cifar_batch(tmp_path / "test_batch", 10, 9)
    return tmp_path


def test_cifar10_python_batches(tmp_path):
    _cifar_dir(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path}", 32, max_train=30)
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (10, 3, 32, 32)
    assert ds.channels == 3 and ds.classes <= 10
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch") as err:
        load_dataset(f"cifar10:{tmp_path}", 32)
    assert err.value.parameter == "data" and str(err.value).startswith(f"data cifar10:{tmp_path}: ")


def test_cifar10_batches_as_published_and_as_any_protocol_writes_them(tmp_path):
    entry = _published_batch(tmp_path / "data_batch_1", 12, 1)
    _cifar_batch(tmp_path / "data_batch_2", 5, 2, protocol=5)  # Python 3.14's default
    _cifar_batch(tmp_path / "test_batch", 4, 3, protocol=3,
                 changes={b"data": np.asfortranarray(_cifar_entry(4, 3)[b"data"])})
    ds = load_dataset(f"cifar10:{tmp_path}", 32)
    assert ds.train_x.shape == (17, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.train_y[:12].tolist() == entry[b"labels"]


class _Payload:
    """Unpickling it calls a function: what a crafted batch does to run code (here, a harmless touch)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_crafted_cifar10_batch_runs_nothing(tmp_path):
    _cifar_dir(tmp_path)
    marker = tmp_path / "ran"
    payload = pickle.dumps(dict(_cifar_entry(10, 9), extra=_Payload(marker)))
    pickle.loads(payload)  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match="test_batch holds something other than a CIFAR-10 batch") as err:
        load_dataset(f"cifar10:{tmp_path}", 32)
    assert "'pathlib.Path.touch'" in str(err.value) and "--data" not in str(err.value)
    assert not marker.exists()


def test_a_crafted_cifar10_batch_from_the_cli_is_one_line_and_runs_nothing(tmp_path):
    data = _cifar_dir(tmp_path / "cifar")
    marker = tmp_path / "ran"
    (data / "data_batch_2").write_bytes(pickle.dumps(_Payload(marker)))
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    result = run_cli("search", "--space", str(space), "--storage", f"sqlite:///{tmp_path / 's.db'}",
                     "--n-trials", "1", "--data", f"cifar10:{data}", timeout=300)
    assert_one_line_error(result, f"cifar10:{data}", "'pathlib.Path.touch'",
                          "data_batch_2 holds something other than a CIFAR-10 batch")
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.999])
def test_a_truncated_cifar10_batch_is_one_data_error(tmp_path, keep):
    _cifar_dir(tmp_path)
    _cifar_batch(tmp_path / "data_batch_1", 2000, 1)  # 6 MB: a cut length field once asked for a MemoryError
    whole = (tmp_path / "data_batch_1").read_bytes()
    (tmp_path / "data_batch_1").write_bytes(whole[:int(len(whole) * keep)])
    with pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 python batch .*truncated or corrupt"):
        load_dataset(f"cifar10:{tmp_path}", 32)


@pytest.mark.parametrize("changes, expected", [
    ({b"data": np.zeros((20, 3000), np.uint8)}, "expected b'data' of uint8, a multiple of 3072 values"),
    ({b"data": np.zeros((20, 3072), np.int64)}, "holds something other than a CIFAR-10 batch (a numpy"),
    ({b"data": [b"x"] * 20}, "expected b'data' of uint8"),
    ({b"labels": [1] * 19}, "expected b'labels', 20 integers in 0..9, got 19 int64"),
    ({b"labels": [3] * 19 + [10]}, "expected b'labels', 20 integers in 0..9, got 20 int64 in 3..10"),
    ({b"labels": [b"cat"] * 20}, "expected b'labels', 20 integers in 0..9"),
    ({b"labels": None}, "expected b'labels', 20 integers in 0..9"),
])
def test_a_wrong_cifar10_batch_names_the_file_and_what_is_expected(tmp_path, changes, expected):
    _cifar_dir(tmp_path)
    _cifar_batch(tmp_path / "data_batch_2", 20, 2, changes=changes)
    with pytest.raises(DataError, match=f"data_batch_2 .*{re.escape(expected)}"):
        load_dataset(f"cifar10:{tmp_path}", 32)
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps([1, 2, 3]))  # not even a dict
    with pytest.raises(DataError, match="data_batch_2 is not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{tmp_path}", 32)


def test_a_corrupt_array_state_does_not_reach_numpy(tmp_path):
    """A batch whose dtype state has one byte changed: numpy's own unpickling of it crashes the process
    (found by fuzzing), so it is run in a child; the reader must load it or refuse it, not crash."""
    _cifar_dir(tmp_path)
    good = pickle.dumps(_cifar_entry(20, 1), protocol=4)
    assert good.count(b"\x8c\x01|\x94NN") == 1  # the dtype's state: (3, '|', None, None, ...)
    (tmp_path / "data_batch_1").write_bytes(good.replace(b"\x8c\x01|\x94NN", b"\x8c\x01|\x94Nb"))
    code = ("import sys; from fasternet_space.data import DataError, load_dataset\n"
            "try: load_dataset(sys.argv[1], 32)\nexcept DataError as e: print(e)")
    result = subprocess.run([sys.executable, "-c", code, f"cifar10:{tmp_path}"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_imagefolder(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for name in ("cat", "dog", "fox"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                image_module.fromarray(pixels).save(folder / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", 32)
    assert ds.train_x.shape == (12, 3, 32, 32) and ds.test_x.shape == (6, 3, 32, 32) and ds.classes == 3
    assert sorted(ds.test_y.tolist()) == [0, 0, 1, 1, 2, 2]
    flat = load_dataset(f"imagefolder:{tmp_path / 'train'}", 32)  # no train/val: split here
    assert len(flat.train_y) + len(flat.test_y) == 12
    with pytest.raises(DataError, match="at least 2"):
        load_dataset(f"imagefolder:{tmp_path / 'train' / 'cat'}", 32)


def _idx_images(n, rows=28, cols=28, magic=2051, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (n, rows, cols), dtype=np.uint8)
    return struct.pack(">4I", magic, n, rows, cols) + pixels.tobytes()


def _idx_labels(labels, magic=2049):
    return struct.pack(">2I", magic, len(labels)) + bytes(labels)


def _idx_dir(root, gz=False, dotted=False, changes=()):
    """train: 20 images, t10k: 10, labels cycling 0..9; `changes` replaces a file's bytes by its plain name."""
    root.mkdir(exist_ok=True)
    files = {"train-images-idx3-ubyte": _idx_images(20, seed=1), "train-labels-idx1-ubyte": _idx_labels(
        [i % 10 for i in range(20)]), "t10k-images-idx3-ubyte": _idx_images(10, seed=2),
        "t10k-labels-idx1-ubyte": _idx_labels(list(range(10)))}
    files.update(dict(changes))
    for name, raw in files.items():
        name = name.replace("-idx", ".idx") if dotted else name
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return root


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_files_plain_or_gzipped(tmp_path, kind, gz, dotted):
    _idx_dir(tmp_path, gz=gz, dotted=dotted)
    ds = load_dataset(f"{kind}:{tmp_path}", 32)
    assert ds.train_x.shape == (20, 1, 32, 32) and ds.test_x.shape == (10, 1, 32, 32)
    assert ds.channels == 1 and ds.classes == 10 and ds.name == f"{kind}:{tmp_path.name}"
    assert ds.train_y.tolist() == [i % 10 for i in range(20)] and ds.test_y.tolist() == list(range(10))
    train_x, train_y, test_x, test_y = read_idx(tmp_path, "x")
    assert train_x.dtype == np.uint8 and train_x.shape == (20, 28, 28) and test_x.shape == (10, 28, 28)
    assert train_x.tobytes() == _idx_images(20, seed=1)[16:] and train_y.dtype == np.int64


_IMAGES, _LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@pytest.mark.parametrize("changes, expected", [
    ({_IMAGES: _idx_images(20, seed=1)[:-5]}, f"{_IMAGES} is truncated: its header claims 20 x 28 x 28 "
                                              "images, expected 15680 bytes after the header, found 15675"),
    ({_LABELS: _idx_labels([1] * 20)[:-1]}, f"{_LABELS} is truncated: its header claims 20 labels, expected 20 "
                                            "bytes after the header, found 19"),
    ({_IMAGES: _idx_images(20, seed=1) + b"\0"}, f"{_IMAGES} is too long: its header claims 20 x 28 x 28 "
                                                 "images, expected 15680 bytes after the header, found 15681"),
    ({_IMAGES: b"\0\0\x08"}, f"{_IMAGES} is truncated: expected an idx header of 16 bytes, found 3"),
    ({_IMAGES: _idx_images(20, magic=2049)}, f"{_IMAGES} is not an idx file of images: expected magic number "
                                             "2051 (uint8, 3 dims), found 2049"),
    ({_LABELS: _idx_labels([1] * 20, magic=2051)}, f"{_LABELS} is not an idx file of labels: expected magic "
                                                   "number 2049 (uint8, 1 dim), found 2051"),
    ({_IMAGES: _idx_images(20, rows=32, cols=32)}, f"{_IMAGES} holds 32 x 32 images; expected 28 x 28"),
    ({_IMAGES: _idx_images(0)}, f"{_IMAGES} holds no images"),
    ({_LABELS: _idx_labels([1] * 19)}, f"{_LABELS} holds 19 labels but {_IMAGES} 20 images; expected one label "
                                       "per image"),
    ({_LABELS: _idx_labels([1] * 19 + [11])}, f"{_LABELS} holds label 11; expected labels in 0..9"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_a_wrong_idx_file_is_one_line_naming_the_file(tmp_path, changes, expected, gz):
    _idx_dir(tmp_path, gz=gz, changes=changes)
    with pytest.raises(DataError) as err:
        load_dataset(f"mnist:{tmp_path}", 32)
    message = str(err.value)
    assert message.startswith(f"data mnist:{tmp_path}: ") and "\n" not in message
    assert (expected.replace("-ubyte ", "-ubyte.gz ") if gz else expected) in message, message


def test_a_missing_or_unreadable_idx_file_is_one_line(tmp_path):
    _idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte not found \(nor \.gz, nor "
                                        r"t10k-labels\.idx1-ubyte\); expected the idx files train-images"):
        load_dataset(f"fashion-mnist:{tmp_path}", 32)
    whole = gzip.compress(_idx_labels(list(range(10))))
    for raw in (whole[:len(whole) // 2], b"not gzip at all"):  # a cut gzip stream, not gzip
        (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(raw)
        with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read \((EOFError|BadGzipFile)"
                                            r".*; expected an idx file, plain or \.gz$"):
            load_dataset(f"fashion-mnist:{tmp_path}", 32)


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_header_claiming_a_billion_images_allocates_nothing(tmp_path, gz):
    _idx_dir(tmp_path, gz=gz, changes={_IMAGES: struct.pack(">4I", 2051, 10**9, 28, 28) + bytes(1000)})
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match=f"{_IMAGES}.* is truncated: its header claims 1000000000 x 28 x 28 "
                                            "images, expected 784000000000 bytes after the header, found 1000"):
            read_idx(tmp_path, "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000 and time.perf_counter() - start < 5


def test_a_wrong_idx_file_from_the_cli_is_one_line(tmp_path):
    data = _idx_dir(tmp_path / "mnist", changes={_LABELS: _idx_labels([1] * 19 + [11])})
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    result = run_cli("search", "--space", str(space), "--storage", f"sqlite:///{tmp_path / 's.db'}",
                     "--n-trials", "1", "--data", f"mnist:{data}", timeout=300)
    assert_one_line_error(result, f"mnist:{data}", f"{_LABELS} holds label 11; expected labels in 0..9")


def test_the_shipped_fashion_subset_is_balanced():
    train_x, train_y, test_x, test_y = _read_fashion()
    assert train_x.shape == (10000, 1, 28, 28) and test_x.shape == (2000, 1, 28, 28)
    assert train_x.dtype == np.float32 and 0 <= train_x.min() and train_x.max() <= 1 and train_x.max() > 0.9
    assert np.bincount(train_y).tolist() == [1000] * 10 and np.bincount(test_y).tolist() == [200] * 10
    ds = load_dataset("fashion", 32, max_train=500, max_test=100)
    assert ds.train_x.shape == (500, 1, 32, 32) and ds.test_x.shape == (100, 1, 32, 32)
    assert ds.classes == 10 and ds.name == "fashion" and abs(float(ds.train_x.mean())) < 1e-4


def test_make_subset_draws_balanced_classes_reproducibly(tmp_path):
    _idx_dir(tmp_path / "idx", gz=True)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    for out in (first, second):
        assert make_subset.main(["--from", str(tmp_path / "idx"), "--out", str(out), "--train-per-class", "2",
                                 "--test-per-class", "1"]) == 0
    assert first.read_bytes() == second.read_bytes()
    with np.load(first) as subset:
        assert subset["train_images"].shape == (20, 28, 28) and subset["train_images"].dtype == np.uint8
        assert np.bincount(subset["test_labels"]).tolist() == [1] * 10
    assert make_subset.main(["--from", str(tmp_path / "idx"), "--out", str(first),
                             "--test-per-class", "2"]) == 2  # the test split has one image per class
