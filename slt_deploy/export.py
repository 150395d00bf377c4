"""Stage 2 -- export: a ticket to the hand-off formats of deployment.

``nir``      the spiking network as a NIR graph (sparse and binary weights exact, with metadata)
``onnx``     the ANN counterpart (same architecture and mask, ReLU for LIF) for cost comparison / edge runtimes
``onnx-snn`` the SNN unrolled over the ticket's T timesteps, for standard edge runtimes
``netx``     lava-dl netx HDF5 (Intel's Loihi 2 flow)
Every writer checks what it wrote against the ticket it came from before the file appears.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict

from .errors import ConfigError
from .ticket import Ticket


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


def _netx(ticket: Ticket, ticket_path: Path, out: Path) -> Path:
    from .exporters.netx_format import write_netx
    from .exporters.nir_format import ticket_to_nir

    write_netx(ticket_to_nir(ticket, source=str(ticket_path)), out)
    return out


FORMATS: Dict[str, Callable[[Ticket, Path, Path], Path]] = {
    "nir": _nir,
    "onnx": _onnx,
    "onnx-snn": _onnx_snn,
    "netx": _netx,
}


def export_ticket(ticket_path: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the ticket at ``ticket_path`` in format ``fmt`` to ``out`` (atomically)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
    ticket_path = Path(ticket_path)
    ticket = Ticket.load(ticket_path)
    return FORMATS[fmt](ticket, ticket_path, Path(out))
