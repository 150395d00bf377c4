"""Datasets as in-memory arrays, the dataset registry, and the split, folder and checksum steps every loader shares."""


import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from ..limits import check_elements



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
#: The registered datasets whose kind (images or event frames) is told by the user's file, checked on load.
FILE_KIND_DATASETS: set = {"npz", "imagefolder"}


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
    anything is read, so the mistake costs nothing); a user's file is checked by its loader."""
    if cfg.dataset in FILE_KIND_DATASETS:
        return
    if cfg.dataset in EVENT_DATASETS and cfg.encoding != "events":
        raise DataError(f"data.dataset={cfg.dataset} is event data (already spikes), not images: "
                        f"set data.encoding=events, not {cfg.encoding}")
    if cfg.dataset not in EVENT_DATASETS and cfg.encoding == "events":
        raise DataError(f"data.encoding=events needs an event dataset ({', '.join(sorted(EVENT_DATASETS))}); "
                        f"data.dataset={cfg.dataset} is images: use {', '.join(IMAGE_ENCODINGS)}")


def describe_data(cfg: DataConfig) -> str:
    """The data ``cfg`` names, as an error message says it: "the dataset mnist", "the arrays in data.npz"."""
    if cfg.dataset == "npz":
        return f"the .npz file {cfg.path}"
    if cfg.dataset == "imagefolder":
        return f"the image folder {cfg.path}"
    return f"the dataset {cfg.dataset}" + (f" in {cfg.path}" if cfg.path else "")


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


def npy_declared(stream, path: Path, what: str):
    """(shape, dtype) that a .npy stream (a file, or an .npz member) declares in its header, read without the
    data; the element count is checked against the limit (``--max-elements``) before anything is allocated
    (numpy allocates the declared size before it reads). The stream is left at the start of the data."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(stream)
        readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
        if version not in readers:
            raise DataError(f"{path}: {what} is in .npy format version {version[0]}.{version[1]}; "
                            f"save it with numpy.save / numpy.savez (format 1.0 or 2.0)")
        shape, _, dtype = readers[version](stream)
    except ValueError as exc:  # a bad magic string or header
        raise DataError(f"{path}: {what} is not a readable .npy array ({str(exc).splitlines()[0]})") from None
    check_elements(math.prod(shape), str(path), f"{what} of shape {shape}")
    return shape, dtype


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
