import pathlib
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from fasternet_space.data import DataError, load_dataset
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
