"""The files of a search's run directory as typed records: what the search writes is what a resumed search, a
sweep, ``inspect`` and ``deploy`` read back (the mechanism: :mod:`slt_deploy.records`; every path:
:mod:`slt_deploy.paths`).

============================  ==========================================  ======================================
file                          record                                      read back by
============================  ==========================================  ======================================
``config.json``               the run's :class:`~slt_deploy.config.RunConfig` (strict: numbers are numbers)
                                                                          a resumed search, a sweep
``log.jsonl``                 :class:`LogLine`, one per line              a resumed search, benchmarks
``rounds/*.cost.json``        :class:`CostFile`                           a resumed energy search, ``deploy``
``front.json``                :class:`FrontFile` (its points' ``cost``    ``inspect``, ``deploy``
                              and ``ticket`` paths stay in the run
                              directory and agree with the cost files)
``phases/*/checkpoint``,      safetensors whose ``meta`` is a             a resumed search
``phases/*/done``,            :class:`CheckpointMeta`, :class:`PhaseDone`
``rewind.safetensors``        or :class:`RewindMeta`; tensors finite
                              (checked when loaded)
tickets                       :class:`slt_deploy.ticket.TicketRecord`     everything
============================  ==========================================  ======================================

Every problem is one line naming the file and the field (:class:`RunDirError`, exit 2), found before anything is
written: :func:`check_run_dir` reads every file of an existing run directory when a search or a sweep starts.
A symbolic link that leaves the run directory is refused wherever it is. The JSON files carry
``schema_version`` "1"; a file without it (written before it was added, with the same fields) reads as "1".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Sequence, Tuple, Type

from pydantic import Field, model_validator

from .config import RunConfig
from .errors import ConfigError, RunDirError
from .limits import short
from .paths import RunPaths
from .records import FileRecord, Record, RunPath, dump_record, dump_records, load_record, load_records, \
    validate_record


NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]
Steps = Annotated[int, Field(ge=1)]
Round = Annotated[int, Field(ge=0, le=100_000)]  # the ticket record's range
EnergyKind = Literal["exact", "lower bound", "upper bound", "estimate", "unknown"]
RUN_FILE_VERSION = "1"  # of cost.json and front.json


# ------------------------------------------------------------------------------------ energy objective

class LayerCounts(Record):
    """One layer's measured counts per sample (the fields of :class:`slt_deploy.cost.activity.LayerActivity`,
    which a test pins equal)."""

    name: str
    kind: str
    population: str
    input_events: NonNegative
    effective_synops: NonNegative
    dense_ops: NonNegative
    input_binary: bool
    neuron_updates: NonNegative
    output_spikes: NonNegative
    weights: Count
    nonzero_weights: Count
    neurons: Count
    fan_in: Count
    fan_out: Count
    computed_once: bool = False
    from_input: bool = False


class Measured(Record):
    """A network measured at one T on the held-out samples: its counts per sample and its energy on the run's
    profile. A round's cost file holds them, and its point on the front repeats them."""

    timesteps: Steps
    spikes: NonNegative
    synops: NonNegative
    acs: NonNegative
    macs: NonNegative
    neuron_updates: NonNegative
    energy_j: NonNegative
    energy_kind: EnergyKind


class CostFile(Measured, FileRecord):
    """``rounds/round_KK_TT.cost.json``: one round's network measured at one T on the held-out samples
    (:func:`slt_deploy.cost.objective.cost_entry` plus the run's accuracy and time; round 0 at T adds
    Early-Time's ``t_early``)."""

    SCHEMA_VERSION = RUN_FILE_VERSION
    schema_version: Literal[RUN_FILE_VERSION] = RUN_FILE_VERSION
    energy_components: Dict[str, NonNegative]
    profile: str
    host: str
    host_first_layer: bool
    layers: Annotated[List[LayerCounts], Field(min_length=1)]
    source: str
    counted_samples: Annotated[int, Field(ge=1)]
    accuracy: Fraction
    samples: Annotated[int, Field(ge=1)]
    seconds: NonNegative
    t_early: Optional[Steps] = None

    @model_validator(mode="after")
    def _t_early_within_t(self):
        if self.t_early is not None and self.t_early > self.timesteps:
            raise ValueError(f"t_early={self.t_early} is more than timesteps={self.timesteps}")
        return self

    def entry(self) -> dict:
        """As the cost stage's dict (:func:`slt_deploy.cost.objective.recost` takes it)."""
        return self.model_dump(exclude={"schema_version"})


class Point(Measured):
    """One ticket at one T on the front: its measured held-out accuracy and energy (``cost``) and its file."""

    round: Round
    label: str
    trained_at: Steps
    ticket: RunPath
    cost: RunPath
    sparsity: Fraction
    accuracy: Fraction
    test_accuracy: Optional[Fraction]

    @property
    def key(self) -> Tuple[int, int]:
        return self.round, self.timesteps


class FrontFile(FileRecord):
    """``front.json``: every round's point, the non-dominated ones (``front``) and the chosen one (the search's
    ticket); see :mod:`slt_deploy.search.energy`."""

    SCHEMA_VERSION = RUN_FILE_VERSION
    schema_version: Literal[RUN_FILE_VERSION] = RUN_FILE_VERSION
    objective: Literal["energy"]
    profile: str
    host: str
    binary_synapses: bool
    accuracy_on: str
    reference_accuracy: Fraction
    max_accuracy_drop: NonNegative
    t_early: Steps
    timesteps: Steps
    measure_seconds: NonNegative
    points: Annotated[List[Point], Field(min_length=1)]
    front: Annotated[List[Point], Field(min_length=1)]
    chosen: Point

    @model_validator(mode="after")
    def _consistent(self):
        keys = [p.key for p in self.points]
        if len(set(keys)) != len(keys):
            raise ValueError("points: two points of the same round and T")
        for name, points in (("front", self.front), ("chosen", [self.chosen])):
            for p in points:
                if p not in self.points:
                    raise ValueError(f"{name}: {p.label!r} is not one of the points (or differs from it)")
        dense = [p for p in self.points if p.round == 0 and p.timesteps == self.timesteps]
        if not dense or dense[0].accuracy != self.reference_accuracy:
            raise ValueError("reference_accuracy: not the dense round's held-out accuracy at T")
        if self.t_early > self.timesteps:
            raise ValueError(f"t_early={self.t_early} is more than timesteps={self.timesteps}")
        return self


def load_cost(path: Path, root: Path) -> CostFile:
    return load_record(path, CostFile, "cost file", RunDirError, root=root)


def write_cost(path: Path, entry: dict) -> CostFile:
    """The meter's entry checked as a :class:`CostFile` and written (a value that could not be read back is
    refused here, before it is written)."""
    record = validate_record(CostFile, entry, str(path), RunDirError)
    dump_record(record, path, exclude_none=True)
    return record


def write_front(path: Path, data: dict) -> FrontFile:
    record = validate_record(FrontFile, data, str(path), RunDirError, root=path.parent)
    dump_record(record, path)
    return record


def load_front(run_dir: Path) -> Tuple[FrontFile, List[CostFile]]:
    """``front.json`` of an energy-objective run and each point's cost file, checked against each other: a point's
    accuracy, T and energy are its cost file's, and its ticket is there."""
    paths = RunPaths(Path(run_dir))
    root = paths.root
    if not paths.front.is_file() and not paths.front.is_symlink():
        raise RunDirError(f"{paths.front}: missing: a run directory needs its front.json (a search with --objective "
                          f"energy); give a ticket file otherwise")
    front = load_record(paths.front, FrontFile, "front file", RunDirError, root=root)
    costs = []
    for i, p in enumerate(front.points):
        where = f"{paths.front}: points.{i}"
        cost_path, ticket_path = root / p.cost, root / p.ticket
        for field, path in (("cost", cost_path), ("ticket", ticket_path)):
            if not path.is_file():
                raise RunDirError(f"{where}.{field}: {short(getattr(p, field))} is missing; run the same search "
                                  f"command again to measure it")
        cost = load_cost(cost_path, root)
        for field in ("accuracy", "timesteps", "energy_j", "energy_kind"):
            if getattr(p, field) != getattr(cost, field):
                raise RunDirError(f"{where}.{field}: {short(getattr(p, field))} is not its cost file's "
                                  f"{short(getattr(cost, field))} ({cost_path})")
        costs.append(cost)
    return front, costs


# ------------------------------------------------------------------------------------------ the run log

class LogLine(Record):
    """One line of ``log.jsonl``: a round (or phase) of the search, its ticket's figures and its facts."""

    label: str
    seconds: NonNegative
    round: Optional[Round] = None
    method: Optional[str] = None
    sparsity: Optional[Fraction] = None
    accuracy: Optional[Fraction] = None
    timesteps: Optional[Steps] = None
    layer_sparsity: Optional[Dict[str, Fraction]] = None
    # energy objective
    holdout_accuracy: Optional[Fraction] = None
    energy_j: Optional[NonNegative] = None
    energy_kind: Optional[EnergyKind] = None
    spikes: Optional[NonNegative] = None
    synops: Optional[NonNegative] = None
    measure_s: Optional[NonNegative] = None
    spike_penalty_by_epoch: Optional[List[NonNegative]] = None
    # Early-Bird
    drawn_epoch: Optional[Count] = None
    converged: Optional[bool] = None
    distances: Optional[List[Optional[NonNegative]]] = None  # None while the FIFO fills
    # Early-Time
    t_early: Optional[Steps] = None
    kl: Optional[List[float]] = None
    kl_normalized: Optional[List[float]] = None
    direction: Optional[str] = None


def write_log(path: Path, lines: List[dict], unless: Sequence[dict] = ()) -> None:
    """``lines`` as the run's log, unless the log already starts with exactly them (``unless``: its lines as
    found, dumped): a resumed run replaying its finished rounds leaves the file as it is."""
    records = [validate_record(LogLine, line, f"{path}: line {n}", RunDirError) for n, line in enumerate(lines, 1)]
    if [r.model_dump(exclude_none=True) for r in records] != list(unless[:len(records)]):
        dump_records(records, path)


def load_log(path: Path) -> List[LogLine]:
    return load_records(path, LogLine, "run log", RunDirError, root=path.parent)


# ----------------------------------------------------------------------------- checkpoints and markers

class EpochLog(Record):
    """One epoch of a phase's training history."""

    epoch: Annotated[int, Field(ge=1)]
    loss: NonNegative
    train_accuracy: Fraction
    lr: NonNegative
    spike_penalty: Optional[NonNegative] = None
    spike_rates: Optional[Dict[str, NonNegative]] = None


class PhaseDone(Record):
    """``phases/<phase>/done.safetensors``'s meta: a finished phase, skipped when the run resumes."""

    history: List[EpochLog]
    seconds: NonNegative
    epochs_run: Count
    callback: Dict[str, Any] = {}


class CheckpointMeta(Record):
    """``phases/<phase>/checkpoint.safetensors``'s meta: the last finished epoch of a phase in progress."""

    history: List[EpochLog]
    seconds: NonNegative
    next_epoch: Count
    stopped: bool = False
    callback: Dict[str, Any] = {}
    param_groups: Optional[List[Dict[str, Any]]] = None


class RewindMeta(Record):
    """``rewind.safetensors``'s meta: the epoch IMP rewinds to."""

    epoch: Count


def meta_model(path: Path) -> Type[Record]:
    """Which record a state file's meta is, from its name (:class:`slt_deploy.paths.RunPaths`)."""
    return {"done.safetensors": PhaseDone, "checkpoint.safetensors": CheckpointMeta}.get(path.name, RewindMeta)


def parse_meta(path: Path, text: Optional[str]) -> Record:
    """A state file's ``meta`` text as its record (one line naming the file and the field)."""
    if text is None:
        raise RunDirError(f"{path}: meta: missing (not a checkpoint of this toolkit)")
    from .yamlio import load_text

    try:
        data = load_text(text, "json")
    except ValueError as exc:
        raise RunDirError(f"{path}: meta: {exc}") from None
    return validate_record(meta_model(path), data, f"{path}: meta", RunDirError)


def read_meta(path: Path) -> Record:
    """A state file's meta alone (its tensors unread)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get("meta")
    except Exception as exc:  # safetensors raises its own kinds for a damaged header
        raise RunDirError(f"{path}: damaged checkpoint ({type(exc).__name__}: {short(str(exc))}); delete it to "
                          f"redo that part of the run") from None
    return parse_meta(path, text)


# ------------------------------------------------------------------------------------------ the whole run

def load_run_config(path: Path) -> RunConfig:
    """``config.json`` as the run's settings (strict: what the toolkit wrote, numbers as numbers)."""
    from .yamlio import read_file

    data = read_file(path, "run settings", RunDirError)
    try:
        return RunConfig.from_dict(data, where=str(path), strict=True)
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def _difference(mine: dict, theirs: dict, prefix: str = "") -> Optional[tuple]:
    """(dotted key, my value, their value) of the first setting that differs, or None."""
    for key, value in mine.items():
        other = theirs.get(key)
        if isinstance(value, dict) and isinstance(other, dict):
            found = _difference(value, other, f"{prefix}{key}.")
            if found:
                return found
        elif value != other:
            return f"{prefix}{key}", value, other
    return None


def _outside_links(root: Path) -> None:
    base = root.resolve()
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            target = p.resolve()
            if target != base and base not in target.parents:
                raise RunDirError(f"{p}: a symbolic link to {short(str(target))}, outside the run directory {root}")


def check_run_dir(paths: RunPaths, config: RunConfig) -> None:
    """Every file of an existing run directory read as its record, before a search resumes it (or a sweep
    starts): anything damaged is one line naming the file and the field, and nothing has been written yet.
    A missing file is not damage: the phase it records is redone."""
    root = paths.root
    if not root.is_dir():
        return
    _outside_links(root)
    if paths.config.exists():
        found = _difference(config.to_dict(runtime=False), load_run_config(paths.config).to_dict(runtime=False))
        if found:
            key, mine, theirs = found
            raise RunDirError(f"{paths.config}: {key}: {short(theirs)} is not this run's setting ({short(mine)}); "
                              f"the file was changed after the run started")
    if paths.log.exists():
        load_log(paths.log)
    for cost in sorted((root / "rounds").glob("*.cost.json")):
        load_cost(cost, root)
    if paths.front.exists():
        load_front(root)
    for state in sorted(root.glob("phases/*/*.safetensors")) + [paths.rewind_state]:
        if state.exists():
            read_meta(state)


__all__ = ["CheckpointMeta", "CostFile", "EpochLog", "FrontFile", "LayerCounts", "LogLine", "Measured", "PhaseDone",
           "Point", "RewindMeta", "RunDirError", "check_run_dir", "load_cost", "load_front", "load_log",
           "load_run_config", "parse_meta", "read_meta", "write_cost", "write_front", "write_log"]
