"""Size limits checked against what a file *declares* before anything is allocated.

A hostile or damaged file can declare a billion-element weight, a million timesteps or a gigabyte header;
every reader compares the declared size with these limits first and refuses in one line. Genuinely large
networks raise them with ``slt-deploy --max-elements N`` or the environment (``SLT_DEPLOY_MAX_ELEMENTS``,
``SLT_DEPLOY_MAX_TIMESTEPS``, ``SLT_DEPLOY_MAX_TEXT_BYTES``).
"""

from __future__ import annotations

import os
import reprlib
from dataclasses import dataclass

from .errors import SltError

_ENV = {"max_elements": "SLT_DEPLOY_MAX_ELEMENTS", "max_timesteps": "SLT_DEPLOY_MAX_TIMESTEPS",
        "max_text_bytes": "SLT_DEPLOY_MAX_TEXT_BYTES"}


@dataclass(frozen=True)
class Limits:
    # 2**26 float32 = 256 MiB per model / file: ten times the largest shipped model (VGG-16, ~15 M weights)
    max_elements: int = 1 << 26
    max_timesteps: int = 100_000
    max_text_bytes: int = 16 << 20      # config, sweep and profile files, JSON headers of tickets
    max_yaml_nodes: int = 100_000       # YAML nodes after alias expansion (an alias bomb expands to billions)


def limits() -> Limits:
    """The limits in force: the defaults, raised or lowered by the environment."""
    values = {}
    for name, var in _ENV.items():
        text = os.environ.get(var)
        if text:
            try:
                values[name] = int(text)
                if values[name] < 1:
                    raise ValueError
            except ValueError:
                raise SltError(f"environment variable {var}={short(text)} must be a positive integer") from None
    return Limits(**values)


def set_max_elements(n: int) -> None:
    """Raise (or lower) the element limit for this process and its child processes (sweep workers)."""
    os.environ[_ENV["max_elements"]] = str(int(n))


def check_elements(count: int, where: str, what: str = "tensors") -> None:
    """Refuse ``count`` declared elements when it exceeds the limit (before they are allocated)."""
    limit = limits().max_elements
    if count > limit:
        raise SltError(f"{where}: {what}: {count:,} elements declared, more than the limit of {limit:,} "
                       f"(raise it with slt-deploy --max-elements N or SLT_DEPLOY_MAX_ELEMENTS for a genuinely "
                       f"large network)")


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 3


def short(value) -> str:
    """A bounded repr for error messages: a file's value may be megabytes long or span lines."""
    return " ".join(_REPR.repr(value).split())
