"""The export stage: a ticket to the hand-off formats of deployment (takes a ticket, gives files).

``nir``      the spiking network as a NIR graph (sparse and binary weights exact, with metadata)
``onnx``     the ANN counterpart (same architecture and mask, ReLU for LIF) for cost comparison / edge runtimes
``onnx-snn`` the SNN unrolled over the ticket's T timesteps, for standard edge runtimes
Every writer checks what it wrote against the ticket it came from before the file appears. The lava-dl netx
HDF5 file is written from the *compiled* network, so it belongs to the next stage (:mod:`slt_deploy.compile`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from .errors import ConfigError
from .ticket import Ticket
from .utils import check_output_path


def _nir(ticket: Ticket, ticket_path: Path, out: Path) -> Path:
    from .exporters.nir_format import ticket_to_nir, write_nir

    return write_nir(ticket_to_nir(ticket, source=str(ticket_path)), out)


def _onnx(ticket: Ticket, ticket_path: Path, out: Path) -> Path:
    from .exporters.onnx_format import export_ticket_onnx

    return export_ticket_onnx(ticket_path, out)


def _onnx_snn(ticket: Ticket, ticket_path: Path, out: Path) -> Path:
    from .exporters.onnx_format import export_snn_unrolled_onnx

    r = ticket.record
    return export_snn_unrolled_onnx(ticket, r.model.input_shape, r.timesteps, out,
                                    metadata={"slt_deploy.source_ticket": str(ticket_path)})


FORMATS: Dict[str, Callable[[Ticket, Path, Path], Path]] = {
    "nir": _nir,
    "onnx": _onnx,
    "onnx-snn": _onnx_snn,
}


def export_ticket(ticket_path: str | Path, fmt: str, out: str | Path,
                  formats: Dict[str, Callable[[Ticket, Path, Path], Path]] = FORMATS) -> Path:
    """Write the ticket at ``ticket_path`` in format ``fmt`` to ``out`` (atomically).

    ``formats`` is the writer table (default: this stage's); the command line adds the compile stage's
    (``netx``, see :data:`slt_deploy.compile.FORMATS`).
    """
    if fmt not in formats:
        raise ConfigError(f"unknown export format {fmt!r}; available: {', '.join(formats)}")
    check_output_path(out)  # before any work: a device, FIFO or unwritable folder is refused here
    ticket_path = Path(ticket_path)
    ticket = Ticket.load(ticket_path)
    return formats[fmt](ticket, ticket_path, Path(out))
