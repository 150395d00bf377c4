"""Small shared helpers: output paths checked and written atomically, and derived random seeds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import torch

from .errors import OutputError


# What a path that is not a regular file is, in words, for the refusal message.
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket"))
TEMP_SUFFIX = ".tmp"  # atomic_path's temporary files are ".<name>.<random>.tmp" beside their target


def _cause(exc: OSError) -> str:
    return exc.strerror or " ".join(str(exc).split()) or type(exc).__name__


def output_error(path: str | Path, exc: OSError, doing: str = "cannot write") -> OutputError:
    """An OS error (ENOSPC, EACCES, EROFS...) while writing ``path`` as one user-facing line."""
    return OutputError(f"{path}: {doing}: {_cause(exc)}")


def _existing_ancestor(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_folder(folder: Path, shown: str | Path, needed_bytes: int = 0) -> None:
    """``folder`` (or, when it does not exist yet, the nearest existing folder above it, where it would be
    created) is a writable folder with ``needed_bytes`` free."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(f"{shown}: cannot write: {base} is not a folder")
    # os.access asks the kernel, so a read-only mount says no even to root (who passes every mode check)
    if not os.access(base, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(base) else "permission denied"
        raise OutputError(f"{shown}: cannot write: {base} is not writable ({reason})")
    if needed_bytes > 0:
        try:
            fs = os.statvfs(base)
        except OSError:
            return  # no free-space figure (e.g. some network file systems): the write itself will tell
        free = fs.f_bavail * fs.f_frsize
        if free < needed_bytes:
            raise OutputError(f"{shown}: not enough free space in {base}: needs {_size(needed_bytes)}, "
                              f"{_size(free)} free")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def check_output_path(path: str | Path, needed_bytes: int = 0) -> Path:
    """Check, before any work, that a file can be written at ``path``; returns the path to write.

    The target must be a regular file or absent: a directory, device, FIFO or socket is refused (an atomic
    write would otherwise rename a new file over it). A symlink is followed, and its target is what is checked
    and written. The folder that will hold it (or the nearest existing folder above it, where the missing ones
    are created) must be writable and have ``needed_bytes`` free. Raises :class:`OutputError`.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # absent (a file on the way is named by the folder check below)
    except OSError as exc:  # ELOOP, EACCES on a folder on the way, ENAMETOOLONG...
        raise output_error(path, exc) from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        shown = f"{path} (-> {target})" if target != path else str(path)
        raise OutputError(f"{shown}: is {kind}, not a regular file: refusing to replace it; give a file path")
    _check_folder(target.parent, path, needed_bytes)
    return target


def check_output_dir(path: str | Path, needed_bytes: int = 0) -> Path:
    """Check, before any work, that ``path`` is (or can be created as) a writable folder."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"{path}: is not a folder: give a folder for the output files")
    _check_folder(path, path, needed_bytes)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, needed_bytes: int = 0) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    A crash (even kill -9) leaves either the old file or the new one, never half of one. The target is
    checked first (:func:`check_output_path`: a device, FIFO or folder is never replaced, a symlink is
    followed). An OS error while writing (full disk, permissions, read-only file system) becomes one
    :class:`OutputError` naming ``path``, and the temporary file is removed.
    """
    target = check_output_path(path, needed_bytes)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared like any written file
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise output_error(path, exc) from None
    finally:
        with contextlib.suppress(OSError):  # on a folder turned read-only even this fails; resume cleans it
            os.unlink(tmp)


def remove_stale_temp_files(folder: str | Path) -> List[Path]:
    """Remove the temporary files that writes killed mid-way (kill -9, power loss) left under ``folder``.

    Only :func:`atomic_path`'s own names (``.<name>.<random>.tmp``) are touched. Call it only where no other
    process is writing (a run directory at the start of its run)."""
    removed = []
    for p in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, after checking that it fits, and check the written size."""
    with atomic_path(path, needed_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
        written = tmp.stat().st_size
        if written != len(data):  # a file system that lost part of the write without an error
            raise OutputError(f"{path}: cannot write: {written} of {len(data)} bytes written")


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


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
