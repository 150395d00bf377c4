"""The user's own snnTorch network: a factory in a file or module, its weights, and its one-step layer chain.

A user model is named ``path/to/file.py:factory`` or ``package.module:factory``; the factory is called with the
keyword arguments of ``model.args`` (JSON) and returns an ``nn.Module`` that handles **one time step** with
the neuron state kept inside the neurons (``init_hidden=True``), in either form:

- an ``nn.Sequential`` of torch layers and snnTorch neurons (the snnTorch tutorials' Sequential form);
- a class whose ``forward(x)`` applies its layers one after another to one step's input (``x.flatten(1)``,
  ``torch.flatten``, ``x.view(x.size(0), -1)`` count as a Flatten) and returns the last layer's output
  (a neuron built with ``output=True`` may return ``(spk, mem)``; the spikes are the output).

The class form is read with ``torch.fx`` (neurons are leaves) into the chain of layers it calls; the chain is
checked to compute exactly what ``forward`` does before it is used. A ``forward`` that loops over time (the
tutorials' ``for step in range(num_steps)`` with explicit membrane state) is refused in one line that names
the construct and shows the supported form.

The source file's sha256 is recorded in the :class:`~slt_deploy.config.ModelConfig` (and so in every ticket);
rebuilding from a changed or missing source says so instead of silently building another network.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import operator
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import snntorch as snn
import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError

#: The neurons a user network may use (their NIR export and Lava compilation exist); the recurrent ones with an
#: all-to-all ``nn.Linear`` recurrence (``all_to_all=True, linear_features=n``), a cycle in NIR.
SUPPORTED_NEURONS = (snn.Leaky, snn.Synaptic, snn.RLeaky, snn.RSynaptic)

SUPPORTED_FORM = ("supported: a forward(x) for ONE time step with neurons built with init_hidden=True, e.g. "
                  "'def forward(self, x): return self.lif2(self.fc2(self.lif1(self.fc1(x.flatten(1)))))', or an "
                  "nn.Sequential; the time loop is run by slt-deploy")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- the factory

def _split(name: str) -> Tuple[str, str]:
    where, _, factory = name.rpartition(":")
    if not where or not factory:
        raise ConfigError(f"model {name!r}: expected path/to/file.py:factory or package.module:factory")
    return where, factory


def source_file(name: str) -> Path:
    """The file the factory is defined in (a ``.py`` path, or the module's file)."""
    where, _ = _split(name)
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ConfigError(f"model {name!r}: no such file {path}")
        return path.resolve()
    try:
        spec = importlib.util.find_spec(where)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"model {name!r}: cannot find module {where!r} ({exc})") from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise ConfigError(f"model {name!r}: no module {where!r} on the Python path")
    return Path(spec.origin).resolve()


def _load_module(name: str, path: Path):
    where, _ = _split(name)
    if not where.endswith(".py"):
        try:
            return importlib.import_module(where)
        except Exception as exc:  # the user's module: anything it raises is their error, in one line
            raise ConfigError(f"model {name!r}: importing {where} failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from None
    digest = sha256_file(path)[:16]
    mod_name = f"slt_deploy_user_model_{digest}"
    if mod_name in sys.modules:  # the same source was imported before: reuse it (classes stay identical)
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"model {name!r}: running {path} failed: {type(exc).__name__}: {_first_line(exc)}") from None
    sys.modules[mod_name] = module
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_factory(name: str) -> Callable[..., nn.Module]:
    """The factory named by ``file.py:factory`` / ``module:factory``; ConfigError (one line) when it is not there."""
    path = source_file(name)
    module = _load_module(name, path)
    _, attr = _split(name)
    factory = getattr(module, attr, None)
    if factory is None:
        callables = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
        raise ConfigError(f"model {name!r}: {path.name} has no attribute {attr!r}"
                          + (f"; callables defined there: {', '.join(callables)}" if callables else ""))
    if not callable(factory):
        raise ConfigError(f"model {name!r}: {attr} is a {type(factory).__name__}, not a callable returning an "
                          f"nn.Module")
    return factory


def call_factory(cfg: ModelConfig) -> nn.Module:
    factory = load_factory(cfg.name)
    args = cfg.factory_args()
    try:
        module = factory(**args)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ConfigError(f"model {cfg.name!r}: {_split(cfg.name)[1]}({shown}) raised {type(exc).__name__}: "
                          f"{_first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model {cfg.name!r}: the factory returned a {type(module).__name__}, not an nn.Module")
    return module


# ------------------------------------------------------------------------------------ config and checks

def resolve_user_config(cfg: ModelConfig, input_shape: Tuple[int, ...], num_classes: int) -> ModelConfig:
    """Fill in the shape, classes and the source hash (kept when already recorded: it is checked on build)."""
    defaults = ModelConfig()
    for option in ("hidden", "patch_keep", "binary_activations", "recurrent"):
        if getattr(cfg, option) != getattr(defaults, option):
            raise ConfigError(f"model.{option} applies to registered models; the user model {cfg.name} is built "
                              f"by its factory (give its arguments with --model-args)")
    path = source_file(cfg.name)
    digest = sha256_file(path)
    where, factory = _split(cfg.name)
    name = f"{path}:{factory}" if where.endswith(".py") else cfg.name  # found from any working directory
    weights = str(Path(cfg.weights).expanduser().resolve()) if cfg.weights else cfg.weights
    return cfg.replace(name=name, weights=weights, input_shape=tuple(cfg.input_shape) or tuple(input_shape),
                       num_classes=cfg.num_classes or num_classes,
                       source_sha256=cfg.source_sha256 or digest,
                       weights_sha256=cfg.weights_sha256 or (sha256_file(_weights_path(cfg.weights))
                                                             if cfg.weights else ""))


def check_source(cfg: ModelConfig) -> None:
    """The recorded source hash still matches the file (a changed file would silently build another network)."""
    path = source_file(cfg.name)
    if cfg.source_sha256:
        now = sha256_file(path)
        if now != cfg.source_sha256:
            raise ConfigError(f"model {cfg.name!r}: {path} changed since the ticket was made (sha256 "
                              f"{cfg.source_sha256[:12]} recorded, {now[:12]} now); restore that file or search "
                              f"again")


def _check_neurons(name: str, module: nn.Module, hidden_state: bool = True) -> None:
    found = False
    for qual, m in module.named_modules():
        if not isinstance(m, snn.SpikingNeuron):
            continue
        found = True
        kind = type(m).__name__
        if type(m) not in SUPPORTED_NEURONS:
            raise ConfigError(f"model {name!r}: layer {qual!r} ({kind}) is not supported; neurons: "
                              f"{', '.join(c.__name__ for c in SUPPORTED_NEURONS)}")
        if hasattr(m, "recurrent") and not isinstance(m.recurrent, nn.Linear):
            raise ConfigError(f"model {name!r}: layer {qual!r} ({kind}) has a {type(m.recurrent).__name__} "
                              f"recurrence; only an all-to-all nn.Linear one is supported (all_to_all=True, "
                              f"linear_features=n)")
        if hidden_state and not m.init_hidden:
            raise ConfigError(f"model {name!r}: layer {qual!r} ({kind}) has init_hidden=False (state passed "
                              f"explicitly); build it with init_hidden=True; {SUPPORTED_FORM}")
    if not found:
        raise ConfigError(f"model {name!r}: the network has no snnTorch neuron (snn.Leaky / snn.Synaptic)")


def build_user_body(cfg: ModelConfig) -> nn.Module:
    """Call the factory, check the network's form and return it: a one-step network as it is, a tutorial-style
    network that loops over time in ``forward`` as its one-step equivalent (:func:`one_step_network`)."""
    check_source(cfg)
    return one_step_body(call_factory(cfg), tuple(cfg.input_shape), cfg.name)


def one_step_body(module: nn.Module, input_shape: Tuple[int, ...], where: str) -> nn.Module:
    """The body slt-deploy runs step by step: the module itself when its ``forward`` handles one step (checked),
    its one-step equivalent when ``forward`` loops over time (:func:`one_step_network`)."""
    if is_class_network(module) and loops_over_time(module):
        return one_step_network(module, input_shape, where=where)
    _check_neurons(where, module)
    if isinstance(module, nn.Sequential):
        return module
    chain = layer_chain(module, input_shape, where=where)  # refuses what is not a one-step chain
    # As the Sequential of its chain (the same layer objects) when that keeps the state dict's names, so
    # every stage that walks Sequentials (the activity counter of the report, ONNX) reads it; else as it is.
    sequential = nn.Sequential(OrderedDict((name, layer) for name, layer in chain if "." not in name))
    if len(sequential) == len(chain) and set(sequential.state_dict()) == set(module.state_dict()):
        return sequential
    return module


# ------------------------------------------------------------------------------------------------ weights

def _weights_path(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"{p}: no such weights file")
    return p


def read_weights(path: str) -> Dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file read with ``weights_only=True`` (never unpickled)."""
    p = _weights_path(path)
    with open(p, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and int.from_bytes(head, "little") < (100 << 20) and p.suffix != ".pt":
        try:
            from safetensors.torch import load_file

            return load_file(str(p))
        except Exception:
            pass  # not safetensors: try torch's format below
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{p}: not safetensors and not a torch state dict readable with weights_only=True "
                          f"({type(exc).__name__}: {_first_line(exc)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{p}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def load_weights(body: nn.Module, path: str, model_name: str) -> None:
    """Load user weights into ``body``; keys may be the module's own or prefixed with ``body.``."""
    state = read_weights(path)
    if state and all(k.startswith("body.") for k in state):
        state = {k[len("body."):]: v for k, v in state.items()}
    result = body.load_state_dict(state, strict=False)
    problems = []
    if result.missing_keys:
        problems.append(f"missing {', '.join(result.missing_keys[:5])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {', '.join(result.unexpected_keys[:5])}")
    if problems:
        raise ConfigError(f"{path}: weights do not match model {model_name}: {'; '.join(problems)}")


# -------------------------------------------------------------------------------- the one-step layer chain

class _LeafNeurons(torch.fx.Tracer):
    """snnTorch neurons are leaves: their state handling is what the exporter maps, not their code."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, snn.SpikingNeuron) or super().is_leaf_module(m, qualname)


def _is_flatten(node) -> bool:
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1 and len(node.args) <= 2
    if node.op == "call_method" and node.target == "flatten":
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1 and len(node.args) <= 2
    if node.op == "call_method" and node.target in ("view", "reshape") and len(node.args) == 3:
        batch, rest = node.args[1], node.args[2]
        return rest == -1 and _is_batch_size(batch, node.args[0])
    return False


def _is_batch_size(arg, tensor) -> bool:
    """``x.size(0)`` or ``x.shape[0]`` of the tensor being reshaped."""
    if not isinstance(arg, torch.fx.Node):
        return False
    if arg.op == "call_method" and arg.target == "size" and arg.args[0] is tensor and tuple(arg.args[1:]) == (0,):
        return True
    if arg.op == "call_function" and arg.target is operator.getitem and arg.args[1] == 0:
        shape = arg.args[0]
        return (isinstance(shape, torch.fx.Node) and shape.op == "call_function" and shape.target is getattr
                and shape.args == (tensor, "shape"))
    return False


def _describe(node) -> str:
    target = getattr(node.target, "__name__", node.target)
    return f"{node.op} {target!r}"


def layer_chain(module: nn.Module, input_shape: Tuple[int, ...] = (), where: str = ""
                ) -> List[Tuple[str, nn.Module]]:
    """The layers a class network's one-step ``forward`` applies, in order, as (qualified name, module).

    Flatten calls become ``nn.Flatten()`` entries named after the fx node. Refuses (ConfigError, one line)
    anything that is not one chain: a layer called twice (a loop over time), a branch, arithmetic on
    activations. With ``input_shape`` the chain is run against ``forward`` on random input for three steps and
    must give exactly the same output.
    """
    where = where or type(module).__name__
    try:
        graph = _LeafNeurons().trace(module)
    except Exception as exc:  # fx cannot trace data-dependent control flow etc.
        raise ConfigError(f"model {where!r}: cannot trace {type(module).__name__}.forward with torch.fx "
                          f"({type(exc).__name__}: {_first_line(exc)}); {SUPPORTED_FORM}") from None
    modules = dict(module.named_modules())
    calls: Dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    repeated = [t for t, n in calls.items() if n > 1]
    if repeated:
        raise ConfigError(f"model {where!r}: {type(module).__name__}.forward calls layer {repeated[0]!r} "
                          f"{calls[repeated[0]]} times (a loop over time steps?); {SUPPORTED_FORM}")
    chain: List[Tuple[str, nn.Module]] = []
    current = None        # the fx node holding the chain's value
    tuple_of = {}         # fx node of a neuron returning (spk, mem) -> its name
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise ConfigError(f"model {where!r}: forward takes more than one input ({node.target!r}); "
                                  f"{SUPPORTED_FORM}")
            current = node
        elif node.op == "call_module":
            if len(node.args) != 1 or node.kwargs or node.args[0] is not current:
                raise ConfigError(f"model {where!r}: layer {node.target!r} does not take the previous layer's output "
                                  f"as its only input; {SUPPORTED_FORM}")
            layer = modules[node.target]
            chain.append((node.target, layer))
            if isinstance(layer, snn.SpikingNeuron) and getattr(layer, "output", False):
                tuple_of[node] = node.target
            current = node
        elif node.op == "call_function" and node.target is operator.getitem and node.args[0] in tuple_of:
            if node.args[1] == 0 and node.args[0] is current:
                current = node  # the spikes of a neuron with output=True
            # index 1 (the membrane) may only be returned, never fed on: checked at the output
        elif _is_flatten(node):
            if node.args[0] is not current:
                raise ConfigError(f"model {where!r}: flatten of something other than the previous layer's output; "
                                  f"{SUPPORTED_FORM}")
            chain.append((node.name, nn.Flatten()))
            current = node
        elif node.op == "output":
            out = node.args[0]
            if isinstance(out, (tuple, list)):
                out = out[0]
            last = chain[-1][0] if chain else None
            ok = out is current or (out in tuple_of and tuple_of[out] == last)
            if not ok:
                raise ConfigError(f"model {where!r}: forward does not return the last layer's output; "
                                  f"{SUPPORTED_FORM}")
        elif node.op == "call_method" and node.target == "size" or (
                node.op == "call_function" and node.target in (getattr, operator.getitem)):
            continue  # shape queries used by a view/reshape flatten
        elif node.op == "get_attr":
            continue
        else:
            raise ConfigError(f"model {where!r}: {type(module).__name__}.forward uses {_describe(node)} "
                              f"({node.name}), which is not a layer of a chain; {SUPPORTED_FORM}")
    if input_shape:
        _check_chain(module, chain, input_shape, where)
    return chain


def _output(value):
    return value[0] if isinstance(value, (tuple, list)) else value


@torch.no_grad()
def _check_chain(module: nn.Module, chain: List[Tuple[str, nn.Module]], input_shape, where: str) -> None:
    """The chain computes exactly what ``forward`` does (three steps, neurons reset before each run)."""
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand((2, *input_shape), generator=gen) * 2 for _ in range(3)]

    def reset():
        for m in module.modules():
            if isinstance(m, snn.SpikingNeuron):
                m.reset_mem()

    was_training = module.training
    module.eval()
    try:
        reset()
        expected = [_output(module(x)).clone() for x in xs]
        reset()
        got = []
        for x in xs:
            for _, layer in chain:
                x = _output(layer(x))
            got.append(x.clone())
        reset()
    except RuntimeError as exc:
        raise ConfigError(f"model {where!r}: running it on input of shape {tuple(input_shape)} failed: "
                          f"{_first_line(exc)}") from None
    finally:
        module.train(was_training)
    if any(not torch.equal(e, g) for e, g in zip(expected, got)):
        raise ConfigError(f"model {where!r}: forward does something besides applying its layers in order "
                          f"(the layer chain read by torch.fx computes another output); {SUPPORTED_FORM}")


def is_class_network(body: nn.Module) -> bool:
    """A user's class network: neither a torch/snnTorch container nor one of this project's modules."""
    root = type(body).__module__.split(".")[0]
    return root not in ("torch", "snntorch", "slt_deploy") and not isinstance(body, snn.SpikingNeuron)


def as_sequential(body: nn.Module) -> nn.Module:
    """A class network as the ``nn.Sequential`` of its one-step layer chain (the same layer objects; dots in
    nested names become underscores); anything else unchanged. For exporters that walk Sequentials."""
    if not is_class_network(body):
        return body
    return nn.Sequential(OrderedDict((name.replace(".", "_"), layer) for name, layer in layer_chain(body)))


# ------------------------------------------------------------------ tutorial-style networks: a loop over time

def _trace(module: nn.Module, where: str):
    try:
        return _LeafNeurons().trace(module)
    except Exception as exc:  # fx cannot trace data-dependent control flow etc.
        raise ConfigError(f"model {where!r}: cannot trace {type(module).__name__}.forward with torch.fx "
                          f"({type(exc).__name__}: {_first_line(exc)}); {SUPPORTED_FORM}") from None


def loops_over_time(module: nn.Module) -> bool:
    """True when ``forward`` calls its layers several times each: the snnTorch tutorials' time loop (torch.fx
    unrolls a ``for step in range(num_steps)`` loop)."""
    try:
        graph = _LeafNeurons().trace(module)
    except Exception:
        return False  # layer_chain reports the trace failure
    calls = [n.target for n in graph.nodes if n.op == "call_module"]
    return len(calls) > len(set(calls))


def _hidden_copy(neuron: nn.Module) -> nn.Module:
    """The same neuron with its state kept inside (``init_hidden=True``), same parameters and buffers."""
    learn = lambda name: isinstance(getattr(neuron, name), nn.Parameter)  # noqa: E731
    kw = dict(beta=neuron.beta.detach().clone(), threshold=neuron.threshold.detach().clone(),
              spike_grad=neuron.spike_grad, surrogate_disable=neuron.surrogate_disable, init_hidden=True,
              inhibition=neuron.inhibition, learn_beta=learn("beta"), learn_threshold=learn("threshold"),
              reset_mechanism=neuron.reset_mechanism, state_quant=neuron.state_quant,
              reset_delay=neuron.reset_delay)
    if isinstance(neuron, (snn.Synaptic, snn.RSynaptic)):
        kw.update(alpha=neuron.alpha.detach().clone(), learn_alpha=learn("alpha"))
    if isinstance(getattr(neuron, "recurrent", None), nn.Linear):  # RLeaky / RSynaptic, all-to-all
        kw.update(all_to_all=True, linear_features=neuron.recurrent.in_features)
    copy = type(neuron)(**kw)
    copy.load_state_dict(neuron.state_dict())
    return copy


def one_step_network(module: nn.Module, input_shape: Tuple[int, ...] = (), where: str = "") -> nn.Sequential:
    """A tutorial-style network (``forward`` loops over ``num_steps`` with explicit membrane state and returns
    the stacked spikes, or ``(spikes, membranes)``) as the ``nn.Sequential`` of one step.

    torch.fx unrolls the loop; the layers the first step applies, in order, are the chain (each neuron's
    spikes feed the next layer, its membrane only the next step). Non-neuron layers are the user's own
    objects, neurons are copies that keep their state inside (``init_hidden=True``), and the names are the
    attribute names, so the state dict is the user's. With ``input_shape`` the chain run for the loop's
    number of steps must give exactly the spikes ``forward`` returns.
    """
    where = where or type(module).__name__
    _check_neurons(where, module, hidden_state=False)
    graph = _trace(module, where)
    modules = dict(module.named_modules())
    chain: List[Tuple[str, nn.Module]] = []
    seen: set = set()
    current, neurons = None, {}
    for node in graph.nodes:
        if node.op == "placeholder":
            current = node
        elif node.op == "call_module":
            if node.target in seen:
                break  # the second step starts: the first one is the chain
            seen.add(node.target)
            if "." in node.target:
                raise ConfigError(f"model {where!r}: layer {node.target!r} is nested; a network that loops over time "
                                  f"needs its layers as direct attributes; {SUPPORTED_FORM}")
            layer = modules[node.target]
            if not node.args or node.args[0] is not current:
                raise ConfigError(f"model {where!r}: layer {node.target!r} does not take the previous layer's output; "
                                  f"{SUPPORTED_FORM}")
            if isinstance(layer, snn.SpikingNeuron):
                layer = _hidden_copy(layer)
                neurons[node] = node.target
            chain.append((node.target, layer))
            current = node
        elif node.op == "call_function" and node.target is operator.getitem and node.args[0] in neurons:
            if node.args[1] == 0 and node.args[0] is current:
                current = node  # the spikes go on; the membrane (index 1) only to the next step
        elif _is_flatten(node):
            if node.args[0] is current:
                chain.append((node.name, nn.Flatten()))
                current = node
        elif node.op in ("get_attr", "output") or (node.op == "call_method" and node.target == "size") or (
                node.op == "call_function" and node.target in (getattr, operator.getitem)):
            continue
        else:
            raise ConfigError(f"model {where!r}: {type(module).__name__}.forward uses {_describe(node)} "
                              f"({node.name}) within a time step, which is not a layer of a chain; {SUPPORTED_FORM}")
    if not chain or not isinstance(chain[-1][1], snn.SpikingNeuron) and not neurons:
        raise ConfigError(f"model {where!r}: no neuron in the first time step of forward; {SUPPORTED_FORM}")
    body = nn.Sequential(OrderedDict(chain))
    if input_shape:
        _check_unrolled(module, body, input_shape, where)
    return body


@torch.no_grad()
def _check_unrolled(module: nn.Module, body: nn.Sequential, input_shape, where: str) -> None:
    """``forward(x)`` (which runs every step itself) returns exactly the stacked spikes of ``body`` run step by
    step on the same ``x``."""
    x = torch.rand((2, *input_shape), generator=torch.Generator().manual_seed(0)) * 2
    was_training = module.training
    module.eval()
    try:
        expected = _output(module(x))
    except RuntimeError as exc:
        raise ConfigError(f"model {where!r}: running it on input of shape {tuple(input_shape)} failed: "
                          f"{_first_line(exc)}") from None
    finally:
        module.train(was_training)
    body.eval()
    for m in body.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    steps = []
    for _ in range(expected.shape[0] if expected.dim() > 1 else 0):
        out = x
        for layer in body:
            out = _output(layer(out))
        steps.append(out)
    for m in body.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    if not steps or expected.shape != (len(steps), *steps[0].shape) or not torch.equal(expected, torch.stack(steps)):
        raise ConfigError(f"model {where!r}: {type(module).__name__}.forward loops over time, but what it returns "
                          f"first is not the stacked (steps, batch, ...) spikes of its last layer run step by step; "
                          f"{SUPPORTED_FORM}")
