"""Datasets for the short proxy: two shipped with the package, and the user's own data on disk.

Sources (`load_dataset`'s `source`): `digits` (default; the UCI 8x8 digits), `fashion` (a class-balanced
Fashion-MNIST subset, see `make_subset`), `fashion-mnist:DIR` and `mnist:DIR` (the four idx files, plain or
.gz), `cifar10:DIR` (the CIFAR-10 python pickle batches) and `imagefolder:DIR` (DIR/train/<class>/*.png|jpg
and DIR/val/<class>/..., or DIR/<class>/... split here).
Nothing is downloaded. Images come back as float tensors at the requested square resolution,
normalised with the training split's per-channel mean and std.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fasternet_space.errors import InputError

DIGITS_PATH = Path(__file__).parent / "data" / "digits.npz"
FASHION_PATH = Path(__file__).parent / "data" / "fashion_mnist.npz"
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


class DataError(InputError):
    """A data source that cannot be read: parameter "data", the source as value, what is wrong and allowed."""


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


SOURCES = "digits, fashion, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, imagefolder:DIR"


def load_dataset(source: str, resolution: int, seed: int = 0, max_train: int | None = None,
                 max_test: int | None = None) -> Dataset:
    kind, _, location = source.partition(":")
    if kind == "digits" and not location:
        images, labels = _read_digits()
        train, test = _split(len(labels), 0.2, seed)
        return _finish("digits", images[train], labels[train], images[test], labels[test], resolution, seed,
                       max_train, max_test)
    if kind == "fashion" and not location:
        return _finish("fashion", *_read_fashion(), resolution, seed, max_train, max_test)
    readers = {"cifar10": _read_cifar10, "imagefolder": _read_imagefolder, "mnist": _read_idx_dir,
               "fashion-mnist": _read_idx_dir}
    if kind in readers and location:
        root = Path(location)
        if not root.is_dir():
            what = "is a file, not a directory" if root.exists() else "not found"
            raise DataError("data", source, f"{root} {what}")
        train_x, train_y, test_x, test_y = readers[kind](root, source, seed)
        return _finish(f"{kind}:{root.name}", train_x, train_y, test_x, test_y, resolution, seed, max_train, max_test)
    raise DataError("data", repr(source), f"not a known source; allowed: {SOURCES}")


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DIGITS_PATH) as data:
        images = data["images"].astype(np.float32)[:, None] / 16.0  # N x 1 x 8 x 8, values 0..16
        return images, data["labels"].astype(np.int64)


def _read_fashion() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(FASHION_PATH) as data:
            return (_unit(data["train_images"]), data["train_labels"].astype(np.int64),
                    _unit(data["test_images"]), data["test_labels"].astype(np.int64))
    # It is LZMA-compressed: a Python built without lzma raises RuntimeError; a broken install, OSError.
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise DataError("data", "fashion", f"{FASHION_PATH} cannot be read ({exc.__class__.__name__}); "
                        "expected the package's Fashion-MNIST subset (reinstall, or rebuild it with "
                        "python -m fasternet_space.make_subset)") from None


def _unit(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W -> float32 N x 1 x H x W in [0, 1]."""
    return images.astype(np.float32)[:, None] / 255.0


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * test_fraction))
    return np.sort(order[cut:]), np.sort(order[:cut])


class _Refused(pickle.UnpicklingError):
    pass


class _Dtype:
    """Stands in for numpy.dtype while unpickling: CIFAR-10 data is uint8, nothing else is built."""

    def __init__(self, name, align=False, copy=True):
        if name not in ("u1", b"u1"):
            raise _Refused(f"a numpy {name!r:.20} array, not uint8")

    def __setstate__(self, state):  # byte order and flags: nothing to keep for uint8
        pass


def _uint8(raw, dtype, shape, fortran) -> np.ndarray:
    if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("not a uint8 array")
    return np.frombuffer(raw, np.uint8).reshape(tuple(shape), order="F" if fortran else "C")


class _Array:
    """Stands in for a numpy array while unpickling. numpy's own __setstate__ trusts its input and can crash
    the process on a corrupt one, so here the state is checked and only a uint8 buffer becomes an array."""

    def __init__(self, *args):  # called as _reconstruct(ndarray, (0,), b"b")
        self.array = None

    def __setstate__(self, state):  # (version, shape, dtype, fortran, raw); old pickles omit the version
        shape, dtype, fortran, raw = state[-4:]
        self.array = _uint8(raw, dtype, shape, fortran)

    def __array__(self, dtype=None, copy=None):
        return self.array


def _frombuffer(raw, dtype, shape, order):  # pickle protocol 5 (Python 3.14's default) writes arrays so
    return _uint8(raw, dtype, shape, order == "F")


# The CIFAR-10 python batches are pickled dicts of bytes keys to bytes, lists of ints and bytes, and one
# numpy uint8 array (`data`, N x 3072). Only that array needs globals: these, under the module names numpy < 2
# wrote (the published files) and numpy >= 2 writes, each mapped to a stand-in above that builds nothing but a
# uint8 array. Any other global (os.system, builtins.eval, ...) is how a crafted file runs code while it
# loads, so it is refused.
_CIFAR10_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Dtype,
}


class _Cifar10Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR10_GLOBALS:
            raise _Refused(f"it would call {module + '.' + name!r}")
        return _CIFAR10_GLOBALS[module, name]


def _read_cifar10(root: Path, source: str, seed: int):
    def batch(name: str):
        def fail(problem: str):
            return DataError("data", source, f"{name} {problem}")

        path = root / name
        if not path.is_file():
            raise fail("not found; allowed: a directory with the python batches data_batch_1..5 and "
                       "test_batch")
        try:
            with open(path, "rb") as f:
                entry = _Cifar10Unpickler(f, encoding="bytes").load()
            data, labels = np.asarray(entry[b"data"]), np.asarray(entry[b"labels"])
        except _Refused as exc:
            raise fail(f"holds something other than a CIFAR-10 batch ({exc}); allowed: a pickled dict of "
                       "bytes, lists and one uint8 array") from None
        # A truncated or corrupt pickle raises almost anything: EOFError, UnpicklingError, MemoryError (a
        # garbage length), ValueError, TypeError, ...
        except Exception as exc:
            raise fail(f"is not a CIFAR-10 python batch ({exc.__class__.__name__}: truncated or corrupt); "
                       "expected a pickled dict with b'data' and b'labels'") from None
        if data.dtype != np.uint8 or not data.size or data.size % 3072:
            raise fail(f"is not a CIFAR-10 python batch: expected b'data' of uint8, a multiple of 3072 "
                       f"values (3 x 32 x 32 per image), got {data.size} of {data.dtype}")
        data = data.reshape(-1, 3, 32, 32)
        ints = labels.dtype.kind in "iu" and labels.size > 0
        if labels.shape != (len(data),) or not ints or labels.min() < 0 or labels.max() > 9:
            got = f"{labels.size} {labels.dtype}" + (f" in {labels.min()}..{labels.max()}" if ints else "")
            raise fail(f"is not a CIFAR-10 python batch: expected b'labels', {len(data)} integers in 0..9, "
                       f"got {got}")
        return data.astype(np.float32) / 255.0, labels.astype(np.int64)

    names = sorted(p.name for p in root.glob("data_batch_*"))
    if not names:
        batch("data_batch_1")  # raises the message naming what is expected
    parts = [batch(n) for n in names]
    test_x, test_y = batch("test_batch")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), test_x, test_y


def _read_idx_dir(root: Path, source: str, seed: int):
    train_x, train_y, test_x, test_y = read_idx(root, source)
    return _unit(train_x), train_y, _unit(test_x), test_y


def read_idx(root: Path, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MNIST-format (idx) files in `root`, as MNIST and Fashion-MNIST ship them: training images, labels,
    test images, labels; images uint8 N x 28 x 28, labels int64 in 0..9. `source` is named in errors."""
    return (*_idx_split(root, source, "train"), *_idx_split(root, source, "t10k"))


def _idx_split(root: Path, source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = _idx_path(root, source, f"{split}-images-idx3-ubyte")
    labels_path = _idx_path(root, source, f"{split}-labels-idx1-ubyte")
    images = _read_idx_file(images_path, source, images=True)
    labels = _read_idx_file(labels_path, source, images=False)
    if len(labels) != len(images):
        raise DataError("data", source, f"{labels_path.name} holds {len(labels)} labels but {images_path.name} "
                        f"{len(images)} images; expected one label per image")
    if labels.max() > 9:
        raise DataError("data", source, f"{labels_path.name} holds label {labels.max()}; expected labels in 0..9")
    return images, labels.astype(np.int64)


def _idx_path(root: Path, source: str, name: str) -> Path:
    dotted = name.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors name them
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (root / candidate).is_file():
            return root / candidate
    raise DataError("data", source, f"{root / name} not found (nor .gz, nor {dotted}); expected the idx files "
                    f"{', '.join(IDX_NAMES)}, plain or .gz")


_IDX_CHUNK = 1 << 20


def _read_idx_file(path: Path, source: str, images: bool) -> np.ndarray:
    """One idx file, strictly: magic 2051 (uint8, 3 dims: N x 28 x 28) or 2049 (uint8, 1 dim: N labels),
    big-endian sizes, then exactly the bytes those sizes claim."""
    def fail(problem: str):
        return DataError("data", source, f"{path.name} {problem}")

    magic, what, layout = (2051, "images", "uint8, 3 dims") if images else (2049, "labels", "uint8, 1 dim")
    header_size = 16 if images else 8
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            header = f.read(header_size)
            if len(header) < header_size:
                raise fail(f"is truncated: expected an idx header of {header_size} bytes, found {len(header)}")
            found_magic, *sizes = struct.unpack(f">{header_size // 4}I", header)
            if found_magic != magic:
                raise fail(f"is not an idx file of {what}: expected magic number {magic} ({layout}), "
                           f"found {found_magic}")
            _check_idx_sizes(sizes, what, fail)
            size = math.prod(sizes)
            body, found = _read_body(f, size)
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, not gzip, a cut or corrupt gzip stream
        reason = " ".join(f"{exc.__class__.__name__}: {exc}".split())
        raise fail(f"cannot be read ({reason}); expected an idx file, plain or .gz") from None
    if found != size:
        shape = " x ".join(map(str, sizes))
        raise fail(f"is {'truncated' if found < size else 'too long'}: its header claims {shape} {what}, "
                   f"expected {size} bytes after the header, found {found}")
    return np.frombuffer(body, np.uint8).reshape(sizes)


def _check_idx_sizes(sizes: list[int], what: str, fail) -> None:
    if sizes[0] == 0:
        raise fail(f"holds no {what}; expected at least one")
    if what == "images" and sizes[1:] != [28, 28]:
        raise fail(f"holds {sizes[1]} x {sizes[2]} images; expected 28 x 28")


def _read_body(f, size: int) -> tuple[bytearray, int]:
    """Up to `size` bytes and how many the file really holds. Read in chunks, so that a header claiming more
    than the file holds allocates nothing (a gzip file's size does not tell)."""
    body = bytearray()
    while len(body) < size:
        chunk = f.read(min(_IDX_CHUNK, size - len(body)))
        if not chunk:
            return body, len(body)
        body += chunk
    return body, size + sum(len(chunk) for chunk in iter(lambda: f.read(_IDX_CHUNK), b""))


def _read_imagefolder(root: Path, source: str, seed: int):
    try:
        from PIL import Image
    except ImportError:
        raise DataError("data", source, "needs Pillow; allowed: pip install -e '.[images]'") from None

    def read(folder: Path, classes: list[str]):
        xs, ys = [], []
        for label, name in enumerate(classes):
            if not (folder / name).is_dir():
                raise DataError("data", source, f"{folder / name} is missing; allowed: the same class "
                                f"folders in train/ and val/ ({', '.join(classes)})")
            for path in sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                try:
                    with Image.open(path) as image:
                        rgb = image.convert("RGB").resize((64, 64))
                except (OSError, ValueError) as exc:
                    raise DataError("data", source,
                                    f"{path} is not a readable image ({exc.__class__.__name__})") from None
                xs.append(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)
                ys.append(label)
        if not xs:
            raise DataError("data", source, f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
        return xs, ys

    split_dirs = (root / "train").is_dir() and (root / "val").is_dir()
    base = root / "train" if split_dirs else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError("data", source, f"found {len(classes)} class folder(s); allowed: a directory "
                        "with one sub-folder per class (at least 2), optionally under train/ and val/")
    xs, ys = read(base, classes)
    x, y = np.stack(xs), np.asarray(ys, dtype=np.int64)
    if split_dirs:
        test_xs, test_ys = read(root / "val", classes)
        return x, y, np.stack(test_xs), np.asarray(test_ys, dtype=np.int64)
    if len(y) < 5:
        raise DataError("data", source, f"{len(y)} images cannot be split into training and held-out "
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
