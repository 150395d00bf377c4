"""SynSense's Python libraries (rockpool, xylosim, sinabs) imported without ``samna``: the one workaround.

Why: every ``samna`` release on PyPI is a placeholder with no chip library in it, and importing it runs
``pip install --force-reinstall samna==<version>`` from SynSense's GitLab index (``samna/__init__.py`` of the
placeholder). sinabs declares samna as a dependency, so the placeholder is installed with it, and rockpool and
sinabs try ``import samna`` to find out whether a board can be used: that starts a pip subprocess (about 10 s
here, where GitLab cannot be reached; elsewhere it would replace a package of the user's environment). When the
installed samna is that placeholder, :func:`import_without_samna` marks samna as absent (``sys.modules["samna"]
= None``, Python's own way to make ``import samna`` fail with ImportError), so the libraries take their
documented no-samna paths. A real samna (a wheel with the chip library) is left alone.

What needs the real samna: writing a configuration to a Xylo or Speck board (rockpool's ``XyloSamna``,
``config_from_specification``; sinabs' ``DynapcnnNetwork.to(device)``). Everything here runs the vendors'
simulators only.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from ..errors import ConfigError

PLACEHOLDER_MARK = "install_real_samna"  # the placeholder's __init__ defines this function and calls it


def samna_is_placeholder() -> bool:
    """True when the installed ``samna`` is PyPI's placeholder (read from its source, never imported)."""
    spec = importlib.util.find_spec("samna") if "samna" not in sys.modules else None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    try:
        return PLACEHOLDER_MARK in Path(spec.origin).read_text(errors="replace")
    except OSError:
        return False


def import_without_samna(module: str, extra: str = "vendors"):
    """Import a SynSense module (``xylosim.v2``, ``sinabs.layers``, ...) with the placeholder samna kept out."""
    if samna_is_placeholder():
        sys.modules["samna"] = None  # import samna -> ImportError: the libraries' no-board path
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{module} is not installed ({exc}); it comes with the vendors extra: "
                          f"pip install -e \".[{extra}]\"") from None
