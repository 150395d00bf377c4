"""Image datasets: MNIST and Fashion-MNIST (IDX), scikit-learn's digits, CIFAR-10 (restricted unpickler)."""


import codecs
import dataclasses
import gzip
import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from ..limits import check_elements

from .base import (MNIST_ENV, MNIST_HINT, DatasetSplit, _check_labels, _fixed_split, _folder, _make_split,
                   register)

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IDX_UBYTE = 0x08

# ---------------------------------------------------------------------------------------------------- IDX

def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzipped or raw.

    Compression is detected by the gzip magic bytes (1f 8b), not the file name, so a renamed file still
    reads. The header is read first (from the decompressed stream's first bytes for a gzipped file) and the
    size it declares is checked against the element limit (``--max-elements``) before the body is read or
    decompressed: a few-MB gzip file declaring billions of pixels is refused without allocating them. The
    payload must have exactly the size the header declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            stream = gzip.GzipFile(fileobj=f, mode="rb") if gzipped else f
            return _read_idx_stream(path, stream)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (EOFError, zlib.error) as exc:  # a truncated or corrupt gzip stream
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None


#: Trailing bytes past the declared payload are counted up to this many (the message says "at least").
_IDX_TRAILING_COUNTED = 16 << 20


def _read_idx_stream(path: Path, stream) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{head[:4].hex() or 'empty'})")
    dtype_code, ndim = head[2], head[3]
    if dtype_code != IDX_UBYTE:
        raise DataError(f"{path}: IDX data type 0x{dtype_code:02x} is not supported (only unsigned byte, 0x08)")
    raw_dims = stream.read(4 * ndim)
    if ndim == 0 or len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions, {4 + len(raw_dims)} bytes in the file)")
    dims = tuple(int.from_bytes(raw_dims[4 * i: 4 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    check_elements(expected, str(path), f"IDX header dimensions {'x'.join(map(str, dims))}")
    body = stream.read(expected)
    if len(body) < expected:
        raise DataError(f"{path}: truncated IDX file (expected {expected} bytes of data, found {len(body)})")
    extra = 0
    while extra < _IDX_TRAILING_COUNTED:
        chunk = stream.read(min(1 << 20, _IDX_TRAILING_COUNTED - extra))
        if not chunk:
            break
        extra += len(chunk)
    if extra:
        more = "at least " if extra >= _IDX_TRAILING_COUNTED else ""
        raise DataError(f"{path}: IDX file has {more}{extra} bytes after the {expected} its header declares")
    # bytearray makes the array writable (np.frombuffer over bytes would be read-only).
    return np.frombuffer(bytearray(body), dtype=np.uint8).reshape(dims)


def _read_idx_expecting(path: Path, magic: int, what: str) -> np.ndarray:
    """read_idx, plus a check that the file holds ``what`` (images: 3 dims, labels: 1 dim)."""
    array = read_idx(path)
    if array.ndim != magic & 0xFF:
        found = (IDX_UBYTE << 8) | array.ndim
        raise DataError(f"{path}: IDX magic 0x{found:08x} is not that of {what} (expected 0x{magic:08x})")
    return array


def _idx_file(folder: Path, stem: str) -> Optional[Path]:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx_pair(folder: Path, prefix: str, hint: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) and labels (N,) from ``PREFIX-images-idx3-ubyte`` / ``PREFIX-labels-idx1-ubyte``."""
    paths = {}
    for kind, idx in (("images", 3), ("labels", 1)):
        stem = f"{prefix}-{kind}-idx{idx}-ubyte"
        paths[kind] = _idx_file(folder, stem)
        if paths[kind] is None:
            raise DataError(f"{folder / stem}[.gz]: file not found{'; ' + hint if hint else ''}")
    images = _read_idx_expecting(paths["images"], IDX_IMAGES_MAGIC, "images")
    labels = _read_idx_expecting(paths["labels"], IDX_LABELS_MAGIC, "labels")
    if len(images) != len(labels):
        raise DataError(f"{paths['labels']}: {len(labels)} labels for the {len(images)} images "
                        f"of {paths['images'].name}")
    if 0 in images.shape[1:]:
        raise DataError(f"{paths['images']}: empty image size {images.shape[1:]}")
    _check_labels(labels, 10, str(paths["labels"]))
    return images[:, None], labels


def _load_idx_dataset(name: str, folder: Path, cfg: DataConfig, hint: str) -> DatasetSplit:
    test = _read_idx_pair(folder, "t10k", hint)
    if _idx_file(folder, "train-images-idx3-ubyte") or _idx_file(folder, "train-labels-idx1-ubyte"):
        # One of the two train files without the other is a broken download, not "no train files".
        train = _read_idx_pair(folder, "train", hint)
    else:
        train, test = _fixed_split(*test)
    return _make_split(name, train, test, cfg.n_train, cfg.n_test, 10, f"{name} ({folder})")


def default_mnist_dir() -> Path:
    """Where the offline MNIST lives: $SLT_DEPLOY_MNIST, else the first existing ``shared/data/mnist``.

    Candidates after the environment variable: ``<repo root>/../shared/data/mnist``,
    ``<cwd>/../shared/data/mnist``, ``<cwd>/shared/data/mnist``. A variable that is set but names no
    folder is an error rather than silently ignored.
    """
    env = os.environ.get(MNIST_ENV)
    if env:
        if not Path(env).expanduser().is_dir():
            raise DataError(f"{MNIST_ENV}={env}: not a folder")
        return Path(env).expanduser().resolve()
    repo_root = Path(__file__).resolve().parents[2]
    candidates = [repo_root / ".." / "shared" / "data" / "mnist",
                  Path.cwd() / ".." / "shared" / "data" / "mnist",
                  Path.cwd() / "shared" / "data" / "mnist"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise DataError(f"no MNIST folder found (looked in {', '.join(str(c) for c in candidates)}); {MNIST_HINT}")


@register("mnist")
def load_mnist(cfg: DataConfig) -> DatasetSplit:
    """MNIST from ``cfg.path`` or :func:`default_mnist_dir`."""
    if cfg.path is None:
        cfg = dataclasses.replace(cfg, path=str(default_mnist_dir()))
    return _load_idx_dataset("mnist", _folder(cfg, MNIST_HINT), cfg, MNIST_HINT)


@register("fashion-mnist")
def load_fashion_mnist(cfg: DataConfig) -> DatasetSplit:
    """Fashion-MNIST (same IDX files as MNIST) from ``cfg.path``; there is no offline default."""
    if cfg.path is None:
        raise DataError("data.path is required for fashion-mnist")
    return _load_idx_dataset("fashion-mnist", _folder(cfg, ""), cfg, "")


# ------------------------------------------------------------------------------------------------- digits

@register("digits")
def load_digits(cfg: DataConfig) -> DatasetSplit:
    """scikit-learn's 8x8 digits (1,797 images), bundled with the library and so always offline.

    Values 0..16 are stored as uint8 0..255 (round(v * 255 / 16)) so :func:`batches` scales them like
    MNIST. Split 80/20 (1,437 / 360) by the fixed permutation. Because the DataConfig defaults
    (8,000 / 2,000) exceed what digits has, a request *equal to the default* means "all"; any other
    request above what is available is an error, as for the other datasets.
    """
    if cfg.path is not None:  # a folder given for data that has none is a mistake, not something to ignore
        raise DataError(f"data.path={cfg.path} is given, but the dataset digits is bundled with scikit-learn and "
                        f"reads no folder (leave out --data-path, or name the dataset the folder holds)")
    from sklearn.datasets import load_digits as sklearn_digits  # lazy: sklearn is slow to import

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train, test = _fixed_split(images, labels)
    defaults = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    n_train = 0 if cfg.n_train == defaults["n_train"] and cfg.n_train > len(train[1]) else cfg.n_train
    n_test = 0 if cfg.n_test == defaults["n_test"] and cfg.n_test > len(test[1]) else cfg.n_test
    return _make_split("digits", train, test, n_train, n_test, 10, "digits")


# ------------------------------------------------------------------------------------------------ CIFAR-10

def _numpy_reconstruct():
    try:  # numpy >= 1.26 (and 2.x, where numpy.core is deprecated)
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled CIFAR batch (a dict of arrays, lists and strings) refers to.

    The objects are returned from a fixed table instead of being imported by name, so nothing outside it
    can be reached, whatever the file says.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Protocol-2 pickles written by Python 3 encode bytes as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as in the official batches
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: refusing to unpickle global {module}.{name} "
                            "(CIFAR batches contain only arrays, lists and strings)") from None


def _unpickle_cifar(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean "not a CIFAR batch"
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (a {type(batch).__name__}, not a dict)")
    return batch


def _batch_field(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):  # the official files have bytes keys; accept str keys as well
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: CIFAR-10 batch has no {key!r} entry")


def _read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one batch file."""
    batch = _unpickle_cifar(path)
    data = _batch_field(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        labels = np.asarray(_batch_field(batch, "labels", path), dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' is not a list of integers") from None
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {labels.size} labels for {len(data)} images")
    _check_labels(labels, 10, str(path))
    # Rows store the 1024 red, then green, then blue values of a 32x32 image, i.e. channel-major.
    return data.reshape(-1, 3, 32, 32), labels


@register("cifar10")
def load_cifar10(cfg: DataConfig) -> DatasetSplit:
    """CIFAR-10 from the "python version" folder: ``data_batch_1..5`` (at least one) and ``test_batch``."""
    if cfg.path is None:
        raise DataError("data.path is required for cifar10")
    folder = _folder(cfg, "")
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
    if not train_files:
        raise DataError(f"{folder}: no CIFAR-10 training batch (data_batch_1 .. data_batch_5)")
    if not (folder / "test_batch").is_file():
        raise DataError(f"{folder / 'test_batch'}: file not found")
    parts = [_read_cifar_batch(p) for p in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = _read_cifar_batch(folder / "test_batch")
    return _make_split("cifar10", train, test, cfg.n_train, cfg.n_test, 10, f"cifar10 ({folder})")
