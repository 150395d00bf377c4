"""The main job end to end on the offline default (the MNIST test split in ../shared/data/mnist).

search (IMP ticket) -> export (NIR + ONNX) -> compile and simulate (Lava float and Loihi fixed point where Lava is
installed, the fast simulator; each checked against the snnTorch-exact reference) -> report (energy, memory, fit
per profile).
Each step reads the artifact the previous one wrote.
"""

from __future__ import annotations

from pathlib import Path

from .config import SNN_RECIPE, DataConfig, ModelConfig, RunConfig, SearchConfig
from .timing import clock, timed


# every shipped chip, the 45 nm convention and the ANN targets a chip's user could deploy instead
DEMO_PROFILES = ["cmos45", "loihi", "loihi2", "truenorth", "xylo", "dynapcnn", "fp32-45nm", "int8-45nm",
                 "mlperf-tiny-gap9", "mlperf-tiny-stm32u5"]


def demo_config(quick: bool = False) -> RunConfig:
    """IMP on the LeNet-300-100 spiking MLP, direct encoding, T=5, 8,000/2,000 MNIST split, trained by the SNN
    recipe (:data:`slt_deploy.config.SNN_RECIPE`)."""
    return RunConfig(
        model=ModelConfig(name="mlp"),
        data=DataConfig(dataset="mnist", timesteps=5),
        train=SNN_RECIPE.replace(epochs=2) if quick else SNN_RECIPE,
        search=SearchConfig(method="imp", rounds=2 if quick else 4, rewind_epoch=1, seed=0),
    )


def demo_energy_config(quick: bool = False) -> RunConfig:
    """The demo's search with the energy objective (issue 23): IMP 50 % per round on the same recipe, each round's
    energy on the 45 nm convention, the cheapest ticket within 1 point of the dense round (held-out samples)."""
    base = demo_config(quick)
    return base.replace(search=base.search.replace(objective="energy", cost_profile="cmos45", prune_fraction=0.5,
                                                   max_rounds=base.search.rounds, spike_penalty=0.02))


def run_demo(out: str | Path = "demo_out", quick: bool = False, progress: bool = True, usage=None) -> dict:
    """The demo's steps, then where its wall time went, stage by stage (stages timed inside the report too);
    ``usage``: a :class:`~slt_deploy.config.UsageConfig` (rate, accuracy tolerance) for the verdict."""
    with clock() as stages:
        paths = _demo_steps(out, quick, progress, usage)
    print("\n== where the time went (wall seconds per stage; the report's own line excludes its named parts)")
    print(stages.table())
    return paths


def _demo_steps(out: str | Path, quick: bool, progress: bool, usage) -> dict:
    from .cost.objective import round_meter
    from .describe import describe_file, describe_front
    from .search import search

    out = Path(out)
    print("== 1. search: IMP with the energy objective on the offline MNIST split")
    config = demo_energy_config(quick)
    result = timed("search", search, config, out / "runs", progress=progress, meter=round_meter(config))
    print()
    print(describe_front(result.run_dir))  # the accuracy-energy front; the chosen ticket is the search's ticket
    print(describe_file(result.ticket_path))

    from .export import export_ticket

    print("\n== 2. export: NIR (the spiking ticket) and ONNX (its ANN counterpart)")
    nir_path = timed("export", export_ticket, result.ticket_path, "nir", out / "ticket.nir")
    onnx_path = timed("export", export_ticket, result.ticket_path, "onnx", out / "ticket_ann.onnx")
    print(describe_file(nir_path))
    print(describe_file(onnx_path))

    from .simulate import simulate
    from .utils import write_json_atomic
    from .simulate.workload import test_set_size

    from .simulate.run import loihi_backend

    loihi, why = loihi_backend()
    print("\n== 3. compile and simulate: " + ("Lava float and Loihi fixed point, " if loihi == "lava-fixed" else "")
          + "the fast bit-exact simulator")
    print(f"Loihi simulator: {loihi} ({why})")
    lava_runs = (("lava-float", 100), ("lava-fixed", 100)) if loihi == "lava-fixed" else ()
    simulations = {}
    for backend, samples in (*lava_runs, ("fast-fixed", test_set_size(demo_config(quick).data))):
        sim = timed("Lava" if backend.startswith("lava") else "fast simulator", simulate, nir_path, backend,
                    samples=samples, progress=progress)
        simulations[backend] = sim.to_dict()
        print(sim.summary().split("\n  target=")[0])
    write_json_atomic(out / "simulate.json", simulations)

    from .paths import RunPaths
    from .report import build_report

    print("\n== 4. report: energy, memory and fit per hardware profile, dense SNN and ticket vs the ANN")
    # the ANN side is the dense ANN twin trained with the ticket's recipe (cached in the runs folder)
    from .run_files import load_front

    # the report shows the front: the dense round and every non-dominated ticket, the chosen one among them
    front, _ = load_front(result.run_dir)
    tickets = [RunPaths(result.run_dir).round_ticket(0), *(result.run_dir / p.ticket for p in front.front)]
    print(f"the front's tickets, chosen: {front.chosen.ticket} (the search's ticket.safetensors)")
    report = timed("report", build_report, list(dict.fromkeys(tickets)), profiles=DEMO_PROFILES, out=out / "report",
                   samples=500, progress=progress, chosen=result.run_dir / front.chosen.ticket,
                   rate=None if usage is None else usage.rate,
                   accuracy_tolerance=None if usage is None else usage.accuracy_tolerance)
    print(report.markdown.read_text().split("\n## ")[1] if "\n## " in report.markdown.read_text() else "")
    print(f"wrote {report.html}")
    return {"ticket": str(result.ticket_path), "nir": str(nir_path), "onnx": str(onnx_path),
            "simulate": str(out / "simulate.json"), "report": str(report.html)}
