"""Every artifact path of a search run, in one place.

A run directory is named from the hash of its full settings (``RunConfig.run_name``), holds those settings,
and is where a killed run resumes: a phase whose ``done`` file exists is skipped, a phase with a checkpoint
continues from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        """One JSON line per round (rewritten atomically, so a resumed run never duplicates lines)."""
        return self.root / "log.jsonl"

    @property
    def ticket(self) -> Path:
        """The final ticket of the search."""
        return self.root / "ticket.safetensors"

    @property
    def plot(self) -> Path:
        return self.root / "accuracy_vs_sparsity.png"

    @property
    def rewind_state(self) -> Path:
        return self.root / "rewind.safetensors"

    def round_ticket(self, k: int, timesteps=None) -> Path:
        """Round ``k``'s ticket; with ``timesteps``, the same weights kept at that T (energy objective)."""
        return self.root / "rounds" / (f"round_{k:02d}.safetensors" if timesteps is None
                                       else f"round_{k:02d}_T{timesteps}.safetensors")

    def round_cost(self, k: int, timesteps: int) -> Path:
        """Energy objective: round ``k``'s accuracy, activity and energy measured at ``timesteps``."""
        return self.root / "rounds" / f"round_{k:02d}_T{timesteps}.cost.json"

    @property
    def front(self) -> Path:
        """Energy objective: every round's point, the accuracy-energy front and the chosen ticket."""
        return self.root / "front.json"

    @property
    def front_plot(self) -> Path:
        return self.root / "front.png"

    def checkpoint(self, phase: str) -> Path:
        return self.root / "phases" / phase / "checkpoint.safetensors"

    def phase_done(self, phase: str) -> Path:
        return self.root / "phases" / phase / "done.safetensors"
