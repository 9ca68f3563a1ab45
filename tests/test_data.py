import pickle

import numpy as np
import pytest
import torch

from fasternet_space.data import DataError, load_dataset


def test_digits_ship_with_the_package_and_are_deterministic():
    a = load_dataset("digits", 32, seed=4)
    b = load_dataset("digits", 32, seed=4)
    assert a.train_x.shape == (1438, 1, 32, 32) and a.test_x.shape == (359, 1, 32, 32)
    assert a.classes == 10 and a.channels == 1
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert abs(float(a.train_x.mean())) < 1e-4  # normalised with the training split's statistics
    assert not torch.equal(load_dataset("digits", 32, seed=5).test_y, a.test_y)


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    entry = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def test_cifar10_python_batches(tmp_path):
    for i in (1, 2):
        _cifar_batch(tmp_path / f"data_batch_{i}", 20, i)
    _cifar_batch(tmp_path / "test_batch", 10, 9)
    ds = load_dataset(f"cifar10:{tmp_path}", 32, max_train=30)
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (10, 3, 32, 32)
    assert ds.channels == 3 and ds.classes <= 10
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset(f"cifar10:{tmp_path}", 32)


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
