"""The search stage: find a winning ticket of a spiking network.

Takes a :class:`~slt_deploy.config.RunConfig` (model, data, training and search settings); gives a ticket
(:mod:`slt_deploy.ticket`) in a run directory named by the configuration. Modules: one per method, plus
:mod:`.masks` (mask operations), :mod:`.train` (the training loop) and :mod:`.run` (checkpoints, resuming).

Methods (registry :data:`METHODS`): ``dense`` (no pruning), ``imp`` (iterative magnitude pruning with
rewinding), ``eb`` (Early-Bird), ``random`` (random-ticket baseline), ``biprop`` (binary multi-prize ticket
of the untrained network: MPSLT, or MPLT for an ANN twin); ``search.early_time`` adds Early-Time to imp or eb. :func:`search` validates everything before it creates the run directory, then runs the method;
running it again with the same settings resumes (or returns) the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

from ..config import RunConfig
from ..data import infer_dataset, load_dataset
from ..errors import ConfigError
from ..models import initial_model, prunable_layers, resolve_config
from ..paths import RunPaths
from ..ticket import Ticket
from .baselines import reference_sparsity, run_dense, run_random
from .biprop import run_biprop
from .early_bird import run_eb
from .imp import run_imp
from .run import SearchContext, write_config

METHODS: Dict[str, Callable[[SearchContext], Ticket]] = {
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


def _check_settings(config: RunConfig, ctx: SearchContext) -> None:
    """Everything that can be wrong with the settings, checked before anything is written."""
    s = config.search
    if s.method not in METHODS:
        raise ConfigError(f"unknown method {s.method!r}; available: {', '.join(METHODS)}")
    model = initial_model(ctx.model_config)  # the user's weights are read and checked here, before any write
    prunable_layers(model, s.prunable)  # unknown layer names -> ConfigError
    if s.method == "imp" and s.rewind_epoch >= config.train.epochs:
        raise ConfigError(f"search.rewind_epoch={s.rewind_epoch} must be < train.epochs={config.train.epochs}")
    if s.method == "random":
        reference_sparsity(ctx, model)


def search(config: RunConfig, runs_dir: str | Path = "runs", progress: bool = True,
           echo: Callable[[str], None] = print) -> SearchResult:
    """Run (or resume) the search described by ``config``; returns the final ticket.

    ``--data-path`` alone picks the user's data loader (``.npz``, image folder); a user model's source and
    weights hashes are part of the settings, so editing either starts a new run instead of resuming an old one.
    """
    config = config.replace(data=infer_dataset(config.data))
    split = load_dataset(config.data)
    model_config = resolve_config(config.model, split.train.input_shape, split.train.num_classes)
    config = config.replace(model=config.model.replace(name=model_config.name, weights=model_config.weights,
                                                       source_sha256=model_config.source_sha256,
                                                       weights_sha256=model_config.weights_sha256))
    paths = RunPaths(Path(runs_dir) / config.run_name())
    ctx = SearchContext(config, model_config, split, paths, progress=progress, echo=echo)
    _check_settings(config, ctx)

    resumed = paths.config.exists()
    paths.root.mkdir(parents=True, exist_ok=True)
    write_config(paths, config)
    echo(f"{'resuming' if resumed else 'search'} {paths.root}  ({config.search.method}"
         f"{'+et' if config.search.early_time else ''}, {model_config.label()}, {config.data.dataset}, "
         f"T={config.data.timesteps}, seed {config.search.seed})")
    start = time.perf_counter()
    ticket = METHODS[config.search.method](ctx)
    ticket.save(paths.ticket)
    from .plots import plot_accuracy_vs_sparsity

    plot_accuracy_vs_sparsity(ctx.rounds, paths.plot, title=paths.root.name)
    echo(f"ticket {paths.ticket}: sparsity {100 * ticket.record.sparsity:.2f} %, accuracy "
         f"{100 * ticket.record.accuracy:.2f} %, search time {sum(ticket.record.wall_time_s):.1f} s "
         f"(this invocation {time.perf_counter() - start:.1f} s)")
    return SearchResult(paths.root, paths.ticket, ticket)
