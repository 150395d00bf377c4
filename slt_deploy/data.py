"""The data stage: datasets as in-memory arrays, minibatches, and spike encodings.

Datasets (the :data:`DATASETS` registry):

* ``mnist`` / ``fashion-mnist`` -- the IDX files of the official distributions, raw or gzipped.
  With train files the official split is used; with only the ``t10k`` files (the offline default in
  ``../shared/data/mnist``) the 10,000 test images are split 80/20 by a fixed permutation.
* ``cifar10`` -- the official "CIFAR-10 python version" folder. Its batches are Python pickles, and
  unpickling can execute arbitrary code, so they are read with a restricted unpickler that resolves only
  the few numpy globals an array needs: a batch file is data, never a program, and is never executed.
* ``digits`` -- scikit-learn's bundled 8x8 digits (offline), split 80/20 by the same fixed permutation.

The fixed permutation uses its own seed (:data:`SPLIT_SEED`), not the run seed, so every run of every
search sees the same train/test split. A folder holding an ``MD5SUMS`` file is checked against it on load.

Every problem a user can cause (missing folder, corrupt file, too many samples requested...) raises
:class:`~slt_deploy.errors.DataError` with a one-line message naming the file or parameter.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import hashlib
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .config import DataConfig
from .errors import DataError

#: Seed of the fixed train/test permutation; independent of any run seed on purpose.
SPLIT_SEED = 20221023
#: Fraction of a single-file dataset that goes to the training split (10,000 -> 8,000 / 2,000).
TRAIN_FRACTION = (4, 5)
#: Environment variable overriding where the offline MNIST lives.
MNIST_ENV = "SLT_DEPLOY_MNIST"
MNIST_HINT = "MNIST is expected at ../shared/data/mnist or given with --data-path"
#: Latency threshold: half an 8-bit grey level, so every nonzero uint8 pixel spikes and zero never does.
LATENCY_THRESHOLD = 0.5 / 255
ENCODINGS = ("direct", "rate", "latency")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IDX_UBYTE = 0x08


# --------------------------------------------------------------------------------------------- containers

@dataclass(frozen=True, eq=False)  # eq=False: element-wise array comparison has no single truth value
class ArrayDataset:
    """A labelled dataset held in memory.

    ``images`` is uint8 (N, C, H, W) for image datasets (scaled to [0, 1] by :func:`batches`), or float32
    already in [0, 1]. ``labels`` is int64 (N,) with values in ``0 .. num_classes - 1``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self):
        # These are programming errors (loaders build the arrays), hence ValueError rather than DataError.
        if self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be (N, C, H, W), got shape {self.images.shape}")
        if self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"{self.name}: images must be uint8 or float32, got {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != np.int64:
            raise ValueError(f"{self.name}: labels must be int64 of shape ({len(self.images)},), "
                             f"got {self.labels.dtype} {self.labels.shape}")
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes={self.num_classes} must be >= 1")

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """(C, H, W) of one sample."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    train: ArrayDataset
    test: ArrayDataset


# ----------------------------------------------------------------------------------------------- registry

Loader = Callable[[DataConfig], DatasetSplit]
DATASETS: Dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader to :data:`DATASETS`; a name can be registered only once."""

    def wrap(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = fn
        return fn

    return wrap


def load_dataset(cfg: DataConfig) -> DatasetSplit:
    """Load the train/test split that ``cfg`` describes, truncated to ``cfg.n_train`` / ``cfg.n_test``."""
    try:
        loader = DATASETS[cfg.dataset]
    except KeyError:
        raise DataError(f"data.dataset={cfg.dataset!r} is unknown; valid datasets: "
                        f"{', '.join(sorted(DATASETS))}") from None
    return loader(cfg)


# ------------------------------------------------------------------------------------------- shared steps

def _fixed_split(images: np.ndarray, labels: np.ndarray) -> Tuple[Tuple[np.ndarray, np.ndarray],
                                                                   Tuple[np.ndarray, np.ndarray]]:
    """Split one pool of samples 80/20 by a permutation that never depends on the run seed."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    cut = len(labels) * TRAIN_FRACTION[0] // TRAIN_FRACTION[1]
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def _take(n: int, param: str, images: np.ndarray, labels: np.ndarray, source: str):
    """The first ``n`` samples (0 = all); asking for more than there are is an error, not a silent clamp."""
    if n == 0:
        return images, labels
    if n > len(labels):
        raise DataError(f"data.{param}={n} exceeds the {len(labels)} samples available in {source}")
    return images[:n], labels[:n]


def _make_split(name: str, train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray],
                n_train: int, n_test: int, num_classes: int, source: str) -> DatasetSplit:
    train = _take(n_train, "n_train", *train, source=f"the training split of {source}")
    test = _take(n_test, "n_test", *test, source=f"the test split of {source}")
    return DatasetSplit(
        train=ArrayDataset(name, np.ascontiguousarray(train[0]), train[1].astype(np.int64), num_classes),
        test=ArrayDataset(name, np.ascontiguousarray(test[0]), test[1].astype(np.int64), num_classes),
    )


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError(f"{where}: label {int(bad)} is out of range 0..{num_classes - 1}")


def _folder(cfg: DataConfig, hint: str) -> Path:
    """The dataset folder from ``cfg.path``, checked to exist (and its MD5SUMS, if any, verified)."""
    folder = Path(cfg.path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder does not exist{'; ' + hint if hint else ''}")
    _verify_md5sums_cached(folder)
    return folder


# ---------------------------------------------------------------------------------------------- checksums

def _md5sums_entries(folder: Path) -> List[Tuple[str, str]]:
    """(hex digest, file name) pairs of ``folder/MD5SUMS`` in md5sum's format ("HASH  NAME" or "HASH *NAME")."""
    listing = folder / "MD5SUMS"
    try:
        text = listing.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{listing}: cannot read ({exc})") from None
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{listing}:{lineno}: not an md5sum line ('HASH  FILE'): {line.strip()!r}")
        entries.append((digest, parts[1].lstrip("*")))
    return entries


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)  # an integrity check, not a security one
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return h.hexdigest()


def verify_md5sums(folder: str | Path) -> None:
    """Check every file listed in ``folder/MD5SUMS`` that exists; a mismatch raises DataError naming it.

    Listed files that are absent are skipped: a folder may hold only part of a distribution (e.g. just
    the t10k files), and a missing file the loader needs is reported by the loader itself.
    """
    folder = Path(folder)
    for expected, name in _md5sums_entries(folder):
        path = folder / name
        if not path.is_file():
            continue
        actual = _md5(path)
        if actual != expected:
            raise DataError(f"{path}: MD5 checksum mismatch (expected {expected}, got {actual}); "
                            "the file is corrupt or was replaced")


# Verifications that passed, keyed by the (path, size, mtime) of MD5SUMS and every file it lists, so
# repeated loads in one process do not re-hash unchanged files but a replaced file is checked again.
_VERIFIED: set = set()


def _verify_md5sums_cached(folder: Path) -> None:
    listing = folder / "MD5SUMS"
    if not listing.is_file():
        return
    key = []
    for path in [listing] + [folder / name for _, name in _md5sums_entries(folder)]:
        try:
            st = path.stat()
        except OSError:
            continue  # absent files are skipped by verify_md5sums too
        key.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    key = tuple(key)
    if key not in _VERIFIED:
        verify_md5sums(folder)
        _VERIFIED.add(key)


# ---------------------------------------------------------------------------------------------------- IDX

def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (the MNIST format), gzipped or raw.

    Compression is detected by the gzip magic bytes (1f 8b), not the file name, so a renamed file still
    reads. The header is validated and the payload must have exactly the size it declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (EOFError, zlib.error) as exc:  # a truncated or corrupt gzip stream
        raise DataError(f"{path}: corrupt gzip data ({exc})") from None

    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex() or 'empty'})")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != IDX_UBYTE:
        raise DataError(f"{path}: IDX data type 0x{dtype_code:02x} is not supported (only unsigned byte, 0x08)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions, {len(raw)} bytes in the file)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected, found = int(np.prod(dims, dtype=np.int64)), len(raw) - header
    if found < expected:
        raise DataError(f"{path}: truncated IDX file (expected {expected} bytes of data, found {found})")
    if found > expected:
        raise DataError(f"{path}: IDX file has {found - expected} bytes after the {expected} its header declares")
    # bytearray makes the array writable (np.frombuffer over bytes would be read-only).
    return np.frombuffer(bytearray(raw[header:]), dtype=np.uint8).reshape(dims)


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
    repo_root = Path(__file__).resolve().parents[1]
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


# ------------------------------------------------------------------------------------- batches and encoding

def batches(ds: ArrayDataset, batch_size: int, shuffle: bool,
            generator: Optional[torch.Generator] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(x, y)``: x float32 (B, C, H, W) in [0, 1] (uint8 / 255), y int64 (B,).

    Every sample appears exactly once (the last batch may be smaller). When ``shuffle``, the order is
    ``torch.randperm(len(ds), generator=generator)``, so a seeded generator gives a reproducible order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(ds)
    order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = torch.from_numpy(ds.images[idx])  # fancy indexing copies, so the tensor owns its memory
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        yield x, torch.from_numpy(ds.labels[idx])


def encode(x: torch.Tensor, encoding: str, timesteps: int,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Turn a batch ``x`` in [0, 1] into a (T, *x.shape) input sequence.

    * ``direct``: x itself at every step (real-valued input to the first layer, as in Kim et al.).
    * ``rate``: Bernoulli spikes with probability x per step, from ``torch.rand(generator=generator)``;
      the draws are made on the generator's device so a seed gives the same spikes on CPU and GPU.
    * ``latency``: one spike per nonzero pixel at step round((T - 1) * (1 - x)) (brighter = earlier,
      x = 1 at step 0), via ``snntorch.spikegen.latency`` with linear, normalize and clip; pixels below
      :data:`LATENCY_THRESHOLD` (half an 8-bit grey level, so in practice only zeros) never spike.
    """
    if encoding not in ENCODINGS:
        raise DataError(f"data.encoding={encoding!r} is not one of: {', '.join(ENCODINGS)}")
    if timesteps < 1:
        raise DataError(f"data.timesteps={timesteps} must be >= 1")
    if encoding == "direct":
        return x.unsqueeze(0).repeat(timesteps, *([1] * x.dim()))
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{encoding} encoding needs inputs in [0, 1], got [{x.min():.3g}, {x.max():.3g}]")
    if encoding == "rate":
        device = generator.device if generator is not None else x.device
        u = torch.rand((timesteps, *x.shape), generator=generator, device=device).to(x.device)
        return (u < x).to(x.dtype)
    if x.numel() == 0:  # snntorch's latency takes min/max of its input, which an empty tensor lacks
        return x.new_zeros((timesteps, *x.shape))
    from snntorch import spikegen  # lazy: snntorch pulls in much at import time

    return spikegen.latency(x, num_steps=timesteps, threshold=LATENCY_THRESHOLD, linear=True,
                            normalize=True, clip=True).to(x.dtype)
