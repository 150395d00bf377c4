"""Tests of the event datasets: N-MNIST, DVS Gesture and CIFAR10-DVS read from tiny files written here in the
real formats (checked by reading them back with tonic), event-mnist simulated from the shared MNIST, the
``events`` encoding, and a network trained on event-mnist taken through export and simulation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib import recfunctions

from slt_deploy import data as D
from slt_deploy.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from slt_deploy.errors import DataError
from slt_deploy.report.schema import load_report

# ------------------------------------------------------------------------------------ fixture writers


def write_nmnist_bin(path: Path, x, y, t, p) -> Path:
    """N-MNIST's 40-bit events: byte 0 = x, byte 1 = y, byte 2 = polarity (bit 7) and timestamp bits 22..16,
    bytes 3-4 = timestamp bits 15..0 (microseconds, big-endian)."""
    x, y, t, p = (np.asarray(v, np.int64) for v in (x, y, t, p))
    assert (t >= 0).all() and (t < 2 ** 23).all() and (x < 256).all() and (y < 240).all()  # y = 240: overflow
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF], axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())
    return path


def write_dvsgesture_npy(path: Path, x, y, p, t_ms) -> Path:
    """tonic's DVS Gesture file: an (N, 4) int64 array with the columns x, y, p, t in milliseconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([np.asarray(v, np.int64) for v in (x, y, p, t_ms)], axis=1))
    return path


AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def _aedat4_description(width: int, height: int) -> str:
    return ("<dv version=\"2.0\">\n  <node name=\"outInfo\" path=\"/mainloop/output_file/outInfo/\">\n"
            "    <node name=\"0\" path=\"/mainloop/output_file/outInfo/0/\">\n"
            "      <attr key=\"compression\" type=\"string\">NONE</attr>\n"
            "      <attr key=\"originalModuleName\" type=\"string\">converter</attr>\n"
            "      <attr key=\"originalOutputName\" type=\"string\">events</attr>\n"
            "      <attr key=\"typeDescription\" type=\"string\">Array of events (polarity ON/OFF).</attr>\n"
            "      <attr key=\"typeIdentifier\" type=\"string\">EVTS</attr>\n"
            "      <node name=\"info\" path=\"/mainloop/output_file/outInfo/0/info/\">\n"
            f"        <attr key=\"sizeX\" type=\"int\">{width}</attr>\n"
            f"        <attr key=\"sizeY\" type=\"int\">{height}</attr>\n"
            "        <attr key=\"source\" type=\"string\">DVS128</attr>\n"
            "      </node>\n    </node>\n  </node>\n</dv>\n")


def write_aedat4(path: Path, t, x, y, on, width: int = 128, height: int = 128, packets: int = 2) -> Path:
    """An uncompressed AEDAT 4.0 file: the magic line, a size-prefixed flatbuffer IOHeader (identifier IOHE:
    compression = None, no data table, the XML description of one EVTS stream), then packets of
    (stream id, size, size-prefixed EventPacket flatbuffer with identifier EVTS, whose elements are 16-byte
    Event structs {t: int64, x: int16, y: int16, on: bool, 3 bytes of padding})."""
    import flatbuffers  # installed with onnxruntime, a dependency of the project

    builder = flatbuffers.Builder(1024)
    description = builder.CreateString(_aedat4_description(width, height))
    builder.StartObject(3)  # Ioheader: compression (default None), file_data_position (default -1), description
    builder.PrependUOffsetTRelativeSlot(2, description, 0)
    builder.FinishSizePrefixed(builder.EndObject(), b"IOHE")
    out = [AEDAT4_MAGIC, bytes(builder.Output())]
    for chunk in np.array_split(np.arange(len(t)), packets):
        b = flatbuffers.Builder(1024)
        b.StartVector(16, len(chunk), 8)
        for i in chunk[::-1]:  # flatbuffers are built back to front
            b.Prep(8, 16)
            b.Pad(3)
            b.PrependBool(bool(on[i]))
            b.PrependInt16(int(y[i]))
            b.PrependInt16(int(x[i]))
            b.PrependInt64(int(t[i]))
        elements = b.EndVector()
        b.StartObject(1)  # EventPacket: elements
        b.PrependUOffsetTRelativeSlot(0, elements, 0)
        b.FinishSizePrefixed(b.EndObject(), b"EVTS")
        payload = bytes(b.Output())
        out.append((0).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def random_events(n: int, seed: int, size: int, duration_us: int):
    """(x, y, t, p): n events on a size x size sensor, timestamps sorted in [0, duration_us]."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us + 1, n))
    t[0], t[-1] = 0, duration_us
    return rng.integers(0, size, n), rng.integers(0, size, n), t, rng.integers(0, 2, n)


def expected_frames(x, y, t, p, T: int, size: int, target: int) -> np.ndarray:
    """The binning rule written out independently of tonic: T windows of (t_last - t_first) // T us from the
    first event, coordinates scaled by target/size (floored), counts clipped to {0, 1}."""
    x, y, t, p = (np.asarray(v, np.int64) for v in (x, y, t, p))
    window = (t.max() - t.min()) // T
    frames = np.zeros((T, 2, target, target), np.uint8)
    step = (t - t.min()) // window
    keep = step < T
    frames[step[keep], p[keep], (y[keep] * target) // size, (x[keep] * target) // size] = 1
    return frames


def events_cfg(dataset: str, path, T: int = 4, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, path=str(path), encoding="events", timesteps=T, **kw)


# ------------------------------------------------------------------------------------------- binning


def test_frames_from_hand_made_events_are_exact():
    from tonic.datasets import NMNIST

    # T = 4 over t = 0..40 us: windows [0, 10), [10, 20), [20, 30), [30, 40); the event at t = 40 falls in none
    # (tonic's rule). Two events on one pixel in one window give one spike.
    rows = [(1, 2, 0, 1), (1, 2, 5, 1), (3, 0, 10, 0), (3, 1, 15, 1), (0, 33, 25, 0), (33, 0, 39, 1),
            (5, 5, 40, 1)]
    events = np.array(rows, dtype=NMNIST.dtype)  # fields x, y, t, p
    frames = D.events_to_frames(events, (34, 34, 2), 4)
    expected = np.zeros((4, 2, 34, 34), np.uint8)
    expected[0, 1, 2, 1] = 1
    expected[1, 0, 0, 3] = expected[1, 1, 1, 3] = 1
    expected[2, 0, 33, 0] = 1
    expected[3, 1, 0, 33] = 1
    assert frames.dtype == np.uint8 and np.array_equal(frames, expected)
    # unsorted timestamps are sorted first; an empty recording gives empty frames
    assert np.array_equal(D.events_to_frames(events[::-1].copy(), (34, 34, 2), 4), expected)
    assert np.array_equal(D.events_to_frames(events[:0], (34, 34, 2), 3), np.zeros((3, 2, 34, 34), np.uint8))


def test_downsampled_frames():
    from tonic.datasets import DVSGesture

    x, y, t, p = random_events(3000, 0, 128, 60_000)
    events = np.empty(len(x), DVSGesture.dtype)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    frames = D.events_to_frames(events, (128, 128, 2), 5, (32, 32))
    assert frames.shape == (5, 2, 32, 32) and set(np.unique(frames)) == {0, 1}
    assert np.array_equal(frames, expected_frames(x, y, t, p, 5, 128, 32))


# ------------------------------------------------------------------------------------------- N-MNIST


def test_nmnist_bin_writer_reads_back_exactly_with_tonic(tmp_path):
    from tonic.datasets import NMNIST
    from tonic.io import read_mnist_file

    x, y, t, p = random_events(500, 1, 34, 300_000)
    t[100] = 2 ** 23 - 1  # the largest timestamp the 23 bits hold (kept sorted below)
    t = np.sort(t)
    path = write_nmnist_bin(tmp_path / "a.bin", x, y, t, p)
    assert path.stat().st_size == 5 * 500
    events = read_mnist_file(str(path), dtype=NMNIST.dtype)
    for name, want in (("x", x), ("y", y), ("t", t), ("p", p)):
        assert np.array_equal(events[name], want), name
    assert np.array_equal(D.read_nmnist_bin(path), events)


def make_nmnist(root: Path, per_class: int = 2):
    """tonic's layout: root/NMNIST/{Train,Test}/<digit>/NNNNN.bin; returns {path: (label, events)}."""
    written = {}
    for split, seed in (("Train", 10), ("Test", 20)):
        for digit in (0, 3, 7):
            for i in range(per_class):
                ev = random_events(300, seed + 100 * digit + i, 34, 300_000)
                path = write_nmnist_bin(root / "NMNIST" / split / str(digit) / f"{i:05d}.bin", *ev)
                written[str(path)] = (digit, ev)
    return written


def test_nmnist_loader(tmp_path):
    written = make_nmnist(tmp_path)
    T = 4
    split = D.load_dataset(events_cfg("nmnist", tmp_path, T, n_train=0, n_test=0))
    # data.path may also be the NMNIST folder itself
    again = D.load_dataset(events_cfg("nmnist", tmp_path / "NMNIST", T, n_train=0, n_test=0))
    assert np.array_equal(split.train.images, again.train.images)
    for ds, n in ((split.train, 6), (split.test, 6)):
        assert ds.images.shape == (n, T, 2, 34, 34) and ds.images.dtype == np.uint8
        assert ds.input_shape == (2, 34, 34) and ds.timesteps == T and ds.is_events and ds.num_classes == 10
        assert sorted(ds.labels.tolist()) == [0, 0, 3, 3, 7, 7]
    # each sample is its file's events binned (matched by content: the order is a fixed shuffle)
    frames = {}
    for path, (label, (x, y, t, p)) in written.items():
        frames.setdefault(label, []).append(expected_frames(x, y, t, p, T, 34, 34))
    for ds in (split.train, split.test):
        for img, label in zip(ds.images, ds.labels):
            assert any(np.array_equal(img, f) for f in frames[int(label)])
    # n_train / n_test take a class-mixed prefix of that fixed order, reading only those files
    small = D.load_dataset(events_cfg("nmnist", tmp_path, T, n_train=3, n_test=2))
    assert np.array_equal(small.train.images, split.train.images[:3])
    assert np.array_equal(small.test.labels, split.test.labels[:2])
    with pytest.raises(DataError, match=r"data.n_train=7 exceeds the 6 samples available in the training split"):
        D.load_dataset(events_cfg("nmnist", tmp_path, T, n_train=7, n_test=1))


def test_nmnist_bad_files(tmp_path):
    make_nmnist(tmp_path, per_class=1)
    bad = tmp_path / "NMNIST" / "Test" / "3" / "00009.bin"
    bad.write_bytes(b"\x00" * 7)
    with pytest.raises(DataError, match=r"00009.bin: 7 bytes is not a whole number of 5-byte N-MNIST events"):
        D.load_dataset(events_cfg("nmnist", tmp_path, n_train=1, n_test=0))
    write_nmnist_bin(bad, [40], [1], [5], [1])  # x = 40 on a 34x34 sensor
    with pytest.raises(DataError, match=r"00009.bin: event 0 at x=40, y=1 is outside the 34x34 sensor of N-MNIST"):
        D.load_dataset(events_cfg("nmnist", tmp_path, n_train=1, n_test=0))


def test_missing_event_folders(tmp_path):
    with pytest.raises(DataError, match=r"nope: data folder does not exist; expected tonic's NMNIST folder"):
        D.load_dataset(events_cfg("nmnist", tmp_path / "nope"))
    with pytest.raises(DataError, match=r"data.path is required for dvsgesture: the folder holding tonic's "
                                        r"DVSGesture/"):
        D.load_dataset(DataConfig(dataset="dvsgesture", encoding="events"))
    (tmp_path / "NMNIST" / "Train" / "1").mkdir(parents=True)
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'NMNIST' / 'Train'}: no recordings found "
                                                  "(expected Train/<digit>/*.bin and Test/<digit>/*.bin")):
        D.load_dataset(events_cfg("nmnist", tmp_path))
    with pytest.raises(DataError, match=r"ibmGestureTrain: no recordings found \(expected ibmGestureTrain/"):
        D.load_dataset(events_cfg("dvsgesture", tmp_path))
    with pytest.raises(DataError, match=r"no recordings found \(expected <class>/\*.aedat4"):
        D.load_dataset(events_cfg("cifar10dvs", tmp_path))


# --------------------------------------------------------------------------------------- DVS Gesture


def make_dvsgesture(root: Path, users=("user01_fluorescent", "user02_led"), labels=(0, 4, 10), seed: int = 0):
    """tonic's layout: root/DVSGesture/ibmGesture{Train,Test}/<user>_<lighting>/<label>.npy."""
    written = {}
    for split, offset in (("ibmGestureTrain", 0), ("ibmGestureTest", 50)):
        for u, user in enumerate(users):
            for label in labels:
                x, y, t_ms, p = random_events(400, seed + offset + 20 * u + label, 128, 6000)
                path = write_dvsgesture_npy(root / "DVSGesture" / split / user / f"{label}.npy", x, y, p, t_ms)
                written[str(path)] = (label, (x, y, t_ms * 1000, p))
    return written


def test_dvsgesture_files_read_like_tonics_own_dataset(tmp_path):
    import tonic
    from tonic.datasets import DVSGesture

    written = make_dvsgesture(tmp_path, users=[f"user{u:02d}_natural" for u in range(1, 12)],
                              labels=tuple(range(11)))
    # tonic's DVSGesture class accepts an extracted folder once its archive is there and it holds >= 100
    # recordings (121 here): so it reads this layout without trying to download.
    (tmp_path / "DVSGesture" / "ibmGestureTest.tar.gz").write_bytes(b"")
    ds = DVSGesture(str(tmp_path), train=False)
    assert len(ds) == 121
    T = 3
    to_frames = tonic.transforms.Compose([tonic.transforms.Downsample(sensor_size=(128, 128, 2),
                                                                      target_size=(32, 32)),
                                          tonic.transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=T)])
    for i in (0, 57, 120):
        events, label = ds[i]
        assert label == written[ds.data[i]][0]
        mine = D.read_dvsgesture_npy(Path(ds.data[i]))
        assert mine.dtype == events.dtype and np.array_equal(mine, events)
        x, y, t, p = written[ds.data[i]][1]
        assert np.array_equal(events["t"], t) and np.array_equal(events["x"], x)
        frames = D.events_to_frames(mine, (128, 128, 2), T, (32, 32))
        assert np.array_equal(frames, np.clip(to_frames(events), 0, 1))
        assert np.array_equal(frames, expected_frames(x, y, t, p, T, 128, 32))


def test_dvsgesture_loader(tmp_path):
    written = make_dvsgesture(tmp_path)
    split = D.load_dataset(events_cfg("dvsgesture", tmp_path, 5, n_train=0, n_test=4))
    assert split.train.images.shape == (6, 5, 2, 32, 32) and split.test.images.shape == (4, 5, 2, 32, 32)
    assert split.train.num_classes == 11 and sorted(split.train.labels.tolist()) == [0, 0, 4, 4, 10, 10]
    expected = {}
    for path, (label, ev) in written.items():
        expected.setdefault(label, []).append(expected_frames(*ev, 5, 128, 32))
    for img, label in zip(split.train.images, split.train.labels):
        assert any(np.array_equal(img, f) for f in expected[int(label)])
    bad = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_fluorescent" / "4.npy"
    np.save(bad, np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"4.npy: expected an \(N, 4\) numeric array of events x, y, p, t"):
        D.load_dataset(events_cfg("dvsgesture", tmp_path, n_train=0, n_test=1))
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickle inside: never loaded
    with pytest.raises(DataError, match=r"4.npy: not a readable .npy array"):
        D.load_dataset(events_cfg("dvsgesture", tmp_path, n_train=0, n_test=1))


# -------------------------------------------------------------------------------------- CIFAR10-DVS


def test_aedat4_writer_reads_back_exactly_with_tonic(tmp_path):
    pytest.importorskip("aedat", reason="tonic's AEDAT4 reader needs the aedat package")
    from tonic.io import read_aedat4

    x, y, t, p = random_events(700, 3, 128, 1_500_000)
    t += 10 ** 12  # absolute timestamps, as recorded
    path = write_aedat4(tmp_path / "r.aedat4", t, x, y, p, packets=3)
    events = read_aedat4(str(path))
    assert len(events) == 700
    for name, want in zip(events.dtype.names, (t, x, y, p)):  # t, x, y, on
        assert np.array_equal(events[name], want), name
    mine = D.read_cifar10dvs_aedat4(path)
    assert mine.dtype.names == ("t", "x", "y", "p") and np.array_equal(mine["t"], t)


def test_cifar10dvs_loader(tmp_path):
    pytest.importorskip("aedat", reason="tonic's AEDAT4 reader needs the aedat package")
    expected = {}
    for label, name in ((0, "airplane"), (5, "dog"), (9, "truck")):
        for i in range(4):
            x, y, t, p = random_events(400, 7 * label + i, 128, 1_000_000)
            write_aedat4(tmp_path / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat4", t + 123, x, y, p)
            expected.setdefault(label, []).append(expected_frames(x, y, t, p, 4, 128, 48))
    split = D.load_dataset(events_cfg("cifar10dvs", tmp_path, 4, n_train=0, n_test=0))
    assert len(split.train) == 9 and len(split.test) == 3  # the fixed 80/20 split
    assert split.train.images.shape[1:] == (4, 2, 48, 48) and split.train.input_shape == (2, 48, 48)
    for ds in (split.train, split.test):
        for img, label in zip(ds.images, ds.labels):
            assert any(np.array_equal(img, f) for f in expected[int(label)])
    (tmp_path / "CIFAR10DVS" / "dog" / "cifar10_dog_0.aedat4").write_bytes(b"#!AER-DAT4.0\r\n\x05\x00")
    with pytest.raises(DataError, match=r"cifar10_dog_0.aedat4: not a readable AEDAT4 event file"):
        D.load_dataset(events_cfg("cifar10dvs", tmp_path, 4, n_train=0, n_test=0))


# -------------------------------------------------------------------------------------- event-mnist


@pytest.fixture(scope="module")
def mnist_split():
    try:
        D.default_mnist_dir()
    except DataError as exc:
        pytest.skip(f"the shared offline MNIST is not available: {exc}")
    return D.load_dataset(DataConfig(n_train=40, n_test=20))


def test_event_mnist_simulation(mnist_split):
    images = mnist_split.train.images[:8]
    a = D.mnist_to_events(images, 5)
    assert a.shape == (8, 5, 2, 34, 34) and a.dtype == np.uint8 and set(np.unique(a)) == {0, 1}
    assert np.array_equal(a, D.mnist_to_events(images[:, 0], 5, chunk=3))  # deterministic, any chunking
    on, off = a[:, :, 1].reshape(8, -1).sum(1), a[:, :, 0].reshape(8, -1).sum(1)
    assert (on > 0).all() and (off > 0).all()  # every real digit gives ON and OFF events...
    assert (a.reshape(8, 5, -1).sum(2) > 0).all()  # ...in every time bin
    blank = np.zeros((2, 28, 28), np.uint8)
    assert not D.mnist_to_events(blank, 5).any()
    # events only where the moving digit can be: within the 28x28 box swept over the 6-pixel saccades
    one = np.zeros((1, 28, 28), np.uint8)
    one[0, 10, 10] = 255
    ev = D.mnist_to_events(one, 6)
    ys, xs = np.nonzero(ev.any(axis=(0, 1, 2)))
    assert ys.min() >= 10 and ys.max() <= 10 + 7 and xs.min() >= 10 and xs.max() <= 10 + 7
    assert ev[0, :, 1].any() and ev[0, :, 0].any()
    # the dot leaves its first pixel in the first bin: an OFF event there, no ON (channel 0 = OFF, 1 = ON)
    assert ev[0, 0, 0, 10, 10] == 1 and ev[0, 0, 1, 10, 10] == 0


def test_event_mnist_loader(mnist_split):
    split = D.load_dataset(DataConfig(dataset="event-mnist", encoding="events", timesteps=3, n_train=40,
                                      n_test=20))
    assert split.train.input_shape == (2, 34, 34) and split.train.timesteps == 3
    assert np.array_equal(split.train.labels, mnist_split.train.labels)
    assert np.array_equal(split.test.images, D.mnist_to_events(mnist_split.test.images, 3))


# ------------------------------------------------------------------------------- the events encoding


def test_batches_and_events_encoding():
    frames = np.random.default_rng(0).integers(0, 2, (5, 3, 2, 4, 4)).astype(np.uint8)
    ds = D.ArrayDataset("ev", frames, np.arange(5, dtype=np.int64), 10)
    assert ds.is_events and ds.timesteps == 3 and ds.input_shape == (2, 4, 4)
    (x, y), = D.batches(ds, 8, shuffle=False)
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(frames).float())  # not scaled by 255
    seq = D.encode(x, "events", 3)
    assert seq.shape == (3, 5, 2, 4, 4) and torch.equal(seq, x.transpose(0, 1))
    assert torch.equal(D.encode(x, "events", 2), x[:, :2].transpose(0, 1))  # Early-Time's T_early: first bins
    with pytest.raises(DataError, match=r"data.timesteps=4 exceeds the 3 time bins of the event data"):
        D.encode(x, "events", 4)
    with pytest.raises(DataError, match=r"data.encoding=direct is for images, but the batch is event frames"):
        D.encode(x, "direct", 3)
    with pytest.raises(DataError, match=r"data.encoding=events needs event frames \(B, T, C, H, W\)"):
        D.encode(torch.zeros(2, 1, 4, 4), "events", 3)
    assert not D.ArrayDataset("im", np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), 10).is_events
    with pytest.raises(ValueError, match="event frames must be uint8 spikes"):
        D.ArrayDataset("ev", frames.astype(np.float32), np.arange(5, dtype=np.int64), 10)


def test_wrong_encoding_for_the_dataset_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match=r"^data.dataset=event-mnist is event data .*: set data.encoding=events"):
        D.load_dataset(DataConfig(dataset="event-mnist", encoding="direct"))
    with pytest.raises(DataError, match=r"^data.dataset=nmnist is event data .*set data.encoding=events, not rate"):
        D.load_dataset(DataConfig(dataset="nmnist", path=str(tmp_path), encoding="rate"))
    with pytest.raises(DataError, match=r"^data.encoding=events needs an event dataset \(cifar10dvs, dvsgesture, "
                                        r"event-mnist, nmnist\); data.dataset=digits is images"):
        D.load_dataset(DataConfig(dataset="digits", encoding="events"))


# ------------------------------------------------------------------ through search, export and simulate

T_PIPE = 4
N_SIM = 40


@pytest.fixture(scope="module")
def event_nir(tmp_path_factory):
    """A dense spiking MLP trained for one epoch on event-mnist by the real search, exported to NIR."""
    try:
        D.default_mnist_dir()
    except DataError as exc:
        pytest.skip(f"the shared offline MNIST is not available: {exc}")
    from slt_deploy.export import export_ticket
    from slt_deploy.search import search

    config = RunConfig(model=ModelConfig(name="mlp", hidden=(64, 32)),
                       data=DataConfig(dataset="event-mnist", encoding="events", timesteps=T_PIPE, n_train=600,
                                       n_test=N_SIM),
                       train=TrainConfig(epochs=1, batch_size=20, optimizer="adam", lr=0.01, weight_decay=0.0),
                       search=SearchConfig(method="dense"))
    root = tmp_path_factory.mktemp("events")
    result = search(config, runs_dir=root / "runs", progress=False, echo=lambda _: None)
    nir_path = export_ticket(result.ticket_path, "nir", root / "ticket.nir")
    return result, nir_path


def snntorch_run(result):
    """Predictions and per-layer spikes (N, T, n) of the snnTorch ticket on the event-mnist test samples."""
    from slt_deploy.ticket import Ticket
    from slt_deploy.simulate.workload import ticket_data

    test = D.load_dataset(ticket_data(result.ticket)).test
    model = Ticket.load(result.ticket_path).build_model().eval()
    spikes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: spikes.setdefault(n, []).append(o.detach()))
             for n, m in model.neurons()]
    x = torch.from_numpy(test.images[:N_SIM]).float()
    with torch.no_grad():
        logits = model(D.encode(x, "events", T_PIPE))
    for h in hooks:
        h.remove()
    return (logits.sum(0).argmax(1).numpy(), test.labels[:N_SIM],
            {n: torch.stack(v).transpose(0, 1).numpy() for n, v in spikes.items()})


def test_event_mnist_network_through_export_and_simulation(event_nir):
    from slt_deploy.simulate import simulate

    result, nir_path = event_nir
    assert result.ticket.record.encoding == "events" and result.ticket.record.timesteps == T_PIPE
    assert tuple(result.ticket.record.model.input_shape) == (2, 34, 34)
    pred, labels, spikes = snntorch_run(result)
    ref = simulate(nir_path, "reference", samples=N_SIM, progress=False)
    assert ref.dataset == "event-mnist" and ref.encoding == "events" and ref.timesteps == T_PIPE
    assert ref.samples == N_SIM and ref.accuracy == pytest.approx(float((pred == labels).mean()))
    assert all(v > 0 for v in ref.spikes_per_sample.values())  # the comparison sees real spikes
    for name, s in spikes.items():  # the reference's spike counts are the snnTorch ticket's
        assert ref.spikes_per_sample[name] == pytest.approx(float(s.sum()) / N_SIM), name
    fast = simulate(nir_path, "fast-float", samples=N_SIM, progress=False)
    assert fast.first_mismatch is None and fast.prediction_agreement == 1.0
    fixed = simulate(nir_path, "fast-fixed", samples=N_SIM, progress=False)
    assert any("first_layer=chip" in n for n in fixed.notes)  # event spikes go straight onto the chip
    assert fixed.prediction_agreement >= 0.95  # Loihi fixed point: reported, near but not assumed identical
    assert all(v >= 0.99 for v in fixed.spike_agreement.values())


@pytest.mark.lava
def test_event_mnist_network_in_lava_float_is_spike_identical(event_nir):
    from slt_deploy.simulate import simulate

    _, nir_path = event_nir
    lava = simulate(nir_path, "lava-float", samples=10, progress=False)
    assert lava.first_mismatch is None and lava.prediction_agreement == 1.0
    assert all(v == 1.0 for v in lava.spike_agreement.values())


def test_report_on_an_event_ticket_runs_the_ann_twin_on_event_count_images(event_nir, tmp_path):
    import json

    from slt_deploy.cli import main
    from slt_deploy.exporters.onnx_format import ann_twin
    from slt_deploy.ticket import Ticket
    from slt_deploy.simulate.workload import ticket_data

    result, _ = event_nir
    out = tmp_path / "report"
    # the untrained twin (ONNX of the ticket's weights with ReLU) is what runs on event-count images here
    assert main(["report", str(result.ticket_path), "--profiles", "cmos45", "--out", str(out),
                 "--samples", str(N_SIM), "--no-progress", "--untrained-ann"]) == 0
    ann = load_report(out / "report.json").ann
    test = D.load_dataset(ticket_data(result.ticket)).test
    counts = torch.from_numpy(test.images[:N_SIM]).float().sum(1)  # frames summed over time
    twin = ann_twin(Ticket.load(result.ticket_path))
    with torch.no_grad():
        expected = float((twin(counts).argmax(1).numpy() == test.labels[:N_SIM]).mean())
    assert ann.accuracy_measured == pytest.approx(expected)
