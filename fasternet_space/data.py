"""Datasets for the short proxy: the UCI digits shipped with the package, and the user's own data on disk.

Sources, by `--data`: `digits` (default), `cifar10:DIR` (the CIFAR-10 python pickle batches) and
`imagefolder:DIR` (DIR/train/<class>/*.png|jpg and DIR/val/<class>/..., or DIR/<class>/... split here).
Nothing is downloaded. Images come back as float tensors at the requested square resolution,
normalised with the training split's per-channel mean and std.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_PATH = Path(__file__).parent / "data" / "digits.npz"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DataError(ValueError):
    """A data source that cannot be read; the message names it and what is allowed."""


@dataclass(frozen=True)
class Dataset:
    name: str
    train_x: torch.Tensor  # N x C x R x R, float32, normalised
    train_y: torch.Tensor  # N, int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: int

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train_x.shape[-1])


SOURCES = "digits, cifar10:DIR, imagefolder:DIR"


def load_dataset(source: str, resolution: int, seed: int = 0, max_train: int | None = None,
                 max_test: int | None = None) -> Dataset:
    kind, _, location = source.partition(":")
    if kind == "digits" and not location:
        images, labels = _read_digits()
        train, test = _split(len(labels), 0.2, seed)
        return _finish("digits", images[train], labels[train], images[test], labels[test], resolution, seed,
                       max_train, max_test)
    if kind in ("cifar10", "imagefolder") and location:
        root = Path(location)
        if not root.is_dir():
            what = "is a file, not a directory" if root.exists() else "not found"
            raise DataError(f"--data {source}: {root} {what}")
        reader = _read_cifar10 if kind == "cifar10" else _read_imagefolder
        train_x, train_y, test_x, test_y = reader(root, seed)
        return _finish(f"{kind}:{root.name}", train_x, train_y, test_x, test_y, resolution, seed, max_train, max_test)
    raise DataError(f"--data {source!r} is not a known source; allowed: {SOURCES}")


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DIGITS_PATH) as data:
        images = data["images"].astype(np.float32)[:, None] / 16.0  # N x 1 x 8 x 8, values 0..16
        return images, data["labels"].astype(np.int64)


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * test_fraction))
    return np.sort(order[cut:]), np.sort(order[:cut])


def _read_cifar10(root: Path, seed: int):
    def batch(name: str):
        path = root / name
        if not path.is_file():
            raise DataError(f"--data cifar10:{root}: {name} not found; allowed: a directory with the python "
                            "batches data_batch_1..5 and test_batch")
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return data.astype(np.float32) / 255.0, np.asarray(entry[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise DataError(f"--data cifar10:{root}: {name} is not a CIFAR-10 python batch "
                            f"({exc.__class__.__name__})") from None

    names = sorted(p.name for p in root.glob("data_batch_*"))
    if not names:
        batch("data_batch_1")  # raises the message naming what is expected
    parts = [batch(n) for n in names]
    test_x, test_y = batch("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y


def _read_imagefolder(root: Path, seed: int):
    try:
        from PIL import Image
    except ImportError:
        raise DataError("--data imagefolder: needs Pillow; allowed: pip install -e '.[images]'") from None

    def read(folder: Path, classes: list[str]):
        xs, ys = [], []
        for label, name in enumerate(classes):
            if not (folder / name).is_dir():
                raise DataError(f"--data imagefolder:{root}: {folder / name} is missing; allowed: the same class "
                                f"folders in train/ and val/ ({', '.join(classes)})")
            for path in sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                try:
                    with Image.open(path) as image:
                        rgb = image.convert("RGB").resize((64, 64))
                except (OSError, ValueError) as exc:
                    raise DataError(f"--data imagefolder:{root}: {path} is not a readable image "
                                    f"({exc.__class__.__name__})") from None
                xs.append(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)
                ys.append(label)
        if not xs:
            raise DataError(f"--data imagefolder:{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                            f"under {folder}")
        return xs, ys

    split_dirs = (root / "train").is_dir() and (root / "val").is_dir()
    base = root / "train" if split_dirs else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"--data imagefolder:{root}: found {len(classes)} class folder(s); allowed: a directory "
                        "with one sub-folder per class (at least 2), optionally under train/ and val/")
    xs, ys = read(base, classes)
    x, y = np.stack(xs), np.asarray(ys, dtype=np.int64)
    if split_dirs:
        test_xs, test_ys = read(root / "val", classes)
        return x, y, np.stack(test_xs), np.asarray(test_ys, dtype=np.int64)
    if len(y) < 5:
        raise DataError(f"--data imagefolder:{root}: {len(y)} images cannot be split into training and held-out "
                        "images; allowed: at least 5, or train/ and val/ folders")
    train, test = _split(len(y), 0.2, seed)
    return x[train], y[train], x[test], y[test]


def _subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int):
    if limit is None or len(y) <= limit:
        return x, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:limit])
    return x[keep], y[keep]


def _finish(name, train_x, train_y, test_x, test_y, resolution, seed, max_train, max_test) -> Dataset:
    train_x, train_y = _subsample(train_x, train_y, max_train, seed)
    test_x, test_y = _subsample(test_x, test_y, max_test, seed + 1)

    def resize(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.shape[-1] != resolution:
            t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False)
        return t

    train, test = resize(train_x), resize(test_x)
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    classes = int(max(train_y.max(), test_y.max())) + 1
    return Dataset(name, (train - mean) / std, torch.from_numpy(train_y), (test - mean) / std,
                   torch.from_numpy(test_y), classes)
