"""The user's own data: ``.npz`` arrays and folders of class sub-folders of images; training-split fingerprints.

* ``npz`` -- one ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (read with
  ``allow_pickle=False``). ``x`` is images, (N, H, W) or (N, C, H, W), uint8 (0..255) or float (used as they
  are), or spike/event tensors (N, T, C, H, W) of 0/1 values, which take ``data.encoding=events``.
  Labels are integers 0..K-1; K is the largest label + 1.
* ``imagefolder`` -- a folder with one sub-folder of images per class (``cat/001.png``...), class index =
  sorted sub-folder name; ``train/`` and ``test/`` sub-folders, when present, are the split, else the fixed
  80/20 split of every loader. Images are read with Pillow and must share one size.

:func:`infer_dataset` picks these loaders from ``--data-path`` alone (a ``.npz`` file, a folder of class
folders), so ``--data-path data.npz`` is enough.

Fingerprints. A ticket records a fingerprint of the training split it was searched on
(:func:`fingerprint`): the number of samples, a sha256 of them all, and one 64-bit hash per sample (BLAKE2b of
the sample's stored bytes). :func:`check_overlap` counts the evaluation samples whose hash is among them and
refuses an overlap unless told to allow it, in which case the caller labels every output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..config import DataConfig
from ..errors import DataError, SltError
from .base import FILE_KIND_DATASETS, ArrayDataset, DatasetSplit, _check_labels, _fixed_split, _make_split, \
    npy_declared, register

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")


# -------------------------------------------------------------------------------------------------- npz

def _npz_x(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "uif b":
        raise DataError(f"{path}: {key} has dtype {x.dtype}; expected numbers")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) grey images
    if x.ndim == 5:  # (N, T, C, H, W) spikes
        if x.size and not bool(np.isin(x, (0, 1)).all()):
            raise DataError(f"{path}: {key} is 5-D (N, T, C, H, W) spike data but holds values other than 0 and 1")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if x.ndim != 4:
        raise DataError(f"{path}: {key} has shape {x.shape}; expected images (N, H, W) or (N, C, H, W), or "
                        f"spikes (N, T, C, H, W)")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind in "ub" or x.dtype.kind == "i":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{path}: {key} is integer but outside 0..255; give uint8 images or floats")
        return np.ascontiguousarray(x, dtype=np.uint8)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not bool(np.isfinite(x).all()):
        raise DataError(f"{path}: {key} has NaN or infinite values")
    return x


def _declared(f, path: Path, key: str):
    """(shape, dtype) that member ``key`` of an open ``.npz`` declares, read and checked without its data."""
    with f.zip.open(key + ".npy") as member:
        return npy_declared(member, path, key)


def read_npz(path: str | Path):
    """(x_train, y_train, x_test, y_test) of a user's ``.npz``, checked; DataError names the file and key."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {', '.join(missing)}; an .npz needs "
                                f"{', '.join(NPZ_KEYS)} (it has {', '.join(f.files) or 'none'})")
            for key in NPZ_KEYS:
                _declared(f, path, key)
            arrays = {k: f[k] for k in NPZ_KEYS}
    except SltError:
        raise
    except ValueError as exc:  # object arrays need pickle, which is never allowed
        raise DataError(f"{path}: cannot read without pickle ({str(exc).splitlines()[0]})") from None
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        x = _npz_x(path, f"x_{split}", x)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{path}: y_{split} must be a 1-D integer array of class indices, got "
                            f"{y.dtype} {y.shape}")
        if len(y) != len(x):
            raise DataError(f"{path}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if y.size and y.min() < 0:
            raise DataError(f"{path}: y_{split} has a negative label {int(y.min())}")
        out += [x, y.astype(np.int64)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DataError(f"{path}: x_train samples have shape {out[0].shape[1:]}, x_test {out[2].shape[1:]}")
    return tuple(out)


def npz_is_events(path: str | Path) -> bool:
    """Whether the ``.npz``'s x_train is 5-D spikes, from its header alone (a damaged file is refused later,
    by :func:`read_npz`, with the reason)."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            return "x_train" in f.files and len(_declared(f, path, "x_train")[0]) == 5
    except SltError:
        raise
    except Exception:
        return False


@register("npz")
def load_npz(cfg: DataConfig) -> DatasetSplit:
    """your arrays: --data-path FILE.npz with x_train, y_train, x_test, y_test (images or (N,T,C,H,W) spikes)"""
    if not cfg.path:
        raise DataError("data.dataset=npz needs --data-path FILE.npz")
    x_train, y_train, x_test, y_test = read_npz(cfg.path)
    events = x_train.ndim == 5
    if events != (cfg.encoding == "events"):
        raise DataError(f"{cfg.path}: x_train is {'spike frames (N, T, C, H, W)' if events else 'images'}: set "
                        f"data.encoding={'events' if events else 'direct, rate or latency'}, not {cfg.encoding}")
    if events and x_train.shape[1] < cfg.timesteps:
        raise DataError(f"{cfg.path}: the spike data has {x_train.shape[1]} time steps, fewer than "
                        f"data.timesteps={cfg.timesteps}")
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if num_classes < 2:
        raise DataError(f"{cfg.path}: the labels name {num_classes} class; a classifier needs at least 2")
    return _make_split("npz", (x_train, y_train), (x_test, y_test), cfg.n_train, cfg.n_test, num_classes,
                       str(cfg.path))


# ------------------------------------------------------------------------------------------- imagefolder

def _class_folders(folder: Path) -> list:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_images(folder: Path, classes: Sequence[str]):
    from PIL import Image

    images, labels, size, mode = [], [], None, None
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            raise DataError(f"{folder}: class folder {name!r} is missing (the other split has it)")
        for path in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(path) as im:
                    mode = mode or ("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                    arr = np.asarray(im.convert(mode), dtype=np.uint8)
            except OSError as exc:
                raise DataError(f"{path}: not a readable image ({exc})") from None
            if size is None:
                size = arr.shape
            elif arr.shape != size:
                raise DataError(f"{path}: image of shape {arr.shape}, the others are {size}; resize them to one size")
            images.append(arr if arr.ndim == 3 else arr[..., None])
            labels.append(label)
    if not images:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    x = np.stack(images).transpose(0, 3, 1, 2)  # (N, C, H, W)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


@register("imagefolder")
def load_imagefolder(cfg: DataConfig) -> DatasetSplit:
    """your images: --data-path FOLDER with one sub-folder of images per class (train/ and test/ optional)"""
    if not cfg.path:
        raise DataError("data.dataset=imagefolder needs --data-path FOLDER")
    folder = Path(cfg.path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    if cfg.encoding == "events":
        raise DataError(f"{folder}: images take data.encoding direct, rate or latency, not events")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        classes = [p.name for p in _class_folders(folder / "train")]
        train = _read_images(folder / "train", classes)
        test = _read_images(folder / "test", classes)
    else:
        classes = [p.name for p in _class_folders(folder)]
        if len(classes) < 2:
            raise DataError(f"{folder}: needs one sub-folder of images per class (at least 2), found "
                            f"{len(classes)}")
        train, test = _fixed_split(*_read_images(folder, classes))
    _check_labels(test[1], len(classes), str(folder))
    return _make_split("imagefolder", train, test, cfg.n_train, cfg.n_test, len(classes), str(folder))


# ---------------------------------------------------------------------------------------------- inference

def infer_dataset(cfg: DataConfig) -> DataConfig:
    """``--data-path`` alone picks the loader: a ``.npz`` file -> ``npz`` (``events`` encoding for spike
    tensors), a folder of class folders of images -> ``imagefolder``. An explicit ``--dataset`` is kept.
    For the user's data the default sample counts (sized for MNIST) mean all of it."""
    defaults = DataConfig()
    if cfg.dataset in FILE_KIND_DATASETS:
        # an absolute path, so that the ticket's data is found from any working directory
        return cfg.replace(path=str(Path(cfg.path).expanduser().resolve()) if cfg.path else cfg.path,
                           n_train=0 if cfg.n_train == defaults.n_train else cfg.n_train,
                           n_test=0 if cfg.n_test == defaults.n_test else cfg.n_test)
    if not cfg.path or cfg.dataset != defaults.dataset:
        return cfg
    path = Path(cfg.path).expanduser()
    if path.suffix.lower() == ".npz":
        events = path.is_file() and cfg.encoding == "direct" and npz_is_events(path)
        return infer_dataset(cfg.replace(dataset="npz", encoding="events" if events else cfg.encoding))
    if path.is_dir():
        subs = _class_folders(path)
        if subs and any(q.suffix.lower() in IMAGE_SUFFIXES for s in subs for q in s.iterdir()) or (
                (path / "train").is_dir() and (path / "test").is_dir()):
            return infer_dataset(cfg.replace(dataset="imagefolder"))
    return cfg


# -------------------------------------------------------------------------------------------- fingerprints

def sample_hashes(images: np.ndarray) -> np.ndarray:
    """One 64-bit hash per sample (BLAKE2b of its stored bytes, dtype and shape), as int64."""
    out = np.empty(len(images), dtype=np.int64)
    tag = f"{images.dtype.str}{images.shape[1:]}".encode()
    for i, sample in enumerate(images):
        h = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=8, person=tag[:16])
        out[i] = np.frombuffer(h.digest(), dtype="<i8")[0]
    return out


@dataclass(frozen=True)
class Fingerprint:
    """What a ticket records of its training split."""

    dataset: str
    path: Optional[str]
    samples: int
    sha256: str                 # of the per-sample hashes, in order
    hashes: np.ndarray          # int64 (samples,)

    def record(self) -> dict:
        return {"dataset": self.dataset, "path": self.path, "samples": self.samples, "sha256": self.sha256}


def fingerprint(ds: ArrayDataset, path: Optional[str] = None) -> Fingerprint:
    hashes = sample_hashes(ds.images)
    return Fingerprint(ds.name, path, len(hashes), hashlib.sha256(hashes.tobytes()).hexdigest(), hashes)


@dataclass(frozen=True)
class Overlap:
    overlapping: int
    samples: int

    def label(self) -> str:
        return (f"OVERLAPPING DATA: {self.overlapping} of {self.samples} evaluation samples are in the "
                f"training split; accuracy is not a test accuracy")


def check_overlap(train_hashes: Optional[np.ndarray], test: ArrayDataset, where: str, allow: bool = False,
                  samples: Optional[int] = None) -> Optional[Overlap]:
    """Count the (first ``samples``) evaluation samples that are in the training split.

    None when there is no recorded training split or no overlap; an overlap raises DataError unless
    ``allow``, when it is returned for the caller to label its outputs.
    """
    if train_hashes is None or len(train_hashes) == 0:
        return None
    images = test.images if samples is None else test.images[:samples]
    n = int(np.isin(sample_hashes(images), np.asarray(train_hashes)).sum())
    if n == 0:
        return None
    overlap = Overlap(n, len(images))
    if not allow:
        raise DataError(f"{where}: {n} of {len(images)} evaluation samples are in the ticket's training split; "
                        f"evaluate on held-out data (or pass --allow-overlap to label every output)")
    return overlap
