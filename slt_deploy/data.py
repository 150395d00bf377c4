"""The data stage: datasets as in-memory arrays, minibatches, and spike encodings.

Datasets (the :data:`DATASETS` registry):

* ``mnist`` / ``fashion-mnist`` -- the IDX files of the official distributions, raw or gzipped.
  With train files the official split is used; with only the ``t10k`` files (the offline default in
  ``../shared/data/mnist``) the 10,000 test images are split 80/20 by a fixed permutation.
* ``cifar10`` -- the official "CIFAR-10 python version" folder. Its batches are Python pickles, and
  unpickling can execute arbitrary code, so they are read with a restricted unpickler that resolves only
  the few numpy globals an array needs: a batch file is data, never a program, and is never executed.
* ``digits`` -- scikit-learn's bundled 8x8 digits (offline), split 80/20 by the same fixed permutation.

Event datasets (already spikes; they need ``data.encoding=events``), binned at load time into
``data.timesteps`` binary frames of two polarity channels (0 = OFF, 1 = ON), see :func:`events_to_frames`:

* ``nmnist`` (2x34x34), ``dvsgesture`` (2x32x32, downsampled from 128x128) and ``cifar10dvs`` (2x48x48,
  downsampled from 128x128) -- read from the folders that ``tonic`` downloads and extracts, with tonic's own
  file readers; nothing is ever downloaded.
* ``event-mnist`` (2x34x34) -- the MNIST images of the ``mnist`` loader turned into N-MNIST-style events
  offline by a simulated DVS camera making three saccades (:func:`mnist_to_events`).

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
from .errors import DataError, MissingDependencyError

#: Seed of the fixed train/test permutation; independent of any run seed on purpose.
SPLIT_SEED = 20221023
#: Fraction of a single-file dataset that goes to the training split (10,000 -> 8,000 / 2,000).
TRAIN_FRACTION = (4, 5)
#: Environment variable overriding where the offline MNIST lives.
MNIST_ENV = "SLT_DEPLOY_MNIST"
MNIST_HINT = "MNIST is expected at ../shared/data/mnist or given with --data-path"
#: Latency threshold: half an 8-bit grey level, so every nonzero uint8 pixel spikes and zero never does.
LATENCY_THRESHOLD = 0.5 / 255
#: Encodings of image datasets; ``events`` is the one encoding of event datasets (already spikes).
IMAGE_ENCODINGS = ("direct", "rate", "latency")
ENCODINGS = IMAGE_ENCODINGS + ("events",)

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
IDX_UBYTE = 0x08


# --------------------------------------------------------------------------------------------- containers

@dataclass(frozen=True, eq=False)  # eq=False: element-wise array comparison has no single truth value
class ArrayDataset:
    """A labelled dataset held in memory.

    ``images`` is uint8 (N, C, H, W) for image datasets (scaled to [0, 1] by :func:`batches`), or float32
    already in [0, 1]; for event datasets it is uint8 (N, T, C, H, W) of binary frames (0/1 spikes, used as
    they are). ``labels`` is int64 (N,) with values in ``0 .. num_classes - 1``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self):
        # These are programming errors (loaders build the arrays), hence ValueError rather than DataError.
        if self.images.ndim not in (4, 5):
            raise ValueError(f"{self.name}: images must be (N, C, H, W) or event frames (N, T, C, H, W), "
                             f"got shape {self.images.shape}")
        if self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"{self.name}: images must be uint8 or float32, got {self.images.dtype}")
        if self.images.ndim == 5 and self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: event frames must be uint8 spikes (0/1), got {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != np.int64:
            raise ValueError(f"{self.name}: labels must be int64 of shape ({len(self.images)},), "
                             f"got {self.labels.dtype} {self.labels.shape}")
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes={self.num_classes} must be >= 1")

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """(C, H, W) of one sample (of one time bin, for event data)."""
        c, h, w = self.images.shape[-3:]
        return int(c), int(h), int(w)

    @property
    def is_events(self) -> bool:
        """True for event data: (N, T, C, H, W) binary frames, fed as they are (``data.encoding=events``)."""
        return self.images.ndim == 5

    @property
    def timesteps(self) -> Optional[int]:
        """The number of time bins T of event data; None for images (any T, set by the encoding)."""
        return int(self.images.shape[1]) if self.is_events else None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    train: ArrayDataset
    test: ArrayDataset


# ----------------------------------------------------------------------------------------------- registry

Loader = Callable[[DataConfig], DatasetSplit]
DATASETS: Dict[str, Loader] = {}
#: The registered datasets that are event data (binary frames, ``data.encoding=events``).
EVENT_DATASETS: set = set()


def register(name: str, events: bool = False) -> Callable[[Loader], Loader]:
    """Decorator adding a loader to :data:`DATASETS` (``events``: it returns event frames); a name can be
    registered only once."""

    def wrap(fn: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASETS[name] = fn
        if events:
            EVENT_DATASETS.add(name)
        return fn

    return wrap


def check_encoding(cfg: DataConfig) -> None:
    """Event datasets need ``data.encoding=events`` and image datasets any other encoding (checked before
    anything is read, so the mistake costs nothing)."""
    if cfg.dataset in EVENT_DATASETS and cfg.encoding != "events":
        raise DataError(f"data.dataset={cfg.dataset} is event data (already spikes), not images: "
                        f"set data.encoding=events, not {cfg.encoding}")
    if cfg.dataset not in EVENT_DATASETS and cfg.encoding == "events":
        raise DataError(f"data.encoding=events needs an event dataset ({', '.join(sorted(EVENT_DATASETS))}); "
                        f"data.dataset={cfg.dataset} is images: use {', '.join(IMAGE_ENCODINGS)}")


def load_dataset(cfg: DataConfig) -> DatasetSplit:
    """Load the train/test split that ``cfg`` describes, truncated to ``cfg.n_train`` / ``cfg.n_test``."""
    try:
        loader = DATASETS[cfg.dataset]
    except KeyError:
        raise DataError(f"data.dataset={cfg.dataset!r} is unknown; valid datasets: "
                        f"{', '.join(sorted(DATASETS))}") from None
    check_encoding(cfg)
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


# -------------------------------------------------------------------------------------------- event data

def events_to_frames(events: np.ndarray, sensor_size: Tuple[int, int, int], timesteps: int,
                     target_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Bin one recording into (T, 2, H, W) uint8 frames of binary spikes with tonic.

    ``events`` is a structured array with fields x, y, t, p (what tonic's readers return) and
    ``sensor_size`` is (W, H, 2), tonic's order. With ``target_size`` (W', H') the coordinates are first
    scaled by tonic's ``Downsample`` (x' = floor(x * W' / W)). ``tonic.transforms.ToFrame(n_time_bins=T)``
    then cuts the recording into T windows [start, end) of (t_last - t_first) // T each, starting at the first
    event (tonic's rule: the remainder at the end, the last event included, falls in no window), and counts
    the events per polarity and pixel. The counts are clipped to {0, 1}, so the network input is binary spikes:
    a pixel that fired in a window spikes once in that step. Channel 0 is OFF (p = 0), channel 1 is ON.
    """
    from tonic import transforms  # lazy: tonic is only needed for event datasets

    w, h, p = sensor_size
    if target_size is not None:
        events = transforms.Downsample(sensor_size=tuple(sensor_size), target_size=tuple(target_size))(events)
        w, h = target_size
    if len(events) == 0:  # ToFrame returns float frames in (T, P, W, H) order for an empty recording
        return np.zeros((timesteps, p, h, w), np.uint8)
    t = events["t"].astype(np.int64)
    if np.any(t[1:] < t[:-1]):  # ToFrame's windows are found by binary search on the timestamps
        events = events[np.argsort(t, kind="stable")]
    frames = transforms.ToFrame(sensor_size=(w, h, p), n_time_bins=timesteps)(events)
    return (frames > 0).astype(np.uint8)


def _check_events(events: np.ndarray, sensor_size: Tuple[int, int, int], path: Path, what: str) -> np.ndarray:
    """Events must lie on the sensor and have polarity 0/1; anything else means the wrong kind of file."""
    w, h, _ = sensor_size
    if len(events):
        x, y, p = (events[k].astype(np.int64) for k in ("x", "y", "p"))
        off = np.flatnonzero((x < 0) | (x >= w) | (y < 0) | (y >= h))
        if off.size:
            i = off[0]
            raise DataError(f"{path}: event {i} at x={x[i]}, y={y[i]} is outside the {w}x{h} sensor of {what}; "
                            f"not a {what} recording")
        bad = np.flatnonzero((p < 0) | (p > 1))
        if bad.size:
            raise DataError(f"{path}: event {bad[0]} has polarity {p[bad[0]]}, not 0 or 1; not a {what} recording")
    return events


def _event_root(cfg: DataConfig, tonic_folder: str, expected: str) -> Path:
    """``data.path`` itself, or its ``tonic_folder`` subfolder when it is the folder tonic saved to."""
    if cfg.path is None:
        raise DataError(f"data.path is required for {cfg.dataset}: the folder holding tonic's {tonic_folder}/ "
                        f"(expected {expected})")
    folder = _folder(cfg, f"expected tonic's {tonic_folder} folder ({expected})")
    return folder / tonic_folder if (folder / tonic_folder).is_dir() else folder


def _class_mixed(paths: List[Path], labels: List[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted files in a fixed permuted order: the listings are grouped by class, and ``n_train`` /
    ``n_test`` take the first files, which must not all be of one class."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(paths))
    return np.array([str(p) for p in paths], dtype=object)[order], np.asarray(labels, np.int64)[order]


def _event_split(cfg: DataConfig, train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray],
                 read: Callable[[Path], np.ndarray], frame_shape: Tuple[int, int, int], num_classes: int,
                 source: str) -> DatasetSplit:
    """Read and bin only the ``n_train`` / ``n_test`` recordings kept from each (paths, labels) listing."""
    parts = []
    for (paths, labels), n, param, which in ((train, cfg.n_train, "n_train", "training"),
                                             (test, cfg.n_test, "n_test", "test")):
        paths, labels = _take(n, param, paths, labels, source=f"the {which} split of {source}")
        frames = [read(Path(p)) for p in paths]
        images = np.stack(frames) if frames else np.zeros((0, cfg.timesteps, *frame_shape), np.uint8)
        parts.append(ArrayDataset(cfg.dataset, images, labels.astype(np.int64), num_classes))
    return DatasetSplit(*parts)


def _listing(folder: Path, pattern: str, label: Callable[[Path], int], expected: str):
    files = sorted(folder.glob(pattern))
    if not files:
        raise DataError(f"{folder}: no recordings found (expected {expected})")
    return _class_mixed(files, [label(f) for f in files])


# N-MNIST: tonic's NMNIST folder is the official Train/ and Test/ folders, one subfolder per digit.
NMNIST_SENSOR = (34, 34, 2)
NMNIST_EXPECTED = "Train/<digit>/*.bin and Test/<digit>/*.bin"


def read_nmnist_bin(path: Path) -> np.ndarray:
    """The events of one N-MNIST .bin file, read by ``tonic.io.read_mnist_file`` (5 bytes per event)."""
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if size % 5:
        raise DataError(f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events (truncated file?)")
    return _check_events(read_mnist_file(str(path), dtype=NMNIST.dtype), NMNIST_SENSOR, path, "N-MNIST")


def _digit_label(path: Path) -> int:
    if not path.parent.name[-1:].isdigit():  # tonic takes the last character of the folder name
        raise DataError(f"{path.parent}: N-MNIST folder name must end with its digit ({NMNIST_EXPECTED})")
    return int(path.parent.name[-1])


@register("nmnist", events=True)
def load_nmnist(cfg: DataConfig) -> DatasetSplit:
    """N-MNIST events (2x34x34, 10 classes) from tonic's NMNIST folder (Train/ and Test/ of <digit>/*.bin)."""
    root = _event_root(cfg, "NMNIST", NMNIST_EXPECTED)
    train, test = (_listing(root / split, "*/*.bin", _digit_label, NMNIST_EXPECTED) for split in ("Train", "Test"))

    def read(path: Path) -> np.ndarray:
        return events_to_frames(read_nmnist_bin(path), NMNIST_SENSOR, cfg.timesteps)

    return _event_split(cfg, train, test, read, (2, 34, 34), 10, f"nmnist ({root})")


# DVS Gesture: tonic's preprocessed version, one (N, 4) .npy of x, y, p, t (ms) per gesture, named by label.
DVSGESTURE_SENSOR = (128, 128, 2)
#: Recordings are downsampled 4x: 32x32 keeps the arm movements and makes the input 16x smaller.
DVSGESTURE_SIZE = (32, 32)
DVSGESTURE_EXPECTED = "ibmGestureTrain/<user>_<lighting>/<label>.npy and ibmGestureTest/<user>_<lighting>/<label>.npy"


def read_dvsgesture_npy(path: Path) -> np.ndarray:
    """The events of one DVS Gesture .npy file, converted as ``tonic.datasets.DVSGesture`` does (ms -> us)."""
    from numpy.lib import recfunctions
    from tonic.datasets import DVSGesture

    try:
        raw = np.load(path, allow_pickle=False)  # a user file is data: never unpickled
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(raw, np.ndarray) or raw.ndim != 2 or raw.shape[1] != 4 or raw.dtype.kind not in "iuf":
        raise DataError(f"{path}: expected an (N, 4) numeric array of events x, y, p, t in ms, "
                        f"got {getattr(raw, 'dtype', type(raw).__name__)} {getattr(raw, 'shape', '')}")
    events = raw.astype(np.float64 if raw.dtype.kind == "f" else np.int64)  # room for ms -> us
    events[:, 3] *= 1000
    return _check_events(recfunctions.unstructured_to_structured(events, DVSGesture.dtype), DVSGESTURE_SENSOR,
                         path, "DVS Gesture")


def _gesture_label(path: Path) -> int:
    if not path.stem.isdigit() or int(path.stem) > 10:
        raise DataError(f"{path}: a DVS Gesture file is named by its label 0..10 ({DVSGESTURE_EXPECTED})")
    return int(path.stem)


@register("dvsgesture", events=True)
def load_dvsgesture(cfg: DataConfig) -> DatasetSplit:
    """DVS Gesture events (11 classes, downsampled to 2x32x32) from tonic's DVSGesture folder."""
    root = _event_root(cfg, "DVSGesture", DVSGESTURE_EXPECTED)
    train, test = (_listing(root / split, "*/*.npy", _gesture_label, DVSGESTURE_EXPECTED)
                   for split in ("ibmGestureTrain", "ibmGestureTest"))

    def read(path: Path) -> np.ndarray:
        return events_to_frames(read_dvsgesture_npy(path), DVSGESTURE_SENSOR, cfg.timesteps, DVSGESTURE_SIZE)

    return _event_split(cfg, train, test, read, (2, *DVSGESTURE_SIZE[::-1]), 11, f"dvsgesture ({root})")


# CIFAR10-DVS: tonic's version, AEDAT4 files in one folder per class; no official train/test split.
CIFAR10DVS_SENSOR = (128, 128, 2)
#: Downsampled to 48x48 (x 3/8), the input size common in CIFAR10-DVS papers.
CIFAR10DVS_SIZE = (48, 48)
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10DVS_EXPECTED = "<class>/*.aedat4 for the classes airplane .. truck"


def read_cifar10dvs_aedat4(path: Path) -> np.ndarray:
    """The events of one CIFAR10-DVS .aedat4 file, read by ``tonic.io.read_aedat4`` (fields t, x, y, p)."""
    try:
        import aedat  # noqa: F401 -- tonic's AEDAT4 reader needs it but tonic does not install it
    except ImportError:
        raise MissingDependencyError("reading CIFAR10-DVS .aedat4 files needs the aedat package "
                                     "(pip install aedat)") from None
    from tonic.io import read_aedat4

    try:
        events = read_aedat4(str(path))
    except Exception as exc:  # the Rust decoder and tonic raise plain exceptions for a bad file
        raise DataError(f"{path}: not a readable AEDAT4 event file ({type(exc).__name__}: {exc})") from None
    if events.dtype.names is None or len(events.dtype.names) != 4:
        raise DataError(f"{path}: the AEDAT4 event stream has fields {events.dtype.names}, not t, x, y, on")
    events.dtype.names = ["t", "x", "y", "p"]  # as tonic.datasets.CIFAR10DVS renames them
    return _check_events(events, CIFAR10DVS_SENSOR, path, "CIFAR10-DVS")


@register("cifar10dvs", events=True)
def load_cifar10dvs(cfg: DataConfig) -> DatasetSplit:
    """CIFAR10-DVS events (10 classes, downsampled to 2x48x48) from tonic's CIFAR10DVS folder, split 80/20."""
    root = _event_root(cfg, "CIFAR10DVS", CIFAR10DVS_EXPECTED)
    paths, labels = [], []
    for label, name in enumerate(CIFAR10DVS_CLASSES):
        found = sorted((root / name).glob("*.aedat4"))
        paths += [str(p) for p in found]
        labels += [label] * len(found)
    if not paths:
        raise DataError(f"{root}: no recordings found (expected {CIFAR10DVS_EXPECTED})")
    train, test = _fixed_split(np.array(paths, dtype=object), np.array(labels, np.int64))

    def read(path: Path) -> np.ndarray:
        return events_to_frames(read_cifar10dvs_aedat4(path), CIFAR10DVS_SENSOR, cfg.timesteps, CIFAR10DVS_SIZE)

    return _event_split(cfg, train, test, read, (2, *CIFAR10DVS_SIZE[::-1]), 10, f"cifar10dvs ({root})")


# event-mnist: N-MNIST's recording set-up simulated on the MNIST images, offline and deterministic.
EVENT_MNIST_SIZE = 34
#: Path of the digit's top-left corner in the 34x34 canvas, (x, y) pixels: three straight saccades of equal
#: duration around a triangle, like the three saccades of N-MNIST's ATIS camera (Orchard et al. 2015), whose
#: 34x34 frame leaves the 28x28 digit 6 pixels of travel.
EVENT_MNIST_SACCADES = ((0.0, 0.0), (3.0, 6.0), (6.0, 0.0), (0.0, 0.0))
#: DVS pixel: log(intensity + offset) (the offset is the dark level, so black pixels are not infinitely
#: sensitive); an event when it has moved by more than the contrast threshold since the pixel's last event.
EVENT_MNIST_LOG_OFFSET = 0.1
EVENT_MNIST_THRESHOLD = 0.2
#: Positions sampled along the 19-pixel path (at least this many, a whole number per time bin): under half a
#: pixel of motion between samples, so a moving edge is seen crossing every pixel.
EVENT_MNIST_SAMPLES = 48


def _saccade_offset(s: float) -> Tuple[float, float]:
    """(x, y) of the digit at time s in [0, 1] along :data:`EVENT_MNIST_SACCADES`."""
    k = min(int(s * 3), 2)
    u = s * 3 - k
    (x0, y0), (x1, y1) = EVENT_MNIST_SACCADES[k], EVENT_MNIST_SACCADES[k + 1]
    return x0 + u * (x1 - x0), y0 + u * (y1 - y0)


def _log_canvas(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """log(I + offset) of (n, 28, 28) intensities in [0, 1] placed at (x, y) in the 34x34 canvas, with
    bilinear interpolation for subpixel positions."""
    n, h, w = img.shape
    canvas = np.zeros((n, EVENT_MNIST_SIZE + 1, EVENT_MNIST_SIZE + 1), np.float32)  # +1: the interpolation
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fx, fy = np.float32(x - ix), np.float32(y - iy)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if wx * wy:
                canvas[:, iy + dy:iy + dy + h, ix + dx:ix + dx + w] += (wx * wy) * img
    out = canvas[:, :EVENT_MNIST_SIZE, :EVENT_MNIST_SIZE]
    out += np.float32(EVENT_MNIST_LOG_OFFSET)
    return np.log(out)


def mnist_to_events(images: np.ndarray, timesteps: int, chunk: int = 1000) -> np.ndarray:
    """N-MNIST-style event frames of (N, 28, 28) (or (N, 1, 28, 28)) uint8 images: (N, T, 2, 34, 34) uint8
    in {0, 1}, channel 0 OFF and 1 ON (tonic's polarity order).

    A simulated DVS camera watches the digit, placed in a 34x34 canvas, move along three saccades
    (:data:`EVENT_MNIST_SACCADES`), sampled at M = T * ceil(48 / T) evenly spaced positions. Each pixel keeps
    the log intensity log(I + 0.1) (I in [0, 1]) of its last event, starting from the first position's
    image; at each sample it emits ON when the log intensity has risen by more than the contrast threshold 0.2
    since then, OFF when it has fallen by more, and remembers the new level. Time bin t collects samples
    t*M/T .. (t+1)*M/T - 1, and a pixel spikes in a bin if it fired at any of them. Deterministic (no random
    draws) and vectorized over the images, ``chunk`` at a time; a blank image gives no events.
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"mnist_to_events needs (N, 28, 28) images, got shape {images.shape}")
    if timesteps < 1:
        raise DataError(f"data.timesteps={timesteps} must be >= 1")
    per_bin = -(-EVENT_MNIST_SAMPLES // timesteps)
    samples = per_bin * timesteps
    offsets = [_saccade_offset((j + 1) / samples) for j in range(samples)]
    threshold = np.float32(EVENT_MNIST_THRESHOLD)
    out = np.zeros((len(images), timesteps, 2, EVENT_MNIST_SIZE, EVENT_MNIST_SIZE), np.uint8)
    for start in range(0, len(images), chunk):
        img = images[start:start + chunk].astype(np.float32) / np.float32(255)
        block = out[start:start + chunk]
        reference = _log_canvas(img, *EVENT_MNIST_SACCADES[0])
        for j, (x, y) in enumerate(offsets):
            level = _log_canvas(img, x, y)
            change = level - reference
            on, off = change > threshold, change < -threshold
            fired = on | off
            np.copyto(reference, level, where=fired)
            block[:, j // per_bin, 1] |= on
            block[:, j // per_bin, 0] |= off
    return out


@register("event-mnist", events=True)
def load_event_mnist(cfg: DataConfig) -> DatasetSplit:
    """MNIST as N-MNIST-style events (2x34x34), simulated offline from the mnist loader's images."""
    split = load_mnist(dataclasses.replace(cfg, dataset="mnist", encoding="direct"))

    def convert(ds: ArrayDataset) -> ArrayDataset:
        return ArrayDataset("event-mnist", mnist_to_events(ds.images, cfg.timesteps), ds.labels, ds.num_classes)

    return DatasetSplit(convert(split.train), convert(split.test))


# ------------------------------------------------------------------------------------- batches and encoding

def batches(ds: ArrayDataset, batch_size: int, shuffle: bool,
            generator: Optional[torch.Generator] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches ``(x, y)``: x float32 (B, C, H, W) in [0, 1] (uint8 / 255), y int64 (B,).

    For event data x is float32 (B, T, C, H, W) of the 0/1 spikes as they are (not scaled).
    Every sample appears exactly once (the last batch may be smaller). When ``shuffle``, the order is
    ``torch.randperm(len(ds), generator=generator)``, so a seeded generator gives a reproducible order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    n = len(ds)
    order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
    scale = ds.images.dtype == np.uint8 and not ds.is_events
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        x = torch.from_numpy(ds.images[idx])  # fancy indexing copies, so the tensor owns its memory
        x = x.float().div_(255.0) if scale else x.float()
        yield x, torch.from_numpy(ds.labels[idx])


def encode(x: torch.Tensor, encoding: str, timesteps: int,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Turn a batch ``x`` in [0, 1] into a (T, *x.shape) input sequence.

    * ``events``: x is already a spike sequence, (B, T, C, H, W) event frames from :func:`batches`; it is
      returned as (T, B, C, H, W). Its bins are fixed when the dataset is loaded (``data.timesteps``); a
      smaller ``timesteps`` takes the first bins (the start of the recording: what Early-Time's outputs
      "accumulated over steps 1..t" see), a larger one is an error.
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
    if encoding == "events":
        if x.dim() != 5:
            raise DataError(f"data.encoding=events needs event frames (B, T, C, H, W), got a batch of shape "
                            f"{tuple(x.shape)}: image data takes {', '.join(IMAGE_ENCODINGS)}")
        if x.shape[1] < timesteps:
            raise DataError(f"data.timesteps={timesteps} exceeds the {x.shape[1]} time bins of the event data; "
                            f"event data is binned when loaded, so load it with data.timesteps={timesteps}")
        return x[:, :timesteps].transpose(0, 1).contiguous()
    if x.dim() == 5:
        raise DataError(f"data.encoding={encoding} is for images, but the batch is event frames "
                        f"{tuple(x.shape)} (B, T, C, H, W): set data.encoding=events")
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
