"""Typed records: the one way every JSON file the toolkit writes and reads back is defined, checked and loaded.

A record is a small pydantic v2 model (:class:`Record`): unknown keys are refused, NaN and infinities are refused,
numbers are not strings (``"1"`` is not 1), and instances are frozen. A file-level record (:class:`FileRecord`)
also carries ``schema_version``; a file written by another version of the toolkit, or by anything else, is
refused rather than half-read.

:func:`load_record` is the one loader: it reads the file through :mod:`slt_deploy.yamlio` (size cap, UTF-8,
duplicate keys, NaN constants refused), validates it against the model and turns the first problem into one
line naming the file and the field::

    runs/x/front.json: points.0.cost: Field required

:func:`dump_record` writes a record atomically (:func:`slt_deploy.utils.write_json_atomic`); :func:`json_schema`
is the JSON Schema pydantic generates from the model, shipped with the package for every file-level record.

Paths inside a record (:class:`RunPath`) are relative to the folder the file lives in and must stay inside it:
an absolute path, ``..`` or a symlink that resolves outside the folder is refused (:func:`inside`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Type, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict

from .errors import ConfigError, SltError
from .limits import short
from .utils import write_json_atomic
from .yamlio import load_text, read_text

R = TypeVar("R", bound="Record")


class Record(BaseModel):
    """A typed piece of a file: no unknown keys, no NaN or infinity, no silent type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              validate_default=True)


class FileRecord(Record):
    """A whole file. Subclasses fix ``SCHEMA_VERSION`` and declare ``schema_version: Literal[<that>]`` so that
    pydantic refuses any other version by name."""

    SCHEMA_VERSION: ClassVar[str] = ""


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _first_error(exc: pydantic.ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    msg = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
        msg = f"{msg} (got {short(err['input'])})"
    more = exc.error_count() - 1
    return f"{_location(err['loc'])}: {msg}" + (f" (and {more} more)" if more else "")


def validate_record(model: Type[R], data: Any, where: str, error: Type[SltError] = ConfigError,
                    **context: Any) -> R:
    """``data`` (parsed JSON) as a ``model``; one line ``where: field: reason`` on the first problem.
    ``context`` reaches field validators (for example ``root=`` for :class:`RunPath` fields)."""
    try:
        return model.model_validate(data, context=context or None)
    except pydantic.ValidationError as exc:
        raise error(f"{where}: {_first_error(exc)}") from None


def load_record(path: str | Path, model: Type[R], what: str | None = None,
                error: Type[SltError] = ConfigError, allow_infinity: bool = False, **context: Any) -> R:
    """The file at ``path`` read, parsed as JSON and validated as ``model``; every problem is one line naming
    the file and the field. ``context`` is passed to the model's validators (``root`` defaults to the file's
    folder, for :class:`RunPath` fields). ``allow_infinity``: the file may hold ``Infinity`` (open interval
    ends; the model's fields say where), never NaN."""
    p = Path(path)
    if p.is_symlink() and "root" in context and not _is_inside(p.resolve(), Path(context["root"])):
        raise error(f"{p}: a symbolic link to a file outside {context['root']}")
    text = read_text(p, what or model.__name__, error)
    try:
        data = load_text(text, "json", infinity=allow_infinity)
    except ValueError as exc:
        raise error(f"{p}: {exc}") from None
    context.setdefault("root", p.parent)
    return validate_record(model, data, str(p), error, **context)


def dump_record(record: Record, path: str | Path) -> None:
    """Write ``record`` as JSON, atomically (the file is either the old one or the whole new one)."""
    write_json_atomic(path, record.model_dump(mode="json"))


def json_schema(model: Type[Record]) -> dict:
    """The JSON Schema of ``model`` (pydantic's own generator)."""
    return model.model_json_schema()


def schema_text(model: Type[Record]) -> str:
    """The JSON Schema as the text shipped with the package (stable key order, so a test can compare it)."""
    return json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n"


def _is_inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
        return True
    except ValueError:
        return False


def inside(root: str | Path, relative: str, field: str = "path") -> Path:
    """``root / relative`` when it stays inside ``root`` (symlinks resolved); raises ValueError otherwise, so
    that a pydantic validator turns it into the field's error."""
    rel = Path(relative)
    if not relative or rel.is_absolute():
        raise ValueError(f"{field} must be a path relative to {root}, not {short(relative)}")
    target = (Path(root) / rel).resolve()
    if not _is_inside(target, Path(root)):
        raise ValueError(f"{field} {short(relative)} leaves the folder {root}")
    return Path(root) / rel


def _check_run_path(value: str, info: pydantic.ValidationInfo) -> str:
    root = (info.context or {}).get("root")
    if root is not None:
        inside(root, value, "path")
    elif Path(value).is_absolute() or ".." in Path(value).parts:
        raise ValueError(f"path must be relative and stay in its folder, not {short(value)}")
    return value


# A path written in a record: relative to the record's folder and never leaving it.
RunPath = Annotated[str, pydantic.AfterValidator(_check_run_path)]
