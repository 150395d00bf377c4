"""The main job end to end on the offline default (the MNIST test split in ../shared/data/mnist).

Each stage of the pipeline adds its step here, reading the artifact the previous stage wrote.
"""

from __future__ import annotations

from pathlib import Path

from .config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig


def demo_config(quick: bool = False) -> RunConfig:
    """IMP on the LeNet-300-100 spiking MLP, direct encoding, T=5, 8,000/2,000 MNIST split."""
    return RunConfig(
        model=ModelConfig(name="mlp"),
        data=DataConfig(dataset="mnist", timesteps=5),
        train=TrainConfig(epochs=2 if quick else 5, lr=0.1),
        search=SearchConfig(method="imp", rounds=2 if quick else 4, rewind_epoch=1, seed=0),
    )


def run_demo(out: str | Path = "demo_out", quick: bool = False, progress: bool = True) -> dict:
    from .describe import describe_file
    from .search import search

    out = Path(out)
    print("== 1. search: IMP ticket on the offline MNIST split")
    result = search(demo_config(quick), out / "runs", progress=progress)
    print()
    print(describe_file(result.ticket_path))

    from .export import export_ticket

    print("\n== 2. export: NIR (the spiking ticket) and ONNX (its ANN counterpart)")
    nir_path = export_ticket(result.ticket_path, "nir", out / "ticket.nir")
    onnx_path = export_ticket(result.ticket_path, "onnx", out / "ticket_ann.onnx")
    print(describe_file(nir_path))
    print(describe_file(onnx_path))

    from .paths import RunPaths
    from .report import build_report

    print("\n== 3. report: energy, memory and fit per hardware profile, dense SNN and ticket vs the ANN")
    report = build_report([RunPaths(result.run_dir).round_ticket(0), result.ticket_path], ann=onnx_path,
                          profiles=["cmos45", "loihi", "loihi2", "truenorth", "fp32-45nm", "int8-45nm"],
                          out=out / "report", samples=500, progress=progress)
    print(report.markdown.read_text().split("\n## ")[1] if "\n## " in report.markdown.read_text() else "")
    print(f"wrote {report.html}")
    return {"ticket": str(result.ticket_path), "nir": str(nir_path), "onnx": str(onnx_path),
            "report": str(report.html)}
