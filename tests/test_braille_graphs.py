"""Graphs of the structure of the NIR paper's recurrent Braille networks (Pedersen et al. 2024, paper/03_rnn),
written with ``nir``'s own API, and a cycle through two layers, on every backend.

Braille structure: Input(12) -> Affine with a bias -> CubaLIF hidden layer with a recurrent Affine onto itself ->
Affine -> CubaLIF readout -> Output (the readout's spikes). Variants: reset to zero (NIR's own semantics) and by
subtraction (``reset: subtract`` metadata), with and without the biases. The graphs come from
:func:`braille_graph` (deterministic) and are also stored in ``tests/data/braille/`` (a test checks the stored
files are what the helper writes), so they can be given to the command line as they are; the two-layer cycle is
``tests/data/two_layer_cycle.nir``. ``benchmarks/nir_paper.py`` runs the same files.

Agreement asserted: the float backends (fast-float, lava-float) spike for spike equal to the reference executor;
the fixed-point backends (fast-fixed, lava-fixed) bit for bit equal to each other, and close to the reference.
"""

from collections import OrderedDict
from pathlib import Path

import nir
import numpy as np
import pytest

from slt_deploy.exporters.nir_format import read_nir, recurrent_edges
from slt_deploy.simulate.run import BACKENDS

DT = 1e-4
DATA = Path(__file__).parent / "data" / "braille"
VARIANTS = [(reset, bias) for reset in ("zero", "subtract") for bias in (True, False)]
FLOAT = ("fast-float", "lava-float")
FIXED = ("fast-fixed", "lava-fixed")


def variant_name(reset: str, bias: bool) -> str:
    return f"braille_{reset}_{'bias' if bias else 'nobias'}"


def _cuba(n: int, alpha: float, beta: float, reset: str) -> nir.CubaLIF:
    """snnTorch's Synaptic convention (I <- alpha I + x, v <- beta v + I), as its exporter writes it."""
    return nir.CubaLIF(tau_syn=np.full(n, DT / (1 - alpha)), tau_mem=np.full(n, DT / (1 - beta)),
                       r=np.full(n, 1 / (1 - beta)), v_leak=np.zeros(n), v_threshold=np.ones(n),
                       v_reset=np.zeros(n), w_in=np.full(n, 1 / (1 - alpha)), metadata={"reset": reset, "dt": DT})


def braille_graph(reset: str = "zero", bias: bool = True, n_in: int = 12, n_hidden: int = 16, n_out: int = 7,
                  seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.06, 0.25, (n_hidden, n_in)).astype(np.float32)
    w_rec = rng.normal(-0.02, 0.12, (n_hidden, n_hidden)).astype(np.float32)
    w2 = rng.normal(0.0, 0.2, (n_out, n_hidden)).astype(np.float32)

    def b(n, mean):
        return (rng.normal(mean, 0.02, n) if bias else np.zeros(n)).astype(np.float32)

    nodes = OrderedDict(
        input=nir.Input(input_type={"input": np.array([n_in])}),
        fc1=nir.Affine(weight=w1, bias=b(n_hidden, 0.03)),
        lif1=_cuba(n_hidden, 0.7, 0.85, reset),
        w_rec=nir.Affine(weight=w_rec, bias=b(n_hidden, 0.0)),
        fc2=nir.Affine(weight=w2, bias=b(n_out, 0.02)),
        lif2=_cuba(n_out, 0.6, 0.9, reset),
        output=nir.Output(output_type={"output": np.array([n_out])}),
    )
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT, "source": "tests/test_braille_graphs.py"})


def two_layer_cycle_graph(seed: int = 3) -> nir.NIRGraph:
    """Input -> fc_in -> A (LIF) -> fc_ab -> B (CubaLIF) -> fc_ba -> A; B -> readout -> Output."""
    rng = np.random.default_rng(seed)
    n_in, n_a, n_b = 6, 10, 8
    beta = 0.8
    nodes = OrderedDict(
        input=nir.Input(input_type={"input": np.array([n_in])}),
        fc_in=nir.Affine(weight=rng.normal(0.35, 0.3, (n_a, n_in)).astype(np.float32),
                         bias=rng.normal(0.02, 0.02, n_a).astype(np.float32)),
        a=nir.LIF(tau=np.full(n_a, DT / (1 - beta)), r=np.full(n_a, 1 / (1 - beta)), v_leak=np.zeros(n_a),
                  v_threshold=np.ones(n_a), v_reset=np.zeros(n_a), metadata={"reset": "subtract"}),
        fc_ab=nir.Affine(weight=rng.normal(0.05, 0.3, (n_b, n_a)).astype(np.float32),
                         bias=rng.normal(0.02, 0.02, n_b).astype(np.float32)),
        b=_cuba(n_b, 0.5, 0.8, "zero"),
        fc_ba=nir.Linear(weight=rng.normal(-0.1, 0.3, (n_a, n_b)).astype(np.float32)),
        readout=nir.Affine(weight=rng.normal(0.0, 1.0, (3, n_b)).astype(np.float32), bias=np.zeros(3, np.float32)),
        output=nir.Output(output_type={"output": np.array([3])}),
    )
    edges = [("input", "fc_in"), ("fc_in", "a"), ("a", "fc_ab"), ("fc_ab", "b"), ("b", "fc_ba"), ("fc_ba", "a"),
             ("b", "readout"), ("readout", "output")]
    return nir.NIRGraph(nodes=dict(nodes), edges=edges, metadata={"dt": DT})


def spike_input(n_samples=4, steps=25, n_in=12, seed=7) -> np.ndarray:
    return (np.random.default_rng(seed).random((n_samples, steps, n_in)) < 0.3).astype(np.float32)


def run(backend, graph, x, first_layer="chip"):
    if backend == "reference":
        return BACKENDS[backend](graph, x)
    return BACKENDS[backend](graph, x, first_layer=first_layer)


def backends(names):
    return [pytest.param(b, marks=pytest.mark.lava, id=b) if b.startswith("lava") else pytest.param(b, id=b)
            for b in names]


# --------------------------------------------------------------------------------------------- the data


@pytest.mark.parametrize("reset,bias", VARIANTS)
def test_stored_braille_graphs_are_the_helpers_and_have_the_papers_structure(reset, bias):
    stored = read_nir(DATA / f"{variant_name(reset, bias)}.nir")
    made = braille_graph(reset, bias)
    assert sorted(stored.nodes) == sorted(made.nodes)
    assert sorted(map(tuple, stored.edges)) == sorted(map(tuple, made.edges))
    for name, node in made.nodes.items():
        for key in ("weight", "bias", "tau_syn", "tau_mem", "r", "w_in", "v_threshold"):
            if hasattr(node, key):
                np.testing.assert_array_equal(getattr(stored.nodes[name], key), getattr(node, key))
    assert stored.nodes["lif1"].metadata["reset"] == reset
    assert recurrent_edges(stored) == [("lif1", "w_rec")]
    assert [type(stored.nodes[n]).__name__ for n in ("fc1", "lif1", "w_rec", "fc2", "lif2")] == \
        ["Affine", "CubaLIF", "Affine", "Affine", "CubaLIF"]
    assert bool(np.any(stored.nodes["fc1"].bias)) == bias


# ------------------------------------------------------------------------------------ the bias into CubaLIF


def test_the_bias_enters_the_synaptic_current_as_nir_defines_cubalif():
    """The reference executor's CubaLIF against NIR's equations stepped by hand (forward Euler, dt):
    I_t = a I_{t-1} + g_s (W x_t + b), v_t = d v_{t-1} + g_m I_t (zero reset at the next step); and the IR puts
    g_m g_s b into the population's current bias, not its voltage bias."""
    from slt_deploy.compile import lower

    graph = braille_graph("zero", True)
    x = spike_input(2, 20)
    ref = run("reference", graph, x)
    node, fc1, w_rec = graph.nodes["lif1"], graph.nodes["fc1"], graph.nodes["w_rec"]
    a = 1 - DT / node.tau_syn
    g_s = node.w_in * DT / node.tau_syn
    d = 1 - DT / node.tau_mem
    g_m = node.r * DT / node.tau_mem
    i = np.zeros((2, 16))
    v = np.zeros((2, 16))
    s = np.zeros((2, 16))
    hand = []
    for t in range(20):
        current = x[:, t] @ fc1.weight.T.astype(np.float64) + fc1.bias + s @ w_rec.weight.T + w_rec.bias
        i = a * i + g_s * current
        v = d * np.where(s > 0, 0.0, v) + g_m * i
        s = (v > 1.0).astype(np.float64)
        hand.append(s)
    hand = np.stack(hand, axis=1)
    assert (ref.spikes["lif1"] == hand).mean() >= 0.99  # float32 executor vs float64 by hand
    assert 0.05 < hand.mean() < 0.6
    pop = lower(graph, first_layer="chip").population("lif1")
    np.testing.assert_allclose(pop.current_bias, g_m * g_s * (fc1.bias + w_rec.bias), rtol=1e-6)
    assert not pop.bias_mant.any()


# ---------------------------------------------------------------------------------------- every backend

_REFERENCE = {}


def reference_spikes(reset, bias):
    key = (reset, bias)
    if key not in _REFERENCE:
        _REFERENCE[key] = run("reference", braille_graph(reset, bias), spike_input()).spikes
    return _REFERENCE[key]


@pytest.mark.parametrize("reset,bias", VARIANTS)
@pytest.mark.parametrize("backend", backends(FLOAT))
def test_braille_graph_float_backends_are_the_reference_spike_for_spike(backend, reset, bias):
    ref = reference_spikes(reset, bias)
    for name in ("lif1", "lif2"):
        assert 0.02 < ref[name].mean() < 0.7, (name, ref[name].mean())
    got = run(backend, braille_graph(reset, bias), spike_input()).spikes
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{backend} {name}")


_FAST_FIXED = {}


def fast_fixed_spikes(reset, bias):
    key = (reset, bias)
    if key not in _FAST_FIXED:
        _FAST_FIXED[key] = run("fast-fixed", braille_graph(reset, bias), spike_input()).spikes
    return _FAST_FIXED[key]


@pytest.mark.parametrize("reset,bias", VARIANTS)
def test_braille_graph_fast_fixed_point_is_close_to_the_reference(reset, bias):
    ref, fixed = reference_spikes(reset, bias), fast_fixed_spikes(reset, bias)
    for name in ("lif1", "lif2"):
        assert (fixed[name] == ref[name]).mean() >= 0.85, (name, (fixed[name] == ref[name]).mean())  # measured 0.87-1.0


@pytest.mark.lava
@pytest.mark.parametrize("reset,bias", VARIANTS)
def test_braille_graph_lava_fixed_point_is_the_fast_simulator_bit_for_bit(reset, bias):
    got = run("lava-fixed", braille_graph(reset, bias), spike_input()).spikes
    fixed = fast_fixed_spikes(reset, bias)
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(got[name], fixed[name], err_msg=name)


# ----------------------------------------------------------------------------------- a cycle through two layers


def test_stored_two_layer_cycle_graph_is_the_helpers():
    stored = read_nir(DATA.parent / "two_layer_cycle.nir")
    made = two_layer_cycle_graph()
    assert sorted(stored.nodes) == sorted(made.nodes)
    assert sorted(map(tuple, stored.edges)) == sorted(map(tuple, made.edges))
    for name in ("fc_in", "fc_ab", "fc_ba", "readout"):
        np.testing.assert_array_equal(stored.nodes[name].weight, made.nodes[name].weight)


def test_a_cycle_through_two_layers_has_one_step_per_synapse_layer_on_the_reference():
    """The reference executor against the documented reading (ir.py): I_A[t] = W_in x[t] + b_in + W_BA s_B[t-1],
    I_B[t] = W_AB s_A[t-1] + b_AB (s[-1] = 0), stepped by hand in float64."""
    graph = two_layer_cycle_graph()
    assert sorted(recurrent_edges(graph)) == [("a", "fc_ab"), ("b", "fc_ba")]
    x = spike_input(3, 20, 6, seed=11)
    ref = run("reference", graph, x).spikes
    g = graph.nodes
    n_a, n_b = 10, 8
    s_a, s_b = np.zeros((3, n_a)), np.zeros((3, n_b))
    v_a, v_b, i_b = np.zeros((3, n_a)), np.zeros((3, n_b)), np.zeros((3, n_b))
    out_a, out_b = [], []
    for t in range(20):
        cur_a = x[:, t] @ g["fc_in"].weight.T.astype(np.float64) + g["fc_in"].bias + s_b @ g["fc_ba"].weight.T
        cur_b = s_a @ g["fc_ab"].weight.T.astype(np.float64) + g["fc_ab"].bias
        v_a = 0.8 * v_a + cur_a - s_a  # subtract reset, threshold 1
        i_b = 0.5 * i_b + cur_b
        v_b = 0.8 * np.where(s_b > 0, 0.0, v_b) + i_b
        s_a, s_b = (v_a > 1.0).astype(float), (v_b > 1.0).astype(float)
        out_a.append(s_a)
        out_b.append(s_b)
    for name, hand in (("a", out_a), ("b", out_b)):
        hand = np.stack(hand, axis=1)
        assert 0.05 < hand.mean() < 0.7, (name, hand.mean())
        assert (ref[name] == hand).mean() >= 0.99, name


@pytest.mark.parametrize("first_layer", ["host", "chip"])
@pytest.mark.parametrize("backend", backends(("fast-float", "lava-float", "lava-fixed")))
def test_a_cycle_through_two_layers_runs_on_every_backend(backend, first_layer):
    graph = two_layer_cycle_graph()
    x = spike_input(3, 20, 6, seed=11)
    got = run(backend, graph, x, first_layer).spikes
    if backend.endswith("float"):
        expected = run("reference", graph, x).spikes
    else:
        expected = run("fast-fixed", graph, x, first_layer).spikes
        ref = run("reference", graph, x).spikes
        assert min((expected[n] == ref[n]).mean() for n in ("a", "b")) >= 0.9
    for name in ("a", "b"):
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_netx_refuses_a_current_bias_in_one_line(tmp_path):
    """netx's CUBA neuron adds its bias to the voltage: a file of a CubaLIF layer fed through a bias would run
    another network, so it is refused (the feed-forward Braille graph, readout made non-spiking)."""
    from slt_deploy.compile import lower
    from slt_deploy.errors import ExportError
    from slt_deploy.exporters.netx_format import lowered_to_netx

    graph = braille_graph("zero", True)
    del graph.nodes["w_rec"], graph.nodes["lif2"]
    graph.edges[:] = [e for e in graph.edges if "w_rec" not in e and "lif2" not in e] + [("fc2", "output")]
    net = lower(graph, "fixed_pt", first_layer="chip", netx_compatible=True)
    with pytest.raises(ExportError, match=r"^layer\(s\) lif1 take a bias into the synaptic current \(CubaLIF fed "
                                          r"through a bias\); netx's CUBA neuron adds its bias to the voltage"):
        lowered_to_netx(net, tmp_path / "x.h5", graph)
    assert not (tmp_path / "x.h5").exists()
