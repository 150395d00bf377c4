"""Small shared helpers: atomic writes and derived random seeds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import torch


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    A crash (even kill -9) leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared like any written file
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def derive_seed(*parts) -> int:
    """A 63-bit seed from the run seed and a purpose (e.g. ("train", round, epoch)).

    Every random draw of a search comes from a generator seeded this way, so a run resumed after a crash
    draws exactly what the uninterrupted run would have drawn.
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def registrar(table: Dict[type, Callable], what: str) -> Callable:
    """A decorator factory ``@handles(TypeA, TypeB)`` that registers one handler per type in ``table``
    (the exporter, compiler and executor each keep one handler per layer or node type) and refuses a type
    registered twice."""
    def handles(*types: type):
        def wrap(fn):
            for t in types:
                if t in table:
                    raise ValueError(f"{what} for {t.__name__} registered twice")
                table[t] = fn
            return fn
        return wrap
    return handles


def format_table(rows: List[Dict], columns: List[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (the first GPU when torch sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises :class:`~slt_deploy.errors.ConfigError` in one line for a GPU that is not there.
    """
    from .errors import ConfigError

    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not spec.startswith("cuda"):
        raise ConfigError(f"device {spec!r} is not one of: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r}: no CUDA GPU is available to torch {torch.__version__} here "
                          f"(use --device cpu or auto)")
    index = int(spec.split(":", 1)[1]) if ":" in spec else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``: what the ticket record says trained it."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def deterministic_torch(device: torch.device) -> None:
    """Ask torch for deterministic kernels, so a resumed GPU run repeats an uninterrupted one bit for bit.

    cuBLAS needs its workspace setting before its first use (set here unless the user set it); cuDNN's
    benchmark mode would pick kernels by timing, so it is turned off. Operations without a deterministic
    CUDA kernel only warn (``warn_only``) instead of failing the run.
    """
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
