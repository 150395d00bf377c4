"""The test workload of a deployed network: which data it runs on, encoded the way it was trained.

Shared by the stages that run a network on real samples (simulate, report): a ticket knows its data settings;
a NIR graph written by ``slt-deploy export`` names its dataset, encoding and T in its metadata (and its source
ticket, which knows the dataset's folder). A graph written by another tool is given its input explicitly
(:func:`graph_workload`): arrays or a ``.npz``/``.npy`` file (:class:`Workload`), or any registered dataset
through :func:`slt_deploy.data.load_dataset`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from ..config import DataConfig
from ..errors import ConfigError, DataError, SltError, TicketError
from ..ticket import Ticket
from ..utils import generator

# Samples run at once: recorded activity of a batch is held in memory (a software bound, not hardware).
BATCH = 100


def ticket_data(ticket: Ticket, allow_overlap: bool = False) -> DataConfig:
    """The ticket's own data settings, with the record's encoding and T (what the ticket was evaluated at).

    The test split is checked against the ticket's training-split fingerprint (:func:`check_ticket_overlap`).
    """
    r = ticket.record
    raw = r.hyperparameters.get("data")
    cfg = DataConfig.from_dict(raw, where="ticket hyperparameters.data") if raw else DataConfig(dataset=r.dataset)
    cfg = cfg.replace(encoding=r.encoding, timesteps=r.timesteps)
    # a ticket that deploy wrote with --allow-overlap carries the overlap's label in its record
    check_ticket_overlap(ticket, cfg, allow_overlap or bool(r.extra.get("overlap")))
    return cfg


def check_ticket_overlap(ticket: Ticket, data: DataConfig, allow_overlap: bool = False, samples: Optional[int] = None):
    """Refuse (DataError) evaluating ``ticket`` on test data that is in its training split, unless
    ``allow_overlap`` (then the :class:`~slt_deploy.data.Overlap` is returned, for labelling every output)."""
    if ticket.train_hashes is None:
        return None  # a ticket from before fingerprints: nothing to compare with
    from ..data import check_overlap, load_dataset

    return check_overlap(ticket.train_hashes.numpy(), load_dataset(data).test, f"{data.dataset} test data",
                         allow=allow_overlap, samples=samples)


def nir_metadata(graph) -> dict:
    """The graph's metadata with numpy scalars turned into Python values."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in (graph.metadata or {}).items()}


def nir_data(graph, path: Path) -> DataConfig:
    """Data settings of a NIR graph: those of the ticket it was exported from when that still loads (it knows
    the dataset's folder), else the dataset named in the graph's metadata at its default location."""
    meta = nir_metadata(graph)
    missing = [k for k in ("dataset", "encoding", "timesteps") if k not in meta]
    if missing:
        raise SltError(f"{path}: NIR metadata lacks {', '.join(missing)}, needed to run the graph on its dataset "
                       f"(graphs written by slt-deploy export carry them); give its input with --input FILE or "
                       f"--dataset NAME (x= or data= in Python)")
    cfg = DataConfig(dataset=str(meta["dataset"]))
    source = meta.get("source")
    if isinstance(source, str) and Path(source).is_file():
        try:
            cfg = ticket_data(Ticket.load(source))
        except TicketError:
            pass  # the graph's own metadata is complete; its source is only a hint for the data folder
    return cfg.replace(encoding=str(meta["encoding"]), timesteps=int(meta["timesteps"]))


def test_samples(data: DataConfig, samples: int, progress: bool, desc: str, where: str = "",
                 fits: Optional["NetworkInput"] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches of the first ``samples`` test samples of ``data``, with a progress bar; ``fits``: the
    network's input, checked against the data before the first batch."""
    from tqdm.auto import tqdm

    from ..data import batches, load_dataset

    # only the first samples of the test split are used: load no more (the split is fixed before truncation, so
    # the samples are the same; event-mnist converts only what it loads)
    take = 0 if data.n_test == 0 else min(samples, data.n_test)  # 0: all of it (the user's data)
    test = load_dataset(data.replace(n_train=1, n_test=take)).test
    if fits is not None:
        fits.check(test, data)
    n = min(samples, len(test))
    if n < samples:
        warnings.warn(f"{where or data.dataset}: the test split has {len(test)} samples; using all of them, "
                      f"not {samples}")
    with tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        seen = 0
        for x, y in batches(test, BATCH, shuffle=False):
            x, y = x[: n - seen], y[: n - seen]
            if not len(y):
                break
            yield x, y
            seen += len(y)
            bar.update(len(y))


def encoded_test_samples(data: DataConfig, samples: int, seed: int, progress: bool, desc: str, where: str = "",
                         fits: Optional["NetworkInput"] = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(x_seq (T, B, ...), y) with ``data``'s encoding and T; one seeded generator, so rate spikes reproduce."""
    from ..data import encode

    gen = generator(seed, "workload", "encode")
    for x, y in test_samples(data, samples, progress, desc, where, fits):
        yield encode(x, data.encoding, data.timesteps, gen), y


@dataclass(frozen=True)
class NetworkInput:
    """What a network takes and gives -- one sample's shape and its number of outputs (class scores) -- to be
    checked against the data it is about to run on (:meth:`check`), so that a mismatch is one line naming both
    before any work, not a shape error inside an executor."""

    shape: Tuple[int, ...]
    outputs: int
    what: str  # "the graph model.nir", "the ticket t.safetensors"

    def check(self, ds, data: DataConfig) -> None:
        from ..data import describe_data

        shape = tuple(int(d) for d in ds.input_shape)
        if shape != tuple(self.shape):
            raise DataError(f"{describe_data(data)} has samples of shape {','.join(map(str, shape))}, but "
                            f"{self.what} takes input of shape {','.join(map(str, self.shape))}")
        if ds.num_classes > self.outputs:
            raise DataError(f"{describe_data(data)} has {ds.num_classes} classes (labels 0-{ds.num_classes - 1}), "
                            f"but {self.what} has {self.outputs} outputs")

    def check_data(self, data: DataConfig) -> None:
        """Load ``data``'s test split (the first sample of each split) and check it."""
        from ..data import load_dataset

        self.check(load_dataset(data.replace(n_train=1, n_test=1)).test, data)

    @classmethod
    def of_graph(cls, graph, where: str) -> "NetworkInput":
        import nir

        outputs = [n for n in graph.nodes.values() if isinstance(n, nir.Output)]
        size = int(np.prod(np.asarray(next(iter(outputs[0].output_type.values()))))) if len(outputs) == 1 else 0
        return cls(graph_input_shape(graph), size or 1 << 62, f"the graph {where}")  # unknown: not checked

    @classmethod
    def of_ticket(cls, ticket: Ticket, where: str) -> "NetworkInput":
        m = ticket.record.model
        return cls(tuple(m.input_shape), int(m.num_classes), f"the ticket {where}")


def test_set_size(data: DataConfig) -> int:
    from ..data import load_dataset

    return len(load_dataset(data).test)


# ------------------------------------------------------------------------- inputs of any graph (not only ours)

#: Input files ``--input`` reads (numpy's own formats, loaded without pickle).
INPUT_SUFFIXES = (".npz", ".npy")


@dataclass(frozen=True)
class Workload:
    """The samples a graph runs on: ``x`` (N, T, *input_shape) float32 in NIR order, samples first, and the
    labels ``y`` (N,) when known (None: accuracy is unknown, agreement between backends is still measured)."""

    x: np.ndarray
    y: Optional[np.ndarray]
    source: str          # where it comes from: a dataset name (its test split) or "file inputs.npz"
    encoding: str        # direct / rate / latency / events, or "given" for a sequence supplied as is
    values: Optional[np.ndarray] = None  # (N, *input_shape) values before encoding, when given that way

    @property
    def binary(self) -> bool:
        """Every value is 0 or 1: spikes, which may enter the chip's first synapse layer directly."""
        return bool(np.isin(self.x, (0.0, 1.0)).all())


def graph_input_shape(graph) -> Tuple[int, ...]:
    import nir

    inputs = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise SltError(f"the graph needs exactly one Input node to be given inputs, it has {len(inputs)}")
    return tuple(int(d) for d in np.asarray(next(iter(inputs[0].input_type.values()))).ravel())


def array_workload(x, y=None, *, shape: Tuple[int, ...], encoding: Optional[str] = None,
                   timesteps: Optional[int] = None, seed: int = 0, samples: Optional[int] = None,
                   where: str = "x") -> Workload:
    """A workload from arrays: ``x`` (N, T, *shape) is used as it is (spikes or currents per step); ``x``
    (N, *shape) holds values in [0, 1] to encode with ``encoding`` (default direct) over ``timesteps`` steps."""
    from ..data import encode

    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: x must be numeric, got dtype {x.dtype}")
    shape = tuple(shape)
    if samples is not None:
        x = x[:samples]
    if x.ndim == len(shape) + 2 and tuple(x.shape[2:]) == shape:
        if encoding not in (None, "given") or timesteps not in (None, x.shape[1]):
            raise DataError(f"{where}: x of shape {x.shape} is already a sequence (N, T={x.shape[1]}, {shape}); "
                            f"encoding and timesteps apply to (N, {shape}) values only")
        seq, how = x.astype(np.float32), "given"
    elif x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        if timesteps is None:
            raise DataError(f"{where}: x of shape {x.shape} holds one value per input; give the number of "
                            f"timesteps to encode it over (--timesteps T)")
        how = encoding or "direct"
        if how in ("events", "given"):
            raise DataError(f"{where}: encoding {how!r} needs a sequence (N, T, {shape}), got {x.shape}")
        try:
            seq = encode(torch.from_numpy(x.astype(np.float32)), how, int(timesteps),
                         generator(seed, "workload", "encode")).transpose(0, 1).contiguous().numpy()
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
    else:
        raise DataError(f"{where}: x has shape {x.shape}; the graph's input is {shape}, so x must be (N, T, "
                        f"{', '.join(map(str, shape))}) spikes/currents or (N, {', '.join(map(str, shape))}) values")
    if not len(seq):
        raise DataError(f"{where}: x holds no samples")
    if not np.isfinite(seq).all():
        raise DataError(f"{where}: x has NaN or infinite values")
    labels = None
    if y is not None:
        labels = np.asarray(y)
        if samples is not None:
            labels = labels[:samples]
        if labels.shape != (len(seq),) or labels.dtype.kind not in "iu":
            raise DataError(f"{where}: y must be {len(seq)} integer labels, got dtype {labels.dtype} shape "
                            f"{labels.shape}")
        labels = labels.astype(np.int64)
    return Workload(seq, labels, where, how, None if how == "given" else x)


def load_input_file(path, *, shape: Tuple[int, ...], encoding: Optional[str] = None,
                    timesteps: Optional[int] = None, seed: int = 0, samples: Optional[int] = None) -> Workload:
    """A workload from a ``.npz`` (arrays ``x`` and optionally ``y``) or ``.npy`` (``x`` alone) file; no pickle."""
    from ..data.base import npy_declared

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such input file")
    if p.suffix.lower() not in INPUT_SUFFIXES:
        raise DataError(f"{p}: input files are .npz (arrays x and optional y) or .npy (x), not {p.suffix!r}")
    try:
        if p.suffix.lower() == ".npy":
            with open(p, "rb") as stream:
                npy_declared(stream, p, "x")  # the declared size against --max-elements, before numpy allocates
            x, y = np.load(p, allow_pickle=False), None
        else:
            with np.load(p, allow_pickle=False) as f:
                if "x" not in f.files:
                    raise DataError(f"{p}: holds {', '.join(f.files) or 'no arrays'}; the input must be named x "
                                    f"(and the labels y)")
                for key in ("x", "y"):
                    if key in f.files:
                        with f.zip.open(f"{key}.npy") as member:
                            npy_declared(member, p, key)
                x, y = f["x"], (f["y"] if "y" in f.files else None)
    except SltError:
        raise
    except (OSError, ValueError, EOFError, KeyError) as exc:  # not numpy, truncated, or object arrays (pickle)
        raise DataError(f"{p}: not a readable numpy file ({_one_line(exc)})") from None
    return array_workload(x, y, shape=shape, encoding=encoding, timesteps=timesteps, seed=seed, samples=samples,
                          where=f"file {p.name}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def dataset_workload(data: DataConfig, samples: int, seed: int, progress: bool, where: str = "",
                     fits: Optional[NetworkInput] = None) -> Workload:
    """The first ``samples`` test samples of ``data`` (any registered loader), encoded as ``data`` says, after
    checking them against the network's input (``fits``)."""
    xs, ys = [], []
    for x_seq, y in encoded_test_samples(data, samples, seed, progress, f"data {where or data.dataset}", where,
                                         fits):
        xs.append(x_seq.transpose(0, 1).numpy())  # (B, T, ...): the backends take samples first
        ys.append(y.numpy())
    return Workload(np.concatenate(xs), np.concatenate(ys), data.dataset, data.encoding)


def dataset_config(dataset: str, graph=None, *, path: Optional[str] = None, encoding: Optional[str] = None,
                   timesteps: Optional[int] = None) -> DataConfig:
    """``--dataset NAME [--data-path P --encoding E --timesteps T]``: what is not given comes from the graph's
    metadata when it names the same dataset, else the defaults (``events`` for an event dataset)."""
    from ..data.base import EVENT_DATASETS

    meta = nir_metadata(graph) if graph is not None else {}
    same = meta.get("dataset") == dataset
    if encoding is None:
        encoding = str(meta["encoding"]) if same and "encoding" in meta else \
            ("events" if dataset in EVENT_DATASETS else DataConfig().encoding)
    if timesteps is None:
        timesteps = int(meta["timesteps"]) if same and "timesteps" in meta else DataConfig().timesteps
    cfg = DataConfig(dataset=dataset, path=path, encoding=encoding, timesteps=int(timesteps))
    cfg.validate()
    return cfg


def graph_workload(graph, where: str, *, samples: int, progress: bool = False, x=None, y=None, input=None,
                   data: Optional[DataConfig] = None, encoding: Optional[str] = None,
                   timesteps: Optional[int] = None) -> Workload:
    """The workload of ``graph``: arrays (``x``, ``y``), an input file (``input``), a dataset (``data``), or,
    when none is given, the dataset its metadata names (graphs written by slt-deploy export)."""
    given = [k for k, v in (("x", x), ("input", input), ("data", data)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{where}: give the input one way, not {' and '.join(given)}")
    seed = int(nir_metadata(graph).get("seed", 0))
    if x is not None:
        return array_workload(x, y, shape=graph_input_shape(graph), encoding=encoding, timesteps=timesteps,
                              seed=seed, samples=samples)
    if y is not None:
        raise ConfigError(f"{where}: labels y are given without inputs x")
    if input is not None:
        return load_input_file(input, shape=graph_input_shape(graph), encoding=encoding, timesteps=timesteps,
                               seed=seed, samples=samples)
    if data is None:
        data = nir_data(graph, Path(where))
        data = data.replace(**{k: v for k, v in (("encoding", encoding), ("timesteps", timesteps)) if v is not None})
    return dataset_workload(data, samples, seed, progress, where, NetworkInput.of_graph(graph, where))
