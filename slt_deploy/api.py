"""The Python API for your own snnTorch network: functions that take objects, not only paths.

```python
from slt_deploy import api

net = api.from_snntorch(my_module, input_shape=(1, 28, 28))           # a SpikingNet around your module
graph = api.export_nir(net)                                           # or api.export_nir("ticket.safetensors")
result = api.simulate(graph, x, backend="lava-float")                 # x: (N, T, C, H, W) numpy or torch
found = api.search(model="my_net.py:make", weights="w.safetensors", data="data.npz", method="imp")
out = api.deploy(found.ticket_path, profile="loihi", out="deploy_out")
```

Each function composes the stage APIs (:mod:`slt_deploy.search`, :mod:`slt_deploy.exporters.nir_format`,
:mod:`slt_deploy.simulate`, :mod:`slt_deploy.report`, :mod:`slt_deploy.deploy`); errors are the same
one-line :class:`~slt_deploy.errors.SltError` subclasses as on the command line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from .errors import ConfigError

__all__ = ["from_snntorch", "search", "export_nir", "simulate", "report", "deploy", "save_npz", "model_spec"]


def from_snntorch(module: nn.Module, input_shape: Sequence[int], num_classes: int = 0, name: str = "user"):
    """Wrap your snnTorch network as a :class:`~slt_deploy.models.SpikingNet` run over T steps.

    One-step networks (an ``nn.Sequential``, or a class whose ``forward`` handles one time step, neurons with
    ``init_hidden=True``) are used as they are (same parameters); a tutorial-style ``forward`` that loops over
    time is read one step at a time (same layer objects, neuron copies keeping their state inside). The form
    is checked as for ``--model file.py:factory``.
    """
    from .models import SpikingNet
    from .models.user import one_step_body

    body = one_step_body(module, tuple(int(d) for d in input_shape), name)
    cfg = ModelConfig(name=f"{name}:module", input_shape=tuple(int(d) for d in input_shape),
                      num_classes=int(num_classes))
    return SpikingNet(body, cfg)


def save_npz(path, x_train, y_train, x_test, y_test) -> Path:
    """Write arrays (numpy or torch) as the ``.npz`` that ``--data-path`` reads."""
    from .utils import atomic_path

    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
              for k, v in dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test).items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def model_spec(model) -> str:
    """``file.py:name`` of a factory function or class defined in a file (what a ticket records to rebuild it)."""
    import inspect

    if isinstance(model, str):
        return model
    factory = type(model) if isinstance(model, nn.Module) else model
    try:
        source = inspect.getsourcefile(factory)
    except TypeError:
        source = None
    if not callable(factory) or source is None or factory.__module__.split(".")[0] in ("torch", "snntorch") \
            or "<" in factory.__qualname__:
        raise ConfigError(f"cannot record how to rebuild {getattr(factory, '__qualname__', factory)!r}: pass the "
                          f"factory function (or class) from your own file, or 'path/to/file.py:factory'")
    return f"{Path(source).resolve()}:{factory.__qualname__}"


def search(*, model, data, method: str = "imp", model_args: Optional[Mapping[str, Any]] = None,
           weights: Optional[str] = None, timesteps: int = 5, epochs: int = 5, runs_dir: str | Path = "runs",
           progress: bool = True, **search_settings):
    """Search a ticket of your network.

    ``model``: ``file.py:factory``, ``module:factory``, a registered name, your factory function or class, or
    an instance of your ``nn.Module`` class (built again by its class with ``model_args``; its current weights
    are saved and the search starts from them). ``data``: a ``.npz`` path / image folder, a dict of arrays
    ``x_train, y_train, x_test, y_test``, or a pair ``(train, test)`` of DataLoaders / iterables of ``(x, y)``
    batches (arrays are written to ``runs_dir/data-<sha>.npz``, so the ticket finds them again). ``weights``:
    start from them (IMP and Early-Bird rewind to them with ``rewind_epoch=0``). Other keywords are
    :class:`~slt_deploy.config.SearchConfig` or :class:`~slt_deploy.config.TrainConfig` settings.
    """
    from .search import search as run_search

    if isinstance(model, nn.Module) and weights is None:
        weights = _save_weights(model, Path(runs_dir))
    model = model_spec(model)
    data = _as_data_path(data, Path(runs_dir))
    train_keys = {k: v for k, v in search_settings.items() if k in TrainConfig.__dataclass_fields__}
    search_keys = {k: v for k, v in search_settings.items() if k in SearchConfig.__dataclass_fields__}
    unknown = set(search_settings) - set(train_keys) - set(search_keys)
    if unknown:
        raise ConfigError(f"search: unknown setting(s) {', '.join(sorted(unknown))}")
    config = RunConfig(
        model=ModelConfig(name=model, args=json.dumps(dict(model_args or {}), sort_keys=True) if model_args else "",
                          weights=str(weights) if weights else None),
        data=DataConfig(path=str(data), timesteps=timesteps),
        train=TrainConfig(epochs=epochs, **train_keys),
        search=SearchConfig(method=method, **search_keys))
    from .cost.objective import round_meter

    return run_search(config, runs_dir, progress=progress, meter=round_meter(config))


def _save_weights(module: nn.Module, folder: Path) -> str:
    import hashlib

    from safetensors.torch import save_file

    from .utils import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    h = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"weights-{h}.safetensors"
    if not path.exists():
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))
    return str(path)


def _as_data_path(data, folder: Path):
    """A path as it is; arrays or a (train, test) pair of DataLoaders written as an .npz."""
    if isinstance(data, (str, Path)):
        return data
    if isinstance(data, Mapping):
        return _arrays_to_npz(data, folder)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        arrays = {}
        for split, loader in zip(("train", "test"), data):
            xs, ys = zip(*((torch.as_tensor(x), torch.as_tensor(y)) for x, y in loader))
            arrays[f"x_{split}"], arrays[f"y_{split}"] = torch.cat(xs).numpy(), torch.cat(ys).numpy()
        return _arrays_to_npz(arrays, folder)
    raise ConfigError(f"data: expected a path, a dict of arrays x_train/y_train/x_test/y_test or a (train, test) "
                      f"pair of DataLoaders, got {type(data).__name__}")


def _arrays_to_npz(arrays: Mapping[str, Any], folder: Path) -> Path:
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    for k in ("x_train", "y_train", "x_test", "y_test"):
        if k not in arrays:
            raise ConfigError(f"search: data arrays need x_train, y_train, x_test, y_test (missing {k})")
        v = arrays[k]
        h.update(np.ascontiguousarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v).tobytes())
    path = folder / f"data-{h.hexdigest()[:12]}.npz"
    if not path.exists():
        save_npz(path, *(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))
    return path


def export_nir(ticket_or_module, input_shape: Optional[Sequence[int]] = None, path=None):
    """The NIR graph of a ticket (path or :class:`~slt_deploy.ticket.Ticket`), a SpikingNet or your module
    (give ``input_shape``); written to ``path`` too when given."""
    from .exporters.nir_format import network_to_nir, ticket_to_nir, write_nir
    from .models import SpikingNet
    from .ticket import Ticket

    if isinstance(ticket_or_module, (str, Path, Ticket)):
        graph = ticket_to_nir(ticket_or_module)
    else:
        module = ticket_or_module
        if input_shape is None:
            cfg = getattr(module, "config", None)
            input_shape = getattr(cfg, "input_shape", None)
        if not input_shape:
            raise ConfigError("export_nir: give input_shape=(C, H, W) for a module")
        if not isinstance(module, SpikingNet):
            module = from_snntorch(module, input_shape)
        graph = network_to_nir(module, input_shape=input_shape, source="python module")
    if path is not None:
        write_nir(graph, path)
    return graph


def simulate(graph, x, backend: Optional[str] = None):
    """Run a NIR graph (or a NIR file) on inputs ``x`` of shape (N, T, C, H, W) with ``backend`` (see
    :data:`slt_deploy.simulate.BACKENDS`; default: lava-float where Lava is installed, fast-float elsewhere);
    returns the backend's run: ``outputs`` (N, T, classes) and ``spikes`` per layer (N, T, ...). Real-valued
    input is fed by the host (first layer off chip), binary spikes enter the chip."""
    from .exporters.nir_format import read_nir
    from .simulate import BACKENDS
    from .simulate.run import loihi_backend

    if isinstance(graph, (str, Path)):
        graph = read_nir(graph)
    backend = backend or ("lava-float" if loihi_backend()[0] == "lava-fixed" else "fast-float")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if backend == "reference":
        return BACKENDS[backend](graph, x)
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    return BACKENDS[backend](graph, x, first_layer="chip" if binary else "host")


def report(inputs, *, profiles: Sequence[str], out, ann=None, samples: int = 200, progress: bool = True):
    """The cost report (:func:`slt_deploy.report.build_report`) of tickets or NIR graphs (paths or objects:
    a :class:`~slt_deploy.ticket.Ticket` is written to a temporary file first)."""
    from .report import build_report
    from .ticket import Ticket

    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    with tempfile.TemporaryDirectory(prefix="slt-api-") as scratch:
        paths = []
        for i, item in enumerate(inputs):
            if isinstance(item, Ticket):
                item = item.save(Path(scratch) / f"ticket_{i}.safetensors")
            paths.append(item)
        return build_report(paths, ann=ann, profiles=profiles, out=out, samples=samples, progress=progress)


def deploy(target, *, profile: str, out, backend: Optional[str] = None, weights: Optional[str] = None,
           model_args: Optional[Mapping[str, Any]] = None, data=None, timesteps: int = 5, samples: int = 100,
           allow_overlap: bool = False, progress: bool = True):
    """:func:`slt_deploy.deploy.deploy` with plain arguments: ``target`` a ticket (path or object) or a model
    (``file.py:factory`` with ``weights``); ``data`` a path (``.npz``, image folder) or a dict of arrays."""
    from .deploy import deploy as run_deploy

    model = None
    if isinstance(target, nn.Module) and weights is None:
        weights = _save_weights(target, Path(out))
    if not isinstance(target, (str, Path)) and (callable(target) or isinstance(target, nn.Module)) \
            and not hasattr(target, "record"):
        target = model_spec(target)
    if weights or model_args:
        model = ModelConfig(name=str(target), weights=str(weights) if weights else None,
                            args=json.dumps(dict(model_args), sort_keys=True) if model_args else "")
    data_cfg = None
    if data is not None:
        data = _as_data_path(data, Path(out))
        data_cfg = DataConfig(path=str(data), timesteps=timesteps)
    return run_deploy(target, profile=profile, out=out, backend=backend, model=model, data=data_cfg,
                      samples=samples, allow_overlap=allow_overlap, progress=progress)
