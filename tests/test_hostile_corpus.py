"""A hostile corpus: a few hundred malformed files of every kind the toolkit reads, run through every reading
subcommand. Each must end in exit code 2 with one line naming the file (and, where the damage is in one
field, that field); never a traceback, never an internal error, never a silent success, nothing written, and
no memory bomb allocated (the process's peak RSS may not grow by anywhere near a bomb's size).

Run ``python tests/test_hostile_corpus.py DIR`` to write the corpus to DIR and print its size.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import h5py
import numpy as np
import pytest
import torch

from slt_deploy.cli import export_formats, main
from slt_deploy.config import DataConfig, ModelConfig
from slt_deploy.export import export_ticket
from slt_deploy.models import build_model, prunable_layers, resolve_config
from slt_deploy.search.masks import apply_mask, prune_magnitude
from slt_deploy.ticket import META_KEY, Mask, Ticket, TicketRecord

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "hardware_profiles" / "loihi2.yaml"
BOMB = 1 << 28  # elements a memory bomb declares: 1 GiB of float32, far above the process's normal growth


@dataclass
class Case:
    kind: str                  # ticket, nir, onnx, netx, config, sweep, profile, data
    name: str                  # what was done to the file
    path: Path
    field: Optional[str] = None  # the field the message must name, where the damage is in one field


# -------------------------------------------------------------------------------------- valid artifacts

def _valid_ticket(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(resolve_config(ModelConfig(name="mlp", hidden=(12, 12)), (1, 8, 8), 10))
    layers = prunable_layers(model)
    mask = prune_magnitude(layers, Mask.ones_like(layers), 0.5, "layerwise")
    apply_mask(layers, mask)
    data = DataConfig(dataset="digits", timesteps=3)
    record = TicketRecord(model=model.config, method="imp", dataset="digits", timesteps=3, round=1, accuracy=0.5,
                          wall_time_s=[1.0], hyperparameters={"data": data.to_dict()})
    return Ticket.from_model(model, mask, record).save(path)


def valid_artifacts(root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    ticket = _valid_ticket(root / "valid ticket ü.safetensors")
    out = {"ticket": ticket}
    for fmt, suffix in (("nir", "nir"), ("onnx", "onnx"), ("netx", "h5")):
        out[fmt] = export_ticket(ticket, fmt, root / f"valid.{suffix}", formats=export_formats())
    out["config"] = root / "valid.yaml"
    out["config"].write_text("data:\n  dataset: digits\n  timesteps: 3\ntrain:\n  epochs: 1\n")
    out["sweep"] = root / "valid_sweep.yaml"
    out["sweep"].write_text("base:\n  data: {dataset: digits}\ngrid:\n  search.seed: [0]\n")
    out["profile"] = PROFILE
    return out


# -------------------------------------------------------------------------------------- generic damage

def _bytes_damage(kind: str, valid: Path, d: Path, suffix: str) -> List[Case]:
    """Damage every file kind suffers alike: empty, truncated, random bytes, a pickle under its name."""
    raw = valid.read_bytes()
    cases = []

    def put(name: str, data: bytes) -> None:
        p = d / f"{kind}-{name}{suffix}"
        p.write_bytes(data)
        cases.append(Case(kind, name, p))

    put("empty", b"")
    for frac in (0.01, 0.1, 0.5, 0.9, 0.99):
        put(f"truncated-{frac}", raw[: max(1, int(len(raw) * frac))])
    put("one-byte-short", raw[:-1])
    rng = np.random.default_rng(len(raw))
    for i, size in enumerate((7, 100, 5000, 70000)):
        put(f"random-{i}", rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    put("random-after-valid-head", raw[:64] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    put("zeros", bytes(4096))
    put("text", "hello\nworld\n".encode())
    put("latin1", "caf\xe9: 1\n".encode("latin-1"))
    put("pickle", pickle.dumps({"state": {"w": [1.0, 2.0]}}))
    put("torch-save", _torch_save_bytes())
    put("hostile-pickle", pickle.dumps(_Marker()))
    return cases


class _Marker:
    """Unpickling it would create a file next to the corpus: the test checks that file never appears."""

    def __reduce__(self):
        return (open, (str(Path(os.environ.get("SLT_CORPUS_MARKER", "/nonexistent/marker"))), "w"))


def _torch_save_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"state/body.fc1.weight": torch.zeros(2, 2)}, buf)
    return buf.getvalue()


# -------------------------------------------------------------------------------------- tickets

def _ticket_parts(valid: Path):
    from safetensors import safe_open

    with safe_open(str(valid), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return json.loads(meta[META_KEY]), tensors


def _write_ticket(p: Path, record, tensors, raw_header: Optional[str] = None) -> None:
    from safetensors.torch import save_file

    header = raw_header if raw_header is not None else json.dumps(record)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(p), metadata={META_KEY: header})


def ticket_cases(valid: Path, d: Path) -> List[Case]:
    cases = _bytes_damage("ticket", valid, d, ".safetensors")
    record, tensors = _ticket_parts(valid)

    def add(name: str, field: Optional[str], rec=None, ten=None, raw=None) -> None:
        p = d / f"ticket-{name.replace('/', '_')}.safetensors"
        _write_ticket(p, rec if rec is not None else record, ten if ten is not None else tensors, raw)
        cases.append(Case("ticket", name, p, field))

    def with_field(path: Sequence[str], value):
        rec = json.loads(json.dumps(record))
        node = rec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return rec

    bad_values = {"text": "abc", "list": [1, 2], "map": {"a": 1}, "null": None, "bool": True, "huge": 10 ** 30}
    for field in ("timesteps", "seed", "round", "sparsity", "accuracy", "method", "encoding", "dataset"):
        for label, value in bad_values.items():
            if field == "accuracy" and value is None:
                continue  # accuracy is optional
            add(f"{field}-{label}", field, with_field([field], value))
    for field, values in {"timesteps": [0, -1, 10 ** 9, 2.5], "sparsity": [1.5, -0.1], "accuracy": [2.0, -1],
                          "seed": [-1], "round": [-3], "encoding": ["morse"], "dataset": ["nope", ""],
                          "method": ["magic", "imp+zz"], "format": ["other/1"]}.items():
        for value in values:
            add(f"{field}-{value}", field, with_field([field], value))
    for field, value in {"wall_time_s": [-1.0], "layer_sparsity": {"fc1": 2.0}, "extra": "x",
                         "versions": [1], "hyperparameters": {"train": {"epochs": "many"}}}.items():
        add(f"{field}-bad", field.split("_")[0], with_field([field], value))
    add("hyperparameters-unknown", "bogus", with_field(["hyperparameters"], {"bogus": 1}))
    for mfield, value in {"name": "nope", "hidden": [10 ** 6, 10 ** 6], "input_shape": [1, 100000, 100000],
                          "num_classes": 10 ** 9, "spiking": "yes", "batchnorm": 3}.items():
        add(f"model-{mfield}", mfield if mfield != "num_classes" else "model", with_field(["model", mfield], value))
    add("model-hidden-zero", "hidden", with_field(["model", "hidden"], [0]))
    add("model-hidden-text", "hidden", with_field(["model", "hidden"], ["wide"]))
    add("model-hidden-mismatch", "shape", with_field(["model", "hidden"], [13]))
    add("model-unknown-key", "colour", with_field(["model", "colour"], "red"))
    add("model-missing", "model", {k: v for k, v in record.items() if k != "model"})
    add("model-list", "model", with_field(["model"], [1]))
    for nfield, value in {"beta": -1.0, "threshold": 0.0, "reset": "sideways", "surrogate_alpha": "x"}.items():
        add(f"neuron-{nfield}", nfield, with_field(["model", "neuron", nfield], value))
    add("unknown-field", "colour", with_field(["colour"], "red"))
    add("header-not-json", None, raw="{not json")
    add("header-list", None, raw="[1, 2]")
    add("header-nan", "accuracy", raw=json.dumps(record).replace('"accuracy": 0.5', '"accuracy": NaN'))
    add("header-deep", None, raw="[" * 100000 + "]" * 100000)

    def tensor_case(name: str, field: str, change: Callable[[dict], None]) -> None:
        ten = {k: v.clone() for k, v in tensors.items()}
        change(ten)
        add(name, field, ten=ten)

    w = "state/body.fc1.weight"
    tensor_case("weight-nan", "fc1.weight", lambda t: t[w].view(-1).__setitem__(0, float("nan")))
    tensor_case("bias-inf", "fc1.bias", lambda t: t["state/body.fc1.bias"].__setitem__(0, float("inf")))
    tensor_case("weight-float16", "fc1.weight", lambda t: t.__setitem__(w, t[w].half()))
    tensor_case("weight-int64", "fc1.weight", lambda t: t.__setitem__(w, t[w].long()))
    tensor_case("weight-shape", "fc1.weight", lambda t: t.__setitem__(w, t[w][:, :10].contiguous()))
    tensor_case("mask-float", "mask/fc1", lambda t: t.__setitem__("mask/fc1", t["mask/fc1"].float()))
    tensor_case("mask-shape", "fc1", lambda t: t.__setitem__("mask/fc1", t["mask/fc1"][:, :10].contiguous()))
    tensor_case("mask-unknown-layer", "fc9", lambda t: t.__setitem__("mask/fc9", t["mask/fc1"].clone()))

    def pruned_nonzero(t):
        keep = t["mask/fc1"]
        t[w][~keep] = 0.5
    tensor_case("pruned-not-zero", "mask/fc1", pruned_nonzero)
    tensor_case("weight-missing", "fc1.weight", lambda t: t.pop(w))
    tensor_case("tensor-extra", "evil", lambda t: t.__setitem__("evil/x", torch.zeros(3)))
    tensor_case("beta-negative", "beta", lambda t: t.__setitem__("state/body.fc1_lif.beta", torch.tensor(-0.5)))
    tensor_case("threshold-zero", "threshold",
                lambda t: t.__setitem__("state/body.fc1_lif.threshold", torch.tensor(0.0)))
    tensor_case("reset-code", "reset_mechanism_val",
                lambda t: t.__setitem__("state/body.fc1_lif.reset_mechanism_val", torch.tensor(7)))

    def weight_changed_sparsity(t):
        t[w][t["mask/fc1"]] = 0.0  # every kept weight now zero too: the record's sparsity is wrong
    tensor_case("sparsity-lies", "sparsity", weight_changed_sparsity)
    no_record = d / "ticket-no-record.safetensors"
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(no_record))
    cases.append(Case("ticket", "no-record", no_record))
    huge_header = d / "ticket-huge-header.safetensors"
    huge_header.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    cases.append(Case("ticket", "huge-header", huge_header))
    big_shape = d / "ticket-declares-huge-tensor.safetensors"
    head = json.dumps({w: {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 42]}}).encode()
    big_shape.write_bytes(struct.pack("<Q", len(head)) + head + bytes(64))
    cases.append(Case("ticket", "declares-huge-tensor", big_shape))
    return cases


# -------------------------------------------------------------------------------------- NIR graphs

def nir_cases(valid: Path, d: Path) -> List[Case]:
    cases = _bytes_damage("nir", valid, d, ".nir")

    def edit(name: str, field: Optional[str], change: Callable[[h5py.File], None]) -> None:
        p = d / f"nir-{name.replace('/', '_')}.nir"
        shutil.copy(valid, p)
        with h5py.File(p, "r+") as f:
            change(f)
        cases.append(Case("nir", name, p, field))

    def set_meta(key, value):
        def change(f):
            g = f["node/metadata"]
            if key in g:
                del g[key]
            g[key] = value
        return change

    for key, values in {"timesteps": ["abc", -3, 10 ** 12, 2.5, 0], "seed": ["x", -1, 1e30, 0.5],
                        "dataset": ["nope", 3], "encoding": ["morse"], "dt": [-1.0, 0.0, float("nan")],
                        "sparsity": [2.0, "half"], "accuracy": [-0.5]}.items():
        for value in values:
            edit(f"meta-{key}-{value}", key, set_meta(key, value))
    edit("meta-timesteps-array", "timesteps", set_meta("timesteps", np.arange(5)))

    def replace(path, value, **kw):
        def change(f):
            del f[path]
            f.create_dataset(path, data=value, **kw) if value is not None else f.create_dataset(path, **kw)
        return change

    edit("weight-nan", "fc1", lambda f: f["node/nodes/fc1/weight"].__setitem__((0, 0), np.nan))
    edit("bias-inf", "fc1", lambda f: f["node/nodes/fc1/bias"].__setitem__(0, np.inf))
    edit("tau-zero", "tau", lambda f: f["node/nodes/fc1_lif/tau"].__setitem__(0, 0.0))
    # tau < dt (the node's own dt 1e-4): decay 1 - dt/tau = -1, refused by every backend and reader (issue 26)
    edit("tau-below-dt", "fc1_lif", lambda f: f["node/nodes/fc1_lif/tau"].__setitem__(slice(None), 5e-5))
    edit("threshold-negative", "v_threshold", lambda f: f["node/nodes/fc1_lif/v_threshold"].__setitem__(0, -1.0))
    edit("weight-bomb", "fc1/weight", replace("node/nodes/fc1/weight", None, shape=(1 << 14, 1 << 14),
                                                dtype="f4", chunks=(256, 256), compression="gzip"))
    edit("input-shape-bomb", "input/shape", replace("node/nodes/input/shape", np.array([3, 100000, 100000])))
    edit("input-shape-negative", "input/shape", replace("node/nodes/input/shape", np.array([1, -8, 8])))
    edit("input-shape-text", "input/shape", replace("node/nodes/input/shape", np.bytes_("big")))
    edit("weight-text", "fc1", replace("node/nodes/fc1/weight", np.bytes_("weights")))
    edit("node-type-unknown", "fc1", replace("node/nodes/fc1/type", np.bytes_("Teleporter")))
    edit("node-reset", "reset", replace("node/nodes/fc1_lif/metadata/reset", np.bytes_("sideways")))
    edit("node-dt", "dt", replace("node/nodes/fc1_lif/metadata/dt", -1.0))
    edit("no-node-group", "node", lambda f: f.move("node", "nodes_elsewhere"))
    edit("edges-missing", None, lambda f: f["node"].__delitem__("edges"))
    edit("edge-to-nowhere", "ghost", replace("node/edges", np.array([[b"input", b"ghost"]] * 7, dtype=object),
                                             dtype=h5py.string_dtype()))
    edit("external-link", "ExternalLink",
         lambda f: f["node/nodes"].__setitem__("evil", h5py.ExternalLink("/etc/hostname", "/")))
    edit("soft-link", "SoftLink", lambda f: f["node/nodes"].__setitem__("alias", h5py.SoftLink("/node/nodes/fc1")))
    edit("weight-compound", "fc1/weight",
         replace("node/nodes/fc1/weight", np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])))

    def cycle(f):
        edges = [e for e in f["node/edges"][()]]
        edges.append(np.array([b"fc2", b"fc1"], dtype=object))
        del f["node/edges"]
        f.create_dataset("node/edges", data=np.array(edges, dtype=object), dtype=h5py.string_dtype())
    edit("cycle", "cycle", cycle)
    return cases


# -------------------------------------------------------------------------------------- ONNX, netx

def onnx_cases(valid: Path, d: Path) -> List[Case]:
    import onnx

    cases = _bytes_damage("onnx", valid, d, ".onnx")

    def edit(name: str, field: Optional[str], change: Callable) -> None:
        model = onnx.load(str(valid))
        change(model)
        p = d / f"onnx-{name}.onnx"
        p.write_bytes(model.SerializeToString())
        cases.append(Case("onnx", name, p, field))

    def huge_dims(m):
        t = m.graph.initializer[0]
        del t.dims[:]
        t.dims.extend([1 << 15, 1 << 15])

    def external(m):
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        t.external_data.add(key="location", value="/etc/hostname")

    def input_bomb(m):
        dims = m.graph.input[0].type.tensor_type.shape.dim
        dims[-1].dim_value = 1 << 30

    edit("initializer-huge-dims", "initializer", huge_dims)
    edit("initializer-external", "initializer", external)
    edit("input-huge", "input", input_bomb)
    edit("no-nodes", None, lambda m: m.graph.ClearField("node"))
    edit("opset-none", None, lambda m: m.ClearField("opset_import"))
    return cases


def netx_cases(valid: Path, d: Path) -> List[Case]:
    cases = _bytes_damage("netx", valid, d, ".h5")

    def edit(name: str, field: Optional[str], change: Callable[[h5py.File], None]) -> None:
        p = d / f"netx-{name}.h5"
        shutil.copy(valid, p)
        with h5py.File(p, "r+") as f:
            change(f)
        cases.append(Case("netx", name, p, field))

    def replace(path, value, **kw):
        def change(f):
            del f[path]
            f.create_dataset(path, data=value, **kw) if value is not None else f.create_dataset(path, **kw)
        return change

    edit("type-unknown", "type", replace("layer/1/type", np.bytes_("wormhole")))
    edit("weight-missing", "weight", lambda f: f["layer/1"].__delitem__("weight"))
    edit("weight-nan", "weight", replace("layer/1/weight", np.full((12, 12), np.nan)))
    edit("weight-rank", "weight", replace("layer/1/weight", np.zeros(5)))
    edit("weight-bomb", "weight", replace("layer/1/weight", None, shape=(1 << 14, 1 << 14), dtype="i2",
                                          chunks=(256, 256), compression="gzip"))
    edit("shape-bomb", "shape", replace("layer/1/shape", np.array([1 << 20, 1 << 20])))
    edit("vth-zero", "vThMant", replace("layer/1/neuron/vThMant", 0))
    edit("decay-range", "vDecay", replace("layer/1/neuron/vDecay", 99999))
    edit("neuron-type", "type", replace("layer/1/neuron/type", np.bytes_("HH")))
    edit("layers-gap", "layer", lambda f: f["layer"].move("2", "7"))
    edit("first-not-input", "input", replace("layer/0/type", np.bytes_("dense")))
    return cases


# -------------------------------------------------------------------------------------- YAML / JSON

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9))


def _text_damage(kind: str, d: Path) -> List[Case]:
    cases = []

    def put(name: str, data, field: Optional[str] = None, suffix: str = ".yaml") -> None:
        p = d / f"{kind}-{name}{suffix}"
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        cases.append(Case(kind, name, p, field))

    put("alias-bomb", ALIAS_BOMB, "alias")
    put("recursive-alias", "a: &a [*a]\n", "alias")
    put("duplicate-key", "data:\n  dataset: digits\ndata:\n  dataset: mnist\n", "duplicate key 'data'")
    put("duplicate-key-json", '{"data": {}, "data": {}}', "duplicate key 'data'", ".json")
    put("top-list", "- 1\n- 2\n")
    put("top-scalar", "42\n")
    put("non-utf8", "data:\n  dataset: caf\xe9\n".encode("latin-1"), "UTF-8")
    put("utf16", "data: {}\n".encode("utf-16"))
    put("binary", bytes(range(256)) * 4, "binary")
    put("python-tag", "data: !!python/object/apply:os.system ['touch /tmp/slt-corpus-owned']\n")
    put("deep-nesting", "[" * 20000 + "]" * 20000)
    put("unclosed", "data: [1, 2\n")
    put("tab-indent", "data:\n\tdataset: x\n")
    put("nan-json", '{"train": {"lr": NaN}}', "NaN", ".json")
    put("int-keys", "1: 2\n")
    put("huge-string", "data:\n  timesteps: '" + "9" * 200000 + "'\n", "timesteps" if kind == "config" else None)
    put("oversized", b"# " + b"x" * (17 << 20) + b"\n", "limit")
    return cases


def config_cases(d: Path) -> List[Case]:
    cases = _text_damage("config", d)

    def put(name: str, text: str, field: Optional[str]) -> None:
        p = d / f"config-{name}.yaml"
        p.write_text(text)
        cases.append(Case("config", name, p, field))

    base = "data:\n  dataset: digits\n  n_train: 50\n  n_test: 20\ntrain:\n  epochs: 1\n"
    put("section-list", "data: [1, 2]\n", "data")
    put("section-scalar", "train: 3\n", "train")
    put("unknown-section", base + "optimiser: {}\n", "optimiser")
    put("unknown-key", base + "search:\n  methd: imp\n", "methd")
    put("epochs-text", "train:\n  epochs: many\n", "epochs")
    put("epochs-zero", "train:\n  epochs: 0\n", "epochs")
    put("timesteps-huge", base + "  timesteps: 1000000000\n", "timesteps")
    put("timesteps-negative", "data:\n  timesteps: -4\n", "timesteps")
    put("lr-inf", "train:\n  lr: .inf\n", "lr")
    put("method-unknown", "search:\n  method: magic\n", "method")
    put("hidden-text", "model:\n  hidden: wide\n", "hidden")
    put("hidden-bomb", base + "model:\n  hidden: [100000, 100000]\n", "hidden")
    put("input-shape-bomb", base + "model:\n  input_shape: [3, 100000, 100000]\n", "input_shape")
    put("beta-negative", "model:\n  neuron:\n    beta: -0.5\n", "beta")
    put("threshold-zero", "model:\n  neuron:\n    threshold: 0\n", "threshold")
    put("dataset-unknown", "data:\n  dataset: nope\n", "nope")
    put("encoding-unknown", "data:\n  encoding: morse\n", "encoding")
    put("sparsity-one", "search:\n  method: eb\n  target_sparsity: 1.0\n", "target_sparsity")
    put("data-path-missing", "data:\n  path: /nonexistent/dätä dir\ntrain:\n  epochs: 1\n", "dätä dir")
    put("bool-text", "model:\n  spiking: maybe\n", "spiking")
    # valid alone, wrong for the data (issue 26): refused before the run folder exists, naming the setting
    dense = "search:\n  method: dense\n"  # nothing else wrong: the mismatch is what must be named
    put("num-classes-vs-data", base + dense + "model:\n  num_classes: 5\n", "num_classes")
    put("input-shape-vs-data", base + dense + "model:\n  input_shape: [3, 32, 32]\n", "input_shape")
    put("search-section-list", base + "search: [1, 2]\n", "search")  # the command adds --seed into it
    put("neuron-section-list", base + "model:\n  neuron: [0.5]\n", "neuron")
    return cases


def _idx_header(dims) -> bytes:
    return struct.pack(">HBB", 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims)


def _npz_declaring(path: Path, shapes: dict) -> None:
    """An .npz whose members' .npy headers declare ``shapes`` over a few bytes of data."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for key, shape in shapes.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
            z.writestr(f"{key}.npy", buf.getvalue() + bytes(64))


def data_cases(d: Path) -> List[Case]:
    """Data given with --data-path (issue 26): headers declaring more than the element limit, compressed or not,
    refused before allocating; the user's arrays disagreeing with the settings."""
    import gzip

    cases = []
    bomb = (4_000_000, 28, 28)  # 3.1 G elements declared in 1.7 MB of gzip
    folder = d / "data-idx-gzip-bomb"
    folder.mkdir()
    # 384 MiB of body: decompressing it before reading the header (what gzip.decompress did) shows in the
    # peak-RSS check of test_hostile_corpus
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(_idx_header(bomb))
        for _ in range(384):
            f.write(bytes(1 << 20))
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_header(bomb[:1]) + bytes(bomb[0]))
    cases.append(Case("data", "idx-gzip-bomb", folder, "4000000x28x28"))
    folder = d / "data-idx-raw-bomb"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_header(bomb) + bytes(4096))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx_header(bomb[:1]) + bytes(4096))
    cases.append(Case("data", "idx-raw-bomb", folder, "4000000x28x28"))
    npz = d / "data-npz-bomb.npz"
    _npz_declaring(npz, {"x_train": (1 << 20, 1, 100, 100), "y_train": (1 << 20,), "x_test": (2, 1, 8, 8),
                         "y_test": (2,)})
    cases.append(Case("data", "npz-header-bomb", npz, "x_train"))
    rng = np.random.default_rng(0)
    shaped = d / "data-npz-wrong-shape.npz"  # 1x4x4 samples for a network of 1x8x8
    np.savez(shaped, x_train=rng.integers(0, 255, (20, 1, 4, 4), dtype=np.uint8), y_train=np.arange(20) % 10,
             x_test=rng.integers(0, 255, (10, 1, 4, 4), dtype=np.uint8), y_test=np.arange(10) % 10)
    cases.append(Case("data", "npz-shape-vs-model", shaped, "shape"))
    classes = d / "data-npz-more-classes.npz"  # 12 classes for a network of 10 outputs
    np.savez(classes, x_train=rng.integers(0, 255, (24, 1, 8, 8), dtype=np.uint8), y_train=np.arange(24) % 12,
             x_test=rng.integers(0, 255, (12, 1, 8, 8), dtype=np.uint8), y_test=np.arange(12) % 12)
    cases.append(Case("data", "npz-classes-vs-model", classes, "12 classes"))
    return cases


def sweep_cases(d: Path) -> List[Case]:
    cases = _text_damage("sweep", d)

    def put(name: str, text: str, field: Optional[str]) -> None:
        p = d / f"sweep-{name}.yaml"
        p.write_text(text)
        cases.append(Case("sweep", name, p, field))

    put("grid-list", "grid: [1, 2]\n", "grid")
    put("jobs-scalar", "jobs: 3\n", "jobs")
    put("unknown-key", "grdi: {search.seed: [0]}\n", "grdi")
    put("grid-bad-key", "grid: {search.methd: [dense]}\n", "search.methd")
    put("grid-bad-value", "grid: {data.timesteps: [two]}\n", "data.timesteps")
    put("grid-huge", "grid: {data.timesteps: [1000000000]}\n", "data.timesteps")
    put("max-concurrent", "grid: {search.seed: [0]}\nmax_concurrent: -1\n", "max_concurrent")
    put("base-list", "base: [1]\ngrid: {search.seed: [0]}\n", "base")
    return cases


def profile_cases(d: Path) -> List[Case]:
    import yaml

    cases = _text_damage("profile", d)
    valid = yaml.safe_load(PROFILE.read_text())

    def put(name: str, change: Callable[[dict], None], field: str) -> None:
        data = json.loads(json.dumps(valid))
        change(data)
        p = d / f"profile-{name}.yaml"
        p.write_text(yaml.safe_dump(data))
        cases.append(Case("profile", name, p, field))

    fig = next(iter(valid["figures"]))
    put("figure-text", lambda x: x["figures"][fig].update(value="lots"), fig)
    put("figure-negative", lambda x: x["figures"][fig].update(value=-1.0), fig)
    put("figure-list", lambda x: x["figures"].update({fig: [1, 2]}), fig)
    put("figures-list", lambda x: x.update(figures=[1]), "figures")
    put("unknown-key", lambda x: x.update(colour="blue"), "colour")
    put("kind-unknown", lambda x: x.update(kind="quantum"), "kind")
    put("name-missing", lambda x: x.pop("name"), "name")
    return cases


# -------------------------------------------------------------------------------------- the corpus

def build_corpus(root: Path) -> tuple:
    valid = valid_artifacts(root / "valid")
    d = root / "corpus dïr"  # a space and a non-ASCII character in every corpus path
    d.mkdir(parents=True, exist_ok=True)
    cases = (ticket_cases(valid["ticket"], d) + nir_cases(valid["nir"], d) + onnx_cases(valid["onnx"], d)
             + netx_cases(valid["netx"], d) + config_cases(d) + sweep_cases(d) + profile_cases(d) + data_cases(d))
    return valid, cases


def commands(case: Case, valid: dict, out: Path) -> List[List[str]]:
    """Every subcommand that reads a file of this kind, with the damaged file in its place."""
    p = str(case.path)
    report = ["report", "--out", str(out / "report"), "--samples", "5", "--no-progress"]
    return {
        "ticket": [["inspect", p], ["export", p, "--format", "nir", "--out", str(out / "x.nir")],
                   ["report", p, "--profiles", "loihi2", *report[1:]]],
        "nir": [["inspect", p], ["simulate", p, "--backend", "reference", "--samples", "5", "--no-progress",
                                 "--json", str(out / "sim.json")],
                ["report", p, "--ann", str(valid["onnx"]), "--profiles", "loihi2", *report[1:]]],
        "onnx": [["inspect", p], ["report", str(valid["nir"]), "--ann", p, "--profiles", "loihi2", *report[1:]]],
        "netx": [["inspect", p]],
        # --seed (the default) is merged into the file's search section: a section given as a list must fail cleanly
        "config": [["search", "--config", p, "--seed", "0", "--runs-dir", str(out / "runs"), "--no-progress"]],
        # the network is the valid one's (mlp on 1x8x8 digits, 10 classes): --num-classes 10 / --input-shape
        # 1,8,8 make it so for a search, so that a mismatch is the file's
        "data": [["search", "--data-path", p, "--hidden", "12,12", "--input-shape", "1,8,8", "--num-classes", "10",
                  "--epochs", "1", "--method", "dense", "--runs-dir", str(out / "runs"), "--no-progress"],
                 ["simulate", str(valid["nir"]), "--data-path", p, "--backend", "reference", "--samples", "5",
                  "--no-progress", "--json", str(out / "sim.json")],
                 ["deploy", str(valid["ticket"]), "--profile", "loihi2", "--backend", "fast-fixed", "--data-path", p,
                  "--out", str(out / "deploy"), "--samples", "5", "--no-progress"]],
        "sweep": [["sweep", p, "--serial", "--no-progress"]],
        "profile": [["report", str(valid["nir"]), "--ann", str(valid["onnx"]), "--profiles", p, *report[1:]]],
    }[case.kind]


def _written(out: Path) -> List[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    os.environ["SLT_CORPUS_MARKER"] = str(root / "PICKLE-EXECUTED")
    valid, cases = build_corpus(root)
    return root, valid, cases


def test_corpus_is_large_and_covers_every_kind(corpus):
    _, _, cases = corpus
    kinds = {c.kind for c in cases}
    assert kinds == {"ticket", "nir", "onnx", "netx", "config", "sweep", "profile", "data"}
    assert len(cases) >= 300


def test_valid_artifacts_still_pass(corpus, capsys):
    """The checks refuse what is wrong, not what is right: every valid file goes through."""
    root, valid, _ = corpus
    for path in (valid["ticket"], valid["nir"], valid["onnx"], valid["netx"]):
        assert main(["inspect", str(path)]) == 0, capsys.readouterr().err
    assert main(["simulate", str(valid["nir"]), "--backend", "reference", "--samples", "3", "--no-progress"]) == 0


def test_hostile_corpus(corpus, capsys, monkeypatch):
    """Every damaged file, through every subcommand that reads its kind: exit 2, one line naming the file (and
    the damaged field), nothing written, no pickle executed, no memory bomb allocated."""
    root, valid, cases = corpus
    monkeypatch.setenv("SLT_DEPLOY_DEBUG", "0")
    out = root / "out"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    failures, runs = [], 0
    for case in cases:
        # damage to the bytes fails at the first step of any reader: one subcommand per file keeps the test fast;
        # damage to a field goes through every subcommand that reads the kind
        every = commands(case, valid, out)
        for argv in (every if case.field else every[-1:]):
            runs += 1
            rc = main(argv)
            captured = capsys.readouterr()
            err = captured.err.strip()
            problem = None
            if rc != 2:
                problem = f"exit {rc}"
            elif "\n" in err or not err.startswith("slt-deploy: error: "):
                problem = "not one error line"
            elif str(case.path) not in err:
                problem = "file not named"
            elif case.field and case.field.lower() not in err.lower():
                problem = f"field {case.field!r} not named"
            elif len(err) > 600:
                problem = f"message of {len(err)} characters"
            elif _written(out):
                problem = f"wrote {_written(out)}"
            if problem:
                failures.append(f"{case.kind}/{case.name} [{argv[0]}]: {problem}: {err[:300]}")
            shutil.rmtree(out, ignore_errors=True)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not (root / "PICKLE-EXECUTED").exists(), "a pickle was executed"
    assert not failures, f"{len(failures)} of {runs} runs failed:\n" + "\n".join(failures)
    assert grown_mib < BOMB * 4 / 2 ** 20 / 4, f"peak memory grew by {grown_mib:.0f} MiB: a bomb was allocated"
    print(f"hostile corpus: {len(cases)} files, {runs} runs, 0 failures, peak RSS growth {grown_mib:.0f} MiB")


def test_real_processes(corpus, slt_deploy_exe, cli_env):
    """As a user runs it: exit code 2, one stderr line naming the file and field, no traceback, nothing
    written; with --debug the same error comes with its traceback."""
    root, _, cases = corpus
    ticket = next(c for c in cases if c.kind == "ticket" and c.name == "weight-nan")
    out = root / "proc out" / "x.nir"
    proc = subprocess.run([slt_deploy_exe, "export", str(ticket.path), "--format", "nir", "--out", str(out)],
                          capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"slt-deploy: error: {ticket.path}: tensor state/body.fc1.weight has NaN or infinite "
                           f"values\n")
    assert not out.parent.exists()
    config = next(c for c in cases if c.kind == "config" and c.name == "alias-bomb")
    runs = root / "proc runs"
    debug = subprocess.run([slt_deploy_exe, "--debug", "search", "--config", str(config.path), "--runs-dir",
                            str(runs)], capture_output=True, text=True, env=cli_env, timeout=300)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == (
        f"slt-deploy: error: {config.path}: more than 100,000 YAML nodes once aliases are expanded (an alias bomb?)")
    assert not runs.exists()


def test_non_ascii_paths_under_a_non_utf8_locale(corpus, slt_deploy_exe, cli_env):
    """Under LANG=C without Python's UTF-8 mode a non-ASCII path reaches Python as surrogate escapes, which
    h5py refused ('surrogates not allowed', exit 2): the command now runs, and writes where it was told."""
    root, valid, _ = corpus
    out = root / "wrïtten by C locale" / "gräph.nir"
    env = dict(cli_env, LC_ALL="C", LANG="C", PYTHONUTF8="0")
    proc = subprocess.run([slt_deploy_exe, "export", str(valid["ticket"]), "--format", "nir", "--out", str(out)],
                          capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and main(["inspect", str(out)]) == 0


def test_internal_error_is_one_line_with_debug_hint(monkeypatch, capsys):
    """A bug (not a user error) says so in one line and how to see the traceback; --debug shows it."""
    import slt_deploy.models

    class Broken(dict):
        def values(self):
            raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(slt_deploy.models, "MODELS", Broken())
    monkeypatch.delenv("SLT_DEPLOY_DEBUG", raising=False)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: division by zero" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "models"])
    with pytest.raises(ZeroDivisionError):  # also after the command
        main(["models", "--debug"])
    monkeypatch.setenv("SLT_DEPLOY_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["models"])


def test_limit_is_raised_by_flag(corpus, capsys, monkeypatch):
    """--max-elements lets a genuinely larger network through: the same file refused at a lower limit."""
    _, valid, _ = corpus
    monkeypatch.setenv("SLT_DEPLOY_MAX_ELEMENTS", "67108864")  # main sets it; monkeypatch restores it after
    assert main(["--max-elements", "500", "inspect", str(valid["ticket"])]) == 2
    err = capsys.readouterr().err
    assert "elements declared, more than the limit of 500" in err and str(valid["ticket"]) in err
    assert main(["--max-elements", "100000", "inspect", str(valid["ticket"])]) == 0


# -------------------------------------------------------------------------------- damaged run directories
# Issue 32: a run directory is input too. One finished `search --objective energy` run (built once), copied per
# case and damaged in one file; every command that reads that file (deploy, inspect, the search resumed, a sweep
# over the same settings) must end in exit 2 with one line naming the file (and field), and change nothing.

RUN_FLAGS = ["--dataset", "digits", "--n-train", "400", "--n-test", "60", "--hidden", "16", "--timesteps", "4",
             "--epochs", "2", "--batch-size", "50", "--optimizer", "adam", "--lr", "0.01", "--objective", "energy",
             "--holdout", "60", "--rounds", "1", "--max-rounds", "2", "--prune-fraction", "0.5", "--device", "cpu"]
RUN_SETTINGS = {"data": {"dataset": "digits", "n_train": 400, "n_test": 60, "timesteps": 4},
                "model": {"hidden": [16]},
                "train": {"epochs": 2, "batch_size": 50, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
                "search": {"objective": "energy", "holdout": 60, "rounds": 1, "max_rounds": 2, "prune_fraction": 0.5}}
RUN_READERS = ("deploy", "inspect", "resume", "sweep")


@dataclass
class RunCase:
    name: str                  # what was done, to which file
    run_dir: Path              # the damaged copy, in <case>/runs/<run name>
    file: str                  # the file the message must name (relative to the run directory)
    field: Optional[str]       # the field the message must name, where the damage is in one field
    readers: Sequence[str]     # the commands that read that file


def build_run_dir(root: Path) -> Path:
    """A finished energy-objective run (4 points: rounds 0 and 1, each at T=4 and T_early=3), in about 3 s."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["search", *RUN_FLAGS, "--runs-dir", str(root / "runs"), "--no-progress"]) == 0
    (run,) = (root / "runs").iterdir()
    return run


def _json_edit(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(keys: Sequence, value) -> Callable[[dict], None]:
    def change(data):
        for k in keys[:-1]:
            data = data[k]
        data[keys[-1]] = value
    return change


def _drop(key: str) -> Callable[[dict], None]:
    return lambda data: data.pop(key)


def _state_edit(path: Path, meta_change=None, tensor_change=None) -> None:
    """Rewrite a checkpoint (safetensors) with its meta or one tensor changed."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta_change:
        meta_change(meta)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, str(path), metadata={"meta": json.dumps(meta)})


def _nan_tensor(tensors: dict) -> None:
    key = next(k for k in sorted(tensors) if k.startswith("model/") and tensors[k].is_floating_point())
    tensors[key].view(-1)[0] = float("nan")


def run_dir_cases(valid_run: Path, root: Path) -> List[RunCase]:
    """Every run-directory file, damaged every way: missing (where that is damage and not a phase to redo),
    truncated, not JSON, wrong types, NaN and infinity, paths leaving the directory, symbolic links out."""
    cases: List[RunCase] = []
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    front, cost0, cost1 = "front.json", "rounds/round_00_T4.cost.json", "rounds/round_01_T3.cost.json"
    done, ckpt_meta, rewind = "phases/round_01/done.safetensors", "phases/round_00/done.safetensors", "rewind.safetensors"
    front_readers, everyone, resume = ("deploy", "inspect", "resume", "sweep"), RUN_READERS, ("resume", "sweep")

    def add(name: str, file: str, field: Optional[str], readers: Sequence[str], damage: Callable[[Path], None]):
        d = root / f"case {len(cases):03d} {name.replace('/', '_')}" / "runs" / valid_run.name
        shutil.copytree(valid_run, d, symlinks=True)
        damage(d)
        cases.append(RunCase(name, d, file, field, readers))

    def text(file: str, change: Callable[[str], str]) -> Callable[[Path], None]:
        return lambda d: (d / file).write_text(change((d / file).read_text()))

    def truncate(file: str, frac: float) -> Callable[[Path], None]:
        return lambda d: (d / file).write_bytes((d / file).read_bytes()[: int((d / file).stat().st_size * frac)])

    def edit(file: str, change) -> Callable[[Path], None]:
        return lambda d: _json_edit(d / file, change)

    def link_out(file: str) -> Callable[[Path], None]:
        def damage(d: Path) -> None:
            target = outside / f"{len(cases)}-{Path(file).name}"
            shutil.copy(d / file, target)  # the same bytes, outside the run directory
            (d / file).unlink()
            os.symlink(target, d / file)
        return damage

    # front.json: deploy and inspect read it (and every point's cost file and ticket); resume and sweeps check it
    add("front/missing", front, None, ("deploy", "inspect"), lambda d: (d / front).unlink())
    for frac in (0.0, 0.3, 0.97):
        add(f"front/truncated-{frac}", front, None, front_readers, truncate(front, frac))
    add("front/not-json", front, None, front_readers, text(front, lambda t: "{front" + t))
    add("front/list", front, None, front_readers, text(front, lambda t: "[1, 2]"))
    add("front/no-points", front, "points", front_readers, edit(front, _drop("points")))
    add("front/empty-points", front, "points", front_readers, edit(front, _set(["points"], [])))
    add("front/drop-text", front, "max_accuracy_drop", front_readers, edit(front, _set(["max_accuracy_drop"], "1")))
    add("front/drop-negative", front, "max_accuracy_drop", front_readers, edit(front, _set(["max_accuracy_drop"], -1)))
    add("front/drop-nan", front, None, front_readers, text(front, lambda t: t.replace(
        '"max_accuracy_drop": 1.0', '"max_accuracy_drop": NaN')))
    add("front/drop-inf", front, "max_accuracy_drop", front_readers, text(front, lambda t: t.replace(
        '"max_accuracy_drop": 1.0', '"max_accuracy_drop": 1e999')))
    add("front/accuracy-text", front, "accuracy", front_readers, edit(front, _set(["points", 1, "accuracy"], "0.9")))
    add("front/accuracy-above-1", front, "accuracy", front_readers, edit(front, _set(["points", 1, "accuracy"], 1.5)))
    add("front/accuracy-not-its-cost", front, "accuracy", front_readers, edit(front, _set(["points", 3, "accuracy"], 0.99)))
    add("front/energy-not-its-cost", front, "energy_j", front_readers, edit(front, _set(["points", 3, "energy_j"], 1e-15)))
    add("front/round-negative", front, "round", front_readers, edit(front, _set(["points", 2, "round"], -1)))
    add("front/reference", front, "reference_accuracy", front_readers, edit(front, _set(["reference_accuracy"], 0.1)))
    add("front/chosen-not-a-point", front, "chosen", front_readers, edit(front, _set(["chosen", "label"], "other")))
    add("front/unknown-key", front, "colour", front_readers, edit(front, _set(["colour"], "red")))
    add("front/schema-version", front, "schema_version", front_readers, edit(front, _set(["schema_version"], "9")))
    add("front/cost-absolute", front, "cost", front_readers, edit(front, _set(["points", 0, "cost"], "/etc/hostname")))
    add("front/cost-dotdot", front, "cost", front_readers,
        edit(front, _set(["points", 0, "cost"], "../../../../../../etc/hostname")))
    add("front/ticket-leaves", front, "ticket", front_readers,
        edit(front, _set(["points", 0, "ticket"], "../other/ticket.safetensors")))
    add("front/cost-missing", front, "cost", ("deploy", "inspect"), edit(front, _set(["points", 1, "cost"],
                                                                                       "rounds/none.cost.json")))
    add("front/symlink-out", front, None, front_readers, link_out(front))
    # the rounds' cost files: read for every point (deploy, inspect), and as a cache when the search resumes
    add("cost/missing", cost1, None, ("deploy", "inspect"), lambda d: (d / cost1).unlink())
    for frac in (0.0, 0.5):
        add(f"cost/truncated-{frac}", cost0, None, everyone, truncate(cost0, frac))
    add("cost/not-json", cost0, None, everyone, text(cost0, lambda t: "{not json"))
    add("cost/accuracy-text", cost0, "accuracy", everyone, edit(cost0, _set(["accuracy"], "0.6")))
    add("cost/energy-negative", cost1, "energy_j", everyone, edit(cost1, _set(["energy_j"], -1.0)))
    add("cost/nan", cost1, None, everyone, text(cost1, lambda t: t.replace('"synops": ', '"synops": NaN, "x": ', 1)))
    add("cost/layer-nan", cost1, None, everyone, text(cost1, lambda t: t.replace(
        '"effective_synops": ', '"effective_synops": NaN, "y": ', 1)))
    add("cost/layer-inf", cost0, None, everyone, edit(cost0, _set(["layers", 0, "effective_synops"],
                                                                                  float("inf"))))
    add("cost/layers-empty", cost0, "layers", everyone, edit(cost0, _set(["layers"], [])))
    add("cost/t-early-above-T", cost0, "t_early", everyone, edit(cost0, _set(["t_early"], 9)))
    add("cost/unknown-key", cost1, "colour", everyone, edit(cost1, _set(["colour"], "red")))
    add("cost/symlink-out", cost1, None, everyone, link_out(cost1))
    # config.json: the run's settings, checked when the search resumes or a sweep starts
    add("config/truncated", "config.json", None, resume, truncate("config.json", 0.5))
    add("config/epochs-text", "config.json", "epochs", resume, edit("config.json", _set(["train", "epochs"], "2")))
    add("config/changed", "config.json", "epochs", resume, edit("config.json", _set(["train", "epochs"], 3)))
    add("config/nan", "config.json", None, resume, text("config.json", lambda t: t.replace('"lr": 0.01', '"lr": NaN')))
    add("config/unknown-key", "config.json", "colour", resume, edit("config.json", _set(["colour"], 1)))
    add("config/symlink-out", "config.json", None, resume, link_out("config.json"))
    # log.jsonl: one record a line
    add("log/truncated", "log.jsonl", "line 2", resume, text("log.jsonl", lambda t: t[:t.index("\n") + 20]))
    add("log/seconds-text", "log.jsonl", "seconds", resume, text("log.jsonl", lambda t: t.replace(
        '"seconds": ', '"seconds": "x", "z": ', 1)))
    add("log/nan", "log.jsonl", None, resume, text("log.jsonl", lambda t: t.replace('"energy_j": ', '"energy_j": NaN, "z": ', 1)))
    add("log/empty-line", "log.jsonl", "line 1", resume, text("log.jsonl", lambda t: "\n" + t))
    add("log/symlink-out", "log.jsonl", None, resume, link_out("log.jsonl"))
    # checkpoints and phase markers (safetensors: tensors plus a JSON meta)
    add("done/truncated", done, None, resume, truncate(done, 0.5))
    add("done/seconds-text", done, "seconds", resume, lambda d: _state_edit(d / done, _set(["seconds"], "x")))
    add("done/epochs-missing", done, "epochs_run", resume, lambda d: _state_edit(d / done, _drop("epochs_run")))
    add("done/history-nan", ckpt_meta, None, resume, lambda d: _state_edit(
        d / ckpt_meta, _set(["history", 0, "loss"], float("nan"))))
    # a finished job's checkpoints are not read by a sweep (its ticket is the result): the resumed search only
    add("done/weight-nan", done, "model/", ("resume",), lambda d: _state_edit(d / done, tensor_change=_nan_tensor))
    add("done/symlink-out", done, None, resume, link_out(done))
    add("rewind/epoch-negative", rewind, "epoch", resume, lambda d: _state_edit(d / rewind, _set(["epoch"], -1)))
    add("phases/symlink-dir-out", "phases/round_01", None, resume, lambda d: (
        shutil.move(str(d / "phases/round_01"), str(outside / f"{len(cases)}-round_01")),
        os.symlink(outside / f"{len(cases)}-round_01", d / "phases/round_01")))
    # the tickets of the front (what deploy exports)
    add("ticket/truncated", "rounds/round_00.safetensors", None, ("deploy",),
        truncate("rounds/round_00.safetensors", 0.5))
    return cases


def run_dir_commands(case: RunCase, out: Path) -> List[List[str]]:
    """The commands of ``case.readers``, on the damaged run directory."""
    runs = case.run_dir.parent
    sweep = runs.parent / "sweep.yaml"
    import yaml

    sweep.write_text(yaml.safe_dump({"base": RUN_SETTINGS, "grid": {"search.seed": [0]}, "runs_dir": str(runs),
                                     "executor": "serial", "out": str(out / "sweep")}))
    every = {"deploy": ["deploy", str(case.run_dir), "--profile", "loihi", "--backend", "fast-fixed", "--samples",
                        "10", "--out", str(out / "deploy"), "--no-progress"],
             "inspect": ["inspect", str(case.run_dir)],
             "resume": ["search", *RUN_FLAGS, "--runs-dir", str(runs), "--no-progress"],
             "sweep": ["sweep", str(sweep), "--no-progress"]}
    return [every[r] for r in case.readers]


def _tree(run_dir: Path) -> dict:
    """Every file of a run directory and its bytes' hash (what "nothing written" compares)."""
    import hashlib

    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(run_dir.rglob("*"))}


def run_dir_outcome(case: RunCase, argv: List[str], rc: int, err: str, before: dict, out: Path) -> Optional[str]:
    """What is wrong with one command's outcome on a damaged run directory (None: refused as it should be)."""
    err = err.strip()
    if rc != 2:
        return f"exit {rc}" + (" (a silent acceptance)" if rc == 0 else "")
    if "\n" in err or not err.startswith("slt-deploy: error: ") or "internal error" in err:
        return "not one error line"
    if case.file not in err:
        return f"file {case.file} not named"
    if case.field and case.field.lower() not in err.lower():
        return f"field {case.field!r} not named"
    if _tree(case.run_dir) != before:
        return "the run directory changed"
    if _written(out):
        return f"wrote {_written(out)}"
    return None


# kill -9 during a front update: the CLI with the atomic writer wrapped so that it SIGKILLs the process at the
# front.json write. "before": every round's cost file written, front.json not yet; "during": half of front.json
# in the writer's temporary file; "after": front.json written, the search's ticket not yet. The front the run
# was writing is kept in EXPECTED, to compare with the resumed run's, byte for byte.
KILLER = """
import os, signal, sys
from pathlib import Path
import slt_deploy.utils as utils
mode, expected = sys.argv[1], Path(sys.argv[2])
real = utils.write_bytes_atomic
def dying(path, data):
    if Path(path).name != "front.json":
        return real(path, data)
    expected.write_bytes(data)
    if mode == "during":
        Path(path).with_name(".front.json.killed" + utils.TEMP_SUFFIX).write_bytes(data[: len(data) // 2])
    if mode == "after":
        real(path, data)
    os.kill(os.getpid(), signal.SIGKILL)
utils.write_bytes_atomic = dying
from slt_deploy.cli import main
sys.exit(main(sys.argv[3:]))
"""


def kill_during_front_update(mode: str, runs: Path, expected: Path, env: dict) -> subprocess.CompletedProcess:
    """The corpus' energy search into ``runs``, SIGKILLed at its front update (``mode``, see KILLER)."""
    argv = [sys.executable, "-c", KILLER, mode, str(expected), "search", *RUN_FLAGS, "--runs-dir", str(runs),
            "--no-progress"]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def run_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("run dirs")
    valid = build_run_dir(root / "valid")
    return valid, run_dir_cases(valid, root / "cases")


def test_run_dir_corpus_covers_every_file_and_reader(run_corpus):
    _, cases = run_corpus
    files = {c.file.split("/")[0] if c.file.startswith("phases") else c.file for c in cases}
    assert {"front.json", "config.json", "log.jsonl", "rewind.safetensors", "phases"} <= files
    assert any(c.file.endswith(".cost.json") for c in cases)
    assert {r for c in cases for r in c.readers} == set(RUN_READERS)
    assert len(cases) >= 50


def test_the_valid_run_dir_is_read(run_corpus, capsys, tmp_path):
    """The control: the undamaged run directory deploys, inspects and resumes."""
    valid, _ = run_corpus
    run = tmp_path / "runs" / valid.name
    shutil.copytree(valid, run)
    case = RunCase("valid", run, "", None, RUN_READERS)
    for argv in run_dir_commands(case, tmp_path / "out")[:3]:
        assert main(argv) == 0, capsys.readouterr().err


def test_damaged_run_directories(run_corpus, capsys, monkeypatch):
    """Every damaged run directory through every command that reads the damaged file: exit 2, one line naming
    the file (and field), the run directory unchanged, nothing written; never a silent acceptance (so never a
    different ticket chosen without an error)."""
    monkeypatch.setenv("SLT_DEPLOY_DEBUG", "0")
    _, cases = run_corpus
    failures, runs = [], 0
    for case in cases:
        out = case.run_dir.parents[1] / "out"
        before = _tree(case.run_dir)
        for argv in run_dir_commands(case, out):
            runs += 1
            rc = main(argv)
            err = capsys.readouterr().err
            problem = run_dir_outcome(case, argv, rc, err, before, out)
            if problem:
                failures.append(f"{case.name} [{argv[0]}]: {problem}: {err.strip()[:300]}")
            shutil.rmtree(out, ignore_errors=True)
    assert not failures, f"{len(failures)} of {runs} runs failed:\n" + "\n".join(failures)
    print(f"damaged run directories: {len(cases)} cases, {runs} runs, 0 failures")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus")
    _, built = build_corpus(target)
    print(f"{len(built)} malformed files in {target}")
