"""The machinery every search method shares: a run directory, seeded models, and resumable training phases.

A *phase* is a stretch of training with a name (``round_03``, ``eb_search``, ``final``...). After every epoch
it writes a checkpoint (model, optimizer, epoch, history, callback state) atomically; when it ends it writes a
``done`` file. Re-running the same command skips finished phases and resumes the current one from its last
checkpoint. Because every random draw is seeded from (seed, phase, epoch), the resumed run finishes with the
same ticket as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from safetensors import safe_open
from safetensors.torch import save

from ..config import RunConfig
from ..errors import RunDirError, SltError
from ..data import DatasetSplit
from .masks import Mask, apply_mask
from ..models import SpikingNet, initial_model, prunable_layers
from ..paths import RunPaths
from ..records import Record, validate_record
from ..run_files import load_log, meta_model, parse_meta, write_log
from ..ticket import Ticket, TicketRecord
from .train import accuracy, make_optimizer, train_epoch
from ..utils import derive_seed, deterministic_torch, device_name, resolve_device, write_bytes_atomic, \
    write_json_atomic

# Which time loop trains on which device kind: layer by layer over all T steps on a GPU (fewer, larger
# kernels; benchmarks/gpu.py measures both), the per-step snnTorch loop on a CPU, where the layer-wise
# path gains nothing (measured, issue 16). Both give the same spikes (tests/test_device.py).
LAYERWISE_ON = {"cuda": True, "cpu": False}


def save_state(path, model: torch.nn.Module, meta: dict, optimizer: Optional[torch.optim.Optimizer] = None,
               extra: Optional[Dict[str, torch.Tensor]] = None) -> None:
    """Model (and optimizer) state plus JSON metadata in one safetensors file, written atomically."""
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    if optimizer is not None:
        opt = optimizer.state_dict()
        for idx, st in opt["state"].items():
            for key, value in st.items():
                tensors[f"optim/{idx}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
        meta = dict(meta, param_groups=opt["param_groups"])
    for k, v in (extra or {}).items():
        tensors[f"extra/{k}"] = v.detach().cpu().contiguous().clone()
    record = validate_record(meta_model(Path(path)), meta, f"{path}: meta", RunDirError)  # as it is read back
    text = json.dumps(record.model_dump(mode="json", exclude_none=True))
    write_bytes_atomic(path, save(tensors, metadata={"meta": text}))  # see Ticket.save


def load_state(path, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer] = None,
               callback: Optional["EpochCallback"] = None) -> Tuple[Record, Dict[str, torch.Tensor]]:
    """A checkpoint of this run back into ``model`` (and ``optimizer``, and ``callback``'s state); its meta is
    the record :mod:`slt_deploy.run_files` defines for the file, every tensor finite. A damaged one is one
    RunDirError naming it (it was written by an earlier run of this toolkit, so anything wrong means damage on
    disk)."""
    try:
        return _load_state(path, model, optimizer, callback)
    except SltError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise RunDirError(f"{path}: damaged checkpoint ({type(exc).__name__}: {text}); delete it to redo that "
                          f"part of the run") from None


def _load_state(path, model, optimizer, callback):
    with safe_open(str(path), framework="pt") as f:
        meta = parse_meta(path, (f.metadata() or {}).get("meta"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise RunDirError(f"{path}: {k}: holds NaN or infinite values; delete it to redo that part of the run")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    if optimizer is not None and getattr(meta, "param_groups", None) is not None:
        state: Dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                _, idx, key = k.split("/", 2)
                state.setdefault(int(idx), {})[key] = v
        optimizer.load_state_dict({"state": state, "param_groups": meta.param_groups})
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra/")}
    if callback is not None:
        try:
            callback.load(meta.callback, extra)
        except SltError as exc:  # the callback names the field, the file is this one
            raise RunDirError(f"{path}: meta: {exc}") from None
    return meta, extra


class EpochCallback:
    """Hook run after each epoch of a phase; its state is checkpointed with the phase (Early-Bird's FIFO)."""

    def after_epoch(self, epoch: int, model: SpikingNet) -> bool:
        """Return True to end the phase early."""
        return False

    def state(self) -> Tuple[dict, Dict[str, torch.Tensor]]:
        return {}, {}

    def load(self, meta: dict, tensors: Dict[str, torch.Tensor]) -> None:
        pass


@dataclass
class PhaseResult:
    model: SpikingNet
    seconds: float
    history: List[dict]
    epochs_run: int
    callback_meta: dict = field(default_factory=dict)


class SearchContext:
    """What a search method needs: settings, data, paths, seeded models, phases, round tickets."""

    def __init__(self, config: RunConfig, model_config, split: DatasetSplit, paths: RunPaths,
                 progress: bool = True, echo: Callable[[str], None] = print, meter=None, holdout=None):
        self.config = config
        self.meter = meter      # energy objective: the cost stage's round meter (slt_deploy.cost.objective)
        self.holdout = holdout  # energy objective: training samples held out of training, for measuring
        self.model_config = model_config  # resolved against the dataset
        self.split = split
        self.paths = paths
        self.progress = progress
        self.echo = echo
        self.rounds: List[dict] = []
        self._logged: Optional[List[dict]] = None  # log.jsonl as found (read once, when the first line is logged)
        self.device = resolve_device(config.train.device)  # a missing GPU fails here, before any file is written
        deterministic_torch(self.device)

    def to_device(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move a model (built on the CPU, so its initial weights do not depend on the device) to the device,
        and pick the time loop for that device kind."""
        model.to(self.device)
        for m in model.modules():
            if isinstance(m, SpikingNet):
                m.layerwise = LAYERWISE_ON.get(self.device.type, False)
        return model

    # -- models -------------------------------------------------------------------------------------
    def new_model(self) -> SpikingNet:
        """The network at initialization (the same weights every time for a given seed), or at the user's
        weights (``model.weights``): IMP and Early-Bird start from this and rewind to it."""
        torch.manual_seed(derive_seed(self.config.search.seed, "init"))
        return initial_model(self.model_config)

    def train_fingerprint(self):
        """The training split's fingerprint, recorded in every ticket (computed once)."""
        if getattr(self, "_fingerprint", None) is None:
            from ..data import fingerprint

            self._fingerprint = fingerprint(self.split.train, self.config.data.path)
        return self._fingerprint

    def layers(self, model: SpikingNet):
        return prunable_layers(model, self.config.search.prunable)

    def dense_mask(self, model: SpikingNet) -> Mask:
        return Mask.ones_like(self.layers(model))

    # -- training phases ----------------------------------------------------------------------------
    def train_phase(self, phase: str, model: SpikingNet, mask: Mask, timesteps: int, first_epoch: int = 0,
                    last_epoch: Optional[int] = None, callback: Optional[EpochCallback] = None,
                    save_rewind_at: Optional[int] = None) -> PhaseResult:
        """Train ``model`` (already holding its start weights) on epochs [first_epoch, last_epoch)."""
        cfg = self.config
        last_epoch = cfg.train.epochs if last_epoch is None else last_epoch
        self.to_device(model)
        layers = self.layers(model)
        mask = {name: keep.to(self.device) for name, keep in mask.items()}  # copied once, not every step
        apply_mask(layers, mask)
        optimizer = make_optimizer(model, cfg.train)
        done, ckpt = self.paths.phase_done(phase), self.paths.checkpoint(phase)
        callback = callback or EpochCallback()
        if done.exists():
            meta, _ = load_state(done, model, callback=callback)
            return PhaseResult(model, meta.seconds, _history(meta), meta.epochs_run, meta.callback)
        history: List[dict] = []
        seconds, epoch, stop = 0.0, first_epoch, False
        if ckpt.exists():
            meta, _ = load_state(ckpt, model, optimizer, callback)
            history, seconds, epoch = _history(meta), meta.seconds, meta.next_epoch
            stop = meta.stopped  # a callback ended the phase just before the crash
            self.echo(f"  {phase}: resuming at epoch {epoch + 1}")
        if save_rewind_at is not None and save_rewind_at == epoch == first_epoch and not self.paths.rewind_state.exists():
            save_state(self.paths.rewind_state, model, {"epoch": epoch})
        while epoch < last_epoch and not stop:
            start = time.perf_counter()
            stats = train_epoch(model, self.split.train, cfg.data, cfg.train, optimizer, layers, mask, epoch,
                                (cfg.search.seed, phase), timesteps, progress=self.progress,
                                desc=f"{phase} epoch {epoch + 1}/{last_epoch}", spike_penalty=cfg.search.spike_penalty)
            stop = callback.after_epoch(epoch, model)
            epoch += 1
            seconds += time.perf_counter() - start
            history.append({"epoch": epoch, "loss": round(stats.loss, 6),
                            "train_accuracy": round(stats.train_accuracy, 6), "lr": stats.lr})
            if stats.spike_rates is not None:  # the activity regulariser, logged per epoch
                history[-1].update(spike_penalty=round(stats.penalty, 6),
                                   spike_rates={k: round(v, 6) for k, v in stats.spike_rates.items()})
            if save_rewind_at is not None and epoch == save_rewind_at:
                save_state(self.paths.rewind_state, model, {"epoch": epoch})
            cb_meta, cb_tensors = callback.state()
            save_state(ckpt, model, {"history": history, "seconds": seconds, "next_epoch": epoch,
                                     "stopped": stop, "callback": cb_meta}, optimizer, cb_tensors)
        cb_meta, cb_tensors = callback.state()
        epochs_run = epoch - first_epoch
        save_state(done, model, {"history": history, "seconds": seconds, "epochs_run": epochs_run,
                                 "callback": cb_meta}, extra=cb_tensors)
        ckpt.unlink(missing_ok=True)
        return PhaseResult(model, seconds, history, epochs_run, cb_meta)

    def load_rewind(self, model: SpikingNet) -> int:
        meta, _ = load_state(self.paths.rewind_state, model)
        return meta.epoch

    # -- results ------------------------------------------------------------------------------------
    def test_accuracy(self, model: SpikingNet, timesteps: int) -> float:
        return accuracy(model, self.split.test, self.config.data, timesteps, (self.config.search.seed,))

    def save_ticket(self, path, model: SpikingNet, mask: Mask, *, method: str, round: int, timesteps: int,
                    wall_time_s: List[float], extra: dict) -> Ticket:
        """Evaluate at ``timesteps``, snapshot as a ticket, and write it (skipped if it already exists)."""
        if path.exists():
            return Ticket.load(path)
        cfg = self.config
        fp = self.train_fingerprint()
        record = TicketRecord(
            model=self.model_config, method=method, hyperparameters=cfg.to_dict(runtime=False),
            timesteps=timesteps, encoding=cfg.data.encoding, dataset=cfg.data.dataset, seed=cfg.search.seed,
            round=round, accuracy=self.test_accuracy(model, timesteps), wall_time_s=[round_(s) for s in wall_time_s],
            extra=dict(extra, trained_on=device_name(self.device)), train_data=fp.record())
        ticket = Ticket.from_model(model, mask, record)
        ticket.train_hashes = torch.from_numpy(fp.hashes)
        ticket.save(path)
        return ticket

    def log_round(self, label: str, seconds: float, ticket: Optional[Ticket] = None, **facts) -> None:
        """Append one line to the run's JSON-lines log (rewritten whole, atomically) and echo it."""
        line = {"label": label, "seconds": round_(seconds), **facts}
        if ticket is not None:
            r = ticket.record
            line.update(round=r.round, method=r.method, sparsity=round_(r.sparsity, 6), accuracy=r.accuracy,
                        timesteps=r.timesteps, layer_sparsity={k: round_(v, 6) for k, v in r.layer_sparsity.items()})
        self.rounds.append(line)
        if self._logged is None:  # the log so far: a resumed run replaying finished rounds rewrites nothing
            self._logged = [x.model_dump(exclude_none=True) for x in load_log(self.paths.log)] \
                if self.paths.log.exists() else []
        write_log(self.paths.log, self.rounds, unless=self._logged)
        text = f"  {label}:"
        if ticket is not None:
            text += (f" sparsity {100 * ticket.record.sparsity:6.2f} %  accuracy {100 * ticket.record.accuracy:6.2f} %"
                     f"  T={ticket.record.timesteps}")
        text += "".join(f"  {k}={v}" for k, v in facts.items() if not isinstance(v, (list, dict)))
        self.echo(text + f"  ({seconds:.1f} s)")


def _history(meta) -> List[dict]:
    """A phase's epochs as the plain dicts the methods read (unset optional facts left out)."""
    return [h.model_dump(exclude_none=True) for h in meta.history]


def round_(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


def write_config(paths: RunPaths, config: RunConfig) -> None:
    write_json_atomic(paths.config, config.to_dict(runtime=False))
