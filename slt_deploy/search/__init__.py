"""The search stage: find a winning ticket of a spiking network.

Takes a :class:`~slt_deploy.config.RunConfig` (model, data, training and search settings); gives a ticket
(:mod:`slt_deploy.ticket`) in a run directory named by the configuration. Modules: one per method, plus
:mod:`.masks` (mask operations), :mod:`.train` (the training loop), :mod:`.run` (checkpoints, resuming) and
:mod:`.rounds` (the hook a method calls at each of its rounds: the objective).

Methods (registry :data:`METHODS`): ``dense`` (no pruning), ``imp`` (iterative magnitude pruning with
rewinding), ``eb`` (Early-Bird), ``random`` (random-ticket baseline), ``biprop`` (binary multi-prize ticket
of the untrained network: MPSLT, or MPLT for an ANN twin); ``search.early_time`` adds Early-Time to imp or eb. :func:`search` validates everything before it creates the run directory, then runs the method;
running it again with the same settings resumes (or returns) the same run.

``search.objective=energy`` (:mod:`.energy`, the hook :class:`.energy.EnergyRounds` on the methods' own rounds)
measures every round's accuracy, activity and energy on a profile with the cost stage's meter, which the caller
passes in (``meter=``), and keeps the accuracy-energy front.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from ..config import RunConfig
from ..data import describe_data, infer_dataset, load_dataset
from ..errors import ConfigError, OutputError
from ..models import initial_model, prunable_layers, resolve_config
from ..paths import RunPaths
from ..run_files import check_run_dir
from ..ticket import Ticket
from .baselines import reference_sparsity, run_dense, run_random
from .biprop import run_biprop
from .early_bird import run_eb
from .imp import run_imp
from .energy import EnergyRounds, holdout_split
from .rounds import RoundHook
from .run import SearchContext, write_config
from ..utils import check_output_dir, output_error, remove_stale_temp_files

#: method -> run(ctx, hook): its rounds, each reported to the objective's hook (:mod:`.rounds`)
METHODS: Dict[str, Callable[[SearchContext, RoundHook], Ticket]] = {
    "dense": run_dense,
    "imp": run_imp,
    "eb": run_eb,
    "random": run_random,
    "biprop": run_biprop,
}


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    ticket_path: Path
    ticket: Ticket


def _check_settings(config: RunConfig, ctx: SearchContext, models: Optional[dict] = None) -> None:
    """Everything that can be wrong with the settings, checked before anything is written."""
    s = config.search
    if s.method not in METHODS:
        raise ConfigError(f"unknown method {s.method!r}; available: {', '.join(METHODS)}")
    models = {} if models is None else models
    model = models.get(ctx.model_config)
    if model is None:  # the user's weights are read and checked here, before any write
        model = models[ctx.model_config] = initial_model(ctx.model_config)
    prunable_layers(model, s.prunable)  # unknown layer names -> ConfigError
    if s.method == "imp" and s.rewind_epoch >= config.train.epochs:
        raise ConfigError(f"search.rewind_epoch={s.rewind_epoch} must be < train.epochs={config.train.epochs}")
    if s.method == "random":
        reference_sparsity(ctx, model)  # the reference ticket exists, is a ticket and fits this model


def check_search(config: RunConfig, runs_dir: str | Path = "runs", cache: Optional[dict] = None,
                 meter=None) -> None:
    """Every check :func:`search` makes before it writes anything: the runs folder is writable, the data loads,
    the model builds with its prunable layers, cross-field rules, the reference ticket. A sweep runs it over all
    its jobs before the first one starts; ``cache`` (one dict for all of them) keeps the datasets and models
    that several jobs share (a dataset is loaded once for every T: the shapes do not depend on T)."""
    _context(config, runs_dir, cache=cache, meter=meter)


def _context(config: RunConfig, runs_dir: str | Path, progress: bool = True, echo: Callable[[str], None] = print,
             cache: Optional[dict] = None, meter=None) -> SearchContext:
    cache = {} if cache is None else cache
    check_output_dir(runs_dir)
    config = config.replace(data=infer_dataset(config.data))  # --data-path alone picks the user's loader
    splits = cache.setdefault("splits", {})
    data_key = dataclasses.replace(config.data, timesteps=1)  # T bins event data but changes no shape
    split = splits.get(data_key)
    if split is None:
        split = splits[data_key] = load_dataset(config.data)
    model_config = resolve_config(config.model, split.train.input_shape, split.train.num_classes,
                                  describe_data(config.data))
    # a user model's source and weights hashes are settings: editing either starts a new run, never resumes
    config = config.replace(model=config.model.replace(name=model_config.name, weights=model_config.weights,
                                                       source_sha256=model_config.source_sha256,
                                                       weights_sha256=model_config.weights_sha256))
    paths = RunPaths(Path(runs_dir) / config.run_name())
    holdout = None
    if config.search.measures_energy:  # measured on training samples never trained on
        split, holdout = holdout_split(split, config.search.holdout)
    ctx = SearchContext(config, model_config, split, paths, progress=progress, echo=echo, meter=meter,
                        holdout=holdout)
    _check_settings(config, ctx, cache.setdefault("models", {}))
    check_run_dir(paths, config)  # a run to resume: every file it holds read as its record, before any write
    return ctx


def search(config: RunConfig, runs_dir: str | Path = "runs", progress: bool = True,
           echo: Callable[[str], None] = print, meter=None) -> SearchResult:
    """Run (or resume) the search described by ``config``; returns the final ticket.

    ``meter``: with ``search.objective=energy``, what costs a round (:func:`slt_deploy.cost.objective.round_meter`
    of the same config; the cost stage comes after the search, so the caller hands it over).

    A write that fails (full disk, folder turned read-only) ends it with one :class:`OutputError` line that
    says how to resume: the run directory keeps every finished epoch.
    """
    ctx = _context(config, runs_dir, progress=progress, echo=echo, meter=meter)
    config, paths, model_config = ctx.config, ctx.paths, ctx.model_config
    if config.search.measures_energy and meter is None:
        raise ConfigError("search.objective=energy needs the cost stage's meter: search(config, meter="
                          "slt_deploy.cost.objective.round_meter(config)); the slt-deploy commands pass it")
    resumed = paths.config.exists()
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        stale = remove_stale_temp_files(paths.root)
        write_config(paths, config)
        echo(f"{'resuming' if resumed else 'search'} {paths.root}  ({config.search.method}"
             f"{'+et' if config.search.early_time else ''}, {model_config.label()}, {config.data.dataset}, "
             f"T={config.data.timesteps}, seed {config.search.seed})")
        if stale:
            echo(f"  removed {len(stale)} temporary file(s) left by an interrupted write")
        start = time.perf_counter()
        hook = EnergyRounds(ctx) if config.search.measures_energy else RoundHook(ctx)
        ticket = METHODS[config.search.method](ctx, hook)
        ticket.save(paths.ticket)
        from .plots import plot_accuracy_vs_sparsity

        plot_accuracy_vs_sparsity(ctx.rounds, paths.plot, title=paths.root.name)
    except (OutputError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is None:
            raise
        text = str(exc) if isinstance(exc, OutputError) else str(output_error(exc.filename or paths.root, exc))
        raise OutputError(f"{text}; the search so far is kept in {paths.root}: make room or fix the folder, "
                          f"then run the same command again to resume") from None
    echo(f"ticket {paths.ticket}: sparsity {100 * ticket.record.sparsity:.2f} %, accuracy "
         f"{100 * ticket.record.accuracy:.2f} %, search time {sum(ticket.record.wall_time_s):.1f} s "
         f"(this invocation {time.perf_counter() - start:.1f} s)")
    return SearchResult(paths.root, paths.ticket, ticket)
