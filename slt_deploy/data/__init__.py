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

The user's own data (:mod:`.user`): ``npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``; images or
(N, T, C, H, W) spikes) and ``imagefolder`` (one sub-folder of images per class), picked from ``--data-path``
alone by :func:`infer_dataset`; training-split fingerprints and the overlap check (:func:`check_overlap`).

Modules: :mod:`.base` (containers, registry, split), :mod:`.images`, :mod:`.events`, :mod:`.encoding`.
Takes a :class:`~slt_deploy.config.DataConfig`; gives a :class:`DatasetSplit` of arrays and encoded batches.
"""

from .base import (ArrayDataset, DatasetSplit, DATASETS, ENCODINGS, IMAGE_ENCODINGS, MNIST_ENV, SPLIT_SEED,
                   TRAIN_FRACTION, check_encoding, describe_data, load_dataset, register)
from .encoding import batches, encode
from .events import events_to_frames, load_dvsgesture, load_cifar10dvs, load_event_mnist, load_nmnist, \
    mnist_to_events, read_cifar10dvs_aedat4, read_dvsgesture_npy, read_nmnist_bin
from .images import default_mnist_dir, load_cifar10, load_digits, load_fashion_mnist, load_mnist, \
    read_idx
from .base import verify_md5sums
from .user import Fingerprint, Overlap, check_overlap, fingerprint, infer_dataset, load_imagefolder, load_npz, \
    read_npz, sample_hashes

__all__ = ["ArrayDataset", "DatasetSplit", "DATASETS", "ENCODINGS", "IMAGE_ENCODINGS", "MNIST_ENV", "SPLIT_SEED",
           "TRAIN_FRACTION", "check_encoding", "describe_data", "load_dataset", "register", "batches", "encode",
           "events_to_frames",
           "load_dvsgesture", "load_cifar10dvs", "load_event_mnist", "load_nmnist", "mnist_to_events",
           "read_cifar10dvs_aedat4", "read_dvsgesture_npy", "read_nmnist_bin", "default_mnist_dir", "load_cifar10",
           "load_digits", "load_fashion_mnist", "load_mnist", "read_idx", "verify_md5sums",
           "Fingerprint", "Overlap", "check_overlap", "fingerprint", "infer_dataset", "load_imagefolder", "load_npz",
           "read_npz", "sample_hashes"]
