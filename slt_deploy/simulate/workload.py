"""The test workload of a deployed network: which data it runs on, encoded the way it was trained.

Shared by the stages that run a network on real samples (simulate, report): a ticket knows its data settings;
a NIR graph written by ``slt-deploy export`` names its dataset, encoding and T in its metadata (and its source
ticket, which knows the dataset's folder).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from ..config import DataConfig
from ..errors import SltError, TicketError
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
                       f"(graphs written by slt-deploy export carry them)")
    cfg = DataConfig(dataset=str(meta["dataset"]))
    source = meta.get("source")
    if isinstance(source, str) and Path(source).is_file():
        try:
            cfg = ticket_data(Ticket.load(source))
        except TicketError:
            pass  # the graph's own metadata is complete; its source is only a hint for the data folder
    return cfg.replace(encoding=str(meta["encoding"]), timesteps=int(meta["timesteps"]))


def test_samples(data: DataConfig, samples: int, progress: bool, desc: str, where: str = ""
                 ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) batches of the first ``samples`` test samples of ``data``, with a progress bar."""
    from tqdm.auto import tqdm

    from ..data import batches, load_dataset

    test = load_dataset(data).test
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


def encoded_test_samples(data: DataConfig, samples: int, seed: int, progress: bool, desc: str, where: str = ""
                         ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(x_seq (T, B, ...), y) with ``data``'s encoding and T; one seeded generator, so rate spikes reproduce."""
    from ..data import encode

    gen = generator(seed, "workload", "encode")
    for x, y in test_samples(data, samples, progress, desc, where):
        yield encode(x, data.encoding, data.timesteps, gen), y


def test_set_size(data: DataConfig) -> int:
    from ..data import load_dataset

    return len(load_dataset(data).test)
