"""One driver per sweep (a lock file in its ``out`` folder), and SIGTERM stopping the driver like Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import socket
import typing
from pathlib import Path

from ..errors import SltError
from .text import now


@contextlib.contextmanager
def sweep_lock(out_dir: Path) -> typing.Iterator[Path]:
    """Hold ``<out>/.sweep.lock`` while the sweep runs, so a second driver on the same sweep stops at once.

    An ``flock`` on the file is the lock (the kernel drops it when its holder dies, even by kill -9, so no stale
    lock needs clearing); the file's text says who holds it."""
    import fcntl

    from ..utils import output_error

    path = out_dir / ".sweep.lock"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise output_error(path, exc, "cannot create the sweep's lock file") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = " ".join(handle.read().split()) or "another process"
            raise SltError(f"{out_dir}: another sweep driver is running this sweep ({holder}); wait for it to "
                           f"finish or stop it, then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on host {socket.gethostname()} since {now()}\n")
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_to_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt in the driver (main thread only). Called again after ``ray.init``,
    whose C++ runtime installs a handler that dumps a stack trace and aborts."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


@contextlib.contextmanager
def sigterm_interrupts() -> typing.Iterator[None]:
    """SIGTERM stops the driver like Ctrl-C (jobs in flight cancelled, tables written)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    sigterm_to_interrupt()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
