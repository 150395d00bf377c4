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
