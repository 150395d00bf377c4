"""A sweep file -> validated, deduplicated jobs: ``base`` settings, the cartesian product of ``grid`` and every
``jobs`` entry combined with every grid point (an entry's own keys win over the grid's).

Every problem is one :class:`~slt_deploy.errors.ConfigError` naming the file and the key (or the job)."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..config import RunConfig, Settings
from ..errors import ConfigError
from .settings import SECTIONS, Job, SweepOptions, SweepSpec, top_keys
from .text import plain, show

#: A grid with more jobs than this runs only when asked twice (``--yes``): a typo in a grid can mean days of work.
MAX_JOBS_WITHOUT_YES = 10_000

Axes = List[Tuple[str, list]]  # (dotted key, its values), in the grid's order


def load_sweep(path: str | Path, yes: bool = False) -> SweepSpec:
    """Read and expand a sweep file; any problem is one ConfigError naming the file and the key."""
    from ..yamlio import read_file

    p = Path(path)
    data = read_file(p, "sweep file", mapping=False)  # parse_sweep says what a non-mapping should be
    return parse_sweep(data, where=str(p), name=p.stem, yes=yes)


def parse_sweep(data: Any, where: str = "sweep", name: str = "sweep", yes: bool = False) -> SweepSpec:
    """Expand a sweep mapping (the content of a sweep file) into validated, deduplicated jobs.

    More than :data:`MAX_JOBS_WITHOUT_YES` jobs are refused (before they are expanded) unless ``yes``."""
    _check_top_level(data, where)
    options = _options(data, where)
    base = _base(data, where)
    axes = _axes(data, where)
    entries = _entries(data, where)
    if not axes and entries == [{}]:
        raise ConfigError(f"{where}: nothing to run: give grid (dotted key -> list of values) and/or jobs")
    _check_size(axes, entries, where, yes)
    points = _grid_points(axes, where)
    swept = list(dict.fromkeys([k for p in points for k in p] + [k for e in entries for k in e]))
    jobs, duplicates = _jobs(base, points, entries, where)
    return SweepSpec(name=name, options=options, jobs=tuple(jobs), swept=tuple(swept), duplicates=duplicates,
                     source=where)


def _check_top_level(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(top_keys())}")
    unknown = sorted(set(map(str, data)) - set(top_keys()))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(top_keys())}")


def _options(data: dict, where: str) -> SweepOptions:
    try:
        return SweepOptions.from_dict({k: v for k, v in data.items() if k not in SECTIONS}, where="sweep")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {_strip(exc, 'sweep')}") from None


def _base(data: dict, where: str) -> Dict[str, Any]:
    base = {} if data.get("base") is None else data["base"]
    if not isinstance(base, dict):
        raise ConfigError(f"{where}: base: expected a mapping with sections model/data/train/search")
    return _flatten(base, f"{where}: base")


def _axes(data: dict, where: str) -> Axes:
    grid = {} if data.get("grid") is None else data["grid"]
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid: expected a mapping of dotted keys to lists of values")
    axes: Axes = []
    for key, values in grid.items():
        key = str(key)
        _check_key(key, f"{where}: grid")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid: {key}: expected a non-empty list of values, got {show(values)}")
        axes.append((key, values))
    return axes


def _entries(data: dict, where: str) -> List[Dict[str, Any]]:
    """The ``jobs`` entries, flattened to dotted keys; no ``jobs`` is one empty entry."""
    entries = data.get("jobs")
    if entries is None:
        entries = [{}]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: jobs: expected a non-empty list of mappings (dotted key -> value)")
    flats = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: jobs[{i}]: expected a mapping of dotted keys to values, got {show(entry)}")
        flats.append(_flatten(entry, f"{where}: jobs[{i}]"))
    return flats


def _check_size(axes: Axes, entries: list, where: str, yes: bool) -> None:
    count = math.prod(len(values) for _, values in axes) * len(entries)
    if count > MAX_JOBS_WITHOUT_YES and not yes:
        sizes = " x ".join(f"{len(values)} {key}" for key, values in axes)
        raise ConfigError(f"{where}: the sweep expands to {count:,} jobs ({sizes or 'grid'}"
                          f"{f' x {len(entries)} jobs entries' if len(entries) > 1 else ''}), more than "
                          f"{MAX_JOBS_WITHOUT_YES:,}: pass --yes to run them all")


def _grid_points(axes: Axes, where: str) -> List[Dict[str, Any]]:
    """The cartesian product of the grid's axes, each point a mapping of dotted keys."""
    points: List[Dict[str, Any]] = [{}]
    for key, values in axes:
        expanded = []
        for point in points:
            for value in values:
                # a grid key naming a whole section takes mappings: its values vary together
                extra = (_flatten(value, f"{where}: grid: {key}", prefix=key) if isinstance(value, dict)
                         else {key: value})
                expanded.append({**point, **extra})
        points = expanded
    return points


def _jobs(base: dict, points: list, entries: list, where: str) -> Tuple[List[Job], int]:
    """Every (entry, point) pair as a validated job; a job whose run name an earlier one has is dropped."""
    jobs: Dict[str, Job] = {}
    duplicates = 0
    total = len(points) * len(entries)
    for e_idx, entry in enumerate(entries):
        for p_idx, point in enumerate(points):
            overrides = {**point, **entry}
            settings = ", ".join(f"{k}={show(v)}" for k, v in overrides.items()) or "base settings"
            label = f"job {e_idx * len(points) + p_idx + 1}/{total} ({settings})"
            job = Job(_config(base, overrides, f"{where}: {label}"), {k: plain(v) for k, v in overrides.items()})
            if job.run_name in jobs:
                duplicates += 1
            else:
                jobs[job.run_name] = job
    return list(jobs.values()), duplicates


def _config(base: dict, overrides: dict, where: str) -> RunConfig:
    """The run settings of one job: ``base`` with ``overrides``, whose model and dataset are registered."""
    nested: dict = {}
    for key, value in {**base, **overrides}.items():
        _set(nested, key, copy.deepcopy(value))
    try:
        config = RunConfig.from_dict(nested, where="settings")
    except ConfigError as exc:
        raise ConfigError(f"{where}: {_strip(exc, 'settings')}") from None
    models, datasets = _registries()
    if config.model.name not in models:
        raise ConfigError(f"{where}: model.name={config.model.name!r} is not a registered model "
                          f"(available: {', '.join(models)})")
    if config.data.dataset not in datasets:
        raise ConfigError(f"{where}: data.dataset={config.data.dataset!r} is not a registered "
                          f"dataset (available: {', '.join(datasets)})")
    return config


def _strip(exc: ConfigError, prefix: str) -> str:
    """A Settings error without the placeholder name given to from_dict ("settings.data.timesteps: ...")."""
    text = str(exc)
    return text[len(prefix) + 1:].lstrip() if text.startswith((prefix + ".", prefix + ":")) else text


def _registries():
    from ..data import DATASETS
    from ..models import MODELS

    return list(MODELS), list(DATASETS)


def _check_key(key: str, where: str) -> bool:
    """Check a dotted RunConfig key (``model.neuron.beta``); True when it names a whole section."""
    cls: type = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            scope = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"{where}: unknown key {key!r} ({part!r} is not in {scope}; valid: {', '.join(fields)})")
        hint = typing.get_type_hints(cls)[part]
        if isinstance(hint, type) and issubclass(hint, Settings):
            cls = hint
        elif i < len(parts) - 1:
            raise ConfigError(f"{where}: unknown key {key!r} ({'.'.join(parts[:i + 1])} is a setting, not a section)")
        else:
            return False
    return True


def _flatten(mapping: dict, where: str, prefix: str = "") -> Dict[str, Any]:
    """``{search: {method: imp}, data.timesteps: 4}`` -> ``{search.method: imp, data.timesteps: 4}``, checked."""
    out: Dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if _check_key(full, where):
            if value is None:  # an empty section in YAML ("model:") means its defaults
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {full} is a section: expected a mapping, got {show(value)}")
            out.update(_flatten(value, where, full))
        else:
            out[full] = value
    return out


def _set(nested: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = nested
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value
