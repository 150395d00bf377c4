"""The one reader of the toolkit's text files (config, sweep and hardware-profile files, YAML or JSON).

What it refuses, each in one line naming the file: a file larger than the text limit, binary or non-UTF-8
content, YAML alias bombs (the composed document is measured with every alias expanded, and refused above
:attr:`Limits.max_yaml_nodes`; a recursive alias is refused outright), duplicate keys (YAML and JSON both
silently keep the last one), and a document that is not a mapping. Error messages quote values through
:func:`slt_deploy.limits.short`, so a hostile file never prints more than a few dozen characters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Type

import yaml

from .errors import ConfigError, SltError
from .limits import limits, short


# libyaml's parser when PyYAML was built with it: ten times faster, and it bounds nesting depth itself
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_scalar(key_node)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise _Refused(f"duplicate key {short(key)} (line {line})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    pass


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document with every alias expanded (an alias is the same node object reused), memoized
    per node so that a bomb is measured in time linear in its *text*."""
    memo: Dict[int, int] = {}
    active: set = set()

    def size(node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise _Refused("recursive YAML alias (a node that contains itself)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        active.discard(key)
        memo[key] = total
        return total

    return size(root)


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return " ".join(str(problem).split()) + where


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"duplicate key {short(key)}")
        out[key] = value
    return out


def _refuse_constant(name):
    raise _Refused(f"{name} is not a number JSON allows")


def read_text(path: str | Path, what: str, error: Type[SltError] = ConfigError) -> str:
    """The file's text, refused when too large, binary or not UTF-8."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise error(f"{p}: not a file")
        cap = limits().max_text_bytes
        if size > cap:
            raise error(f"{p}: {what} is {size:,} bytes, more than the limit of {cap:,} "
                        f"(SLT_DEPLOY_MAX_TEXT_BYTES)")
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"{p}: cannot read {what} ({exc.strerror or exc})") from None
    if b"\x00" in raw:
        raise error(f"{p}: {what} is a binary file, not YAML or JSON text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None


def _infinity(name):
    if name == "NaN":
        _refuse_constant(name)
    return float(name)


def load_text(text: str, fmt: str, infinity: bool = False) -> Any:
    """Parse YAML or JSON text with the refusals above; raises ValueError with a one-line reason. ``infinity``:
    JSON's ``Infinity`` and ``-Infinity`` are read as numbers (an open end of an interval); NaN never is."""
    try:
        if fmt == "json":
            return json.loads(text, object_pairs_hook=_no_duplicates,
                              parse_constant=_infinity if infinity else _refuse_constant)
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            cap = limits().max_yaml_nodes
            if _expanded_size(root, cap) > cap:
                raise _Refused(f"more than {cap:,} YAML nodes once aliases are expanded (an alias bomb?)")
            return loader.construct_document(root)
        finally:
            getattr(loader, "dispose", lambda: None)()
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {_yaml_error(exc)}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_file(path: str | Path, what: str, error: Type[SltError] = ConfigError, mapping: bool = True) -> Any:
    """A YAML (or, for ``.json``, JSON) file's content; with ``mapping`` an empty file gives ``{}`` and
    anything but a mapping is refused."""
    p = Path(path)
    text = read_text(p, what, error)
    fmt = "json" if p.suffix.lower() == ".json" else "yaml"
    try:
        data = load_text(text, fmt)
    except ValueError as exc:
        raise error(f"{p}: {exc}") from None
    if mapping:
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise error(f"{p}: {what} must be a mapping (key: value), not a {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise error(f"{p}: {what}: key {short(bad[0])} is not a string")
    return data
