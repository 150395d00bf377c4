"""How the sweep writes values, errors, times and durations in its messages and tables."""

from __future__ import annotations

import json
from datetime import datetime, timezone


def plain(value):
    """A setting's value as JSON has it (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def show(value) -> str:
    """A value in one short line: lists and mappings as compact JSON, anything else as text."""
    return json.dumps(plain(value), separators=(",", ":")) if isinstance(value, (list, tuple, dict)) else str(value)


def error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
