"""Event-camera datasets read with tonic (N-MNIST, DVS Gesture, CIFAR10-DVS) and the offline event-mnist."""


import dataclasses
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from ..config import DataConfig
from ..errors import DataError, MissingDependencyError

from .base import SPLIT_SEED, ArrayDataset, DatasetSplit, _fixed_split, _folder, _take, npy_declared, register
from .images import load_mnist

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
        with open(path, "rb") as f:
            npy_declared(f, path, "the event array")  # the declared size, before numpy allocates it
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
