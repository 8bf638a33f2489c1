"""Resumable training state on disk: ``step-XXXXXXXX/state.pt`` directories written atomically.

A checkpoint holds everything needed to continue bit-for-bit: model, optimiser, the step and samples seen
(the data position: every sample is a function of its index), the best validation loss so far, and the RNG
states (Python, NumPy, torch CPU and CUDA). ``best.json`` names the step with the best validation loss; the
store keeps the last ``keep_last`` checkpoints plus that one.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longdna.io import read_json, write_json

STATE_FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointStore:
    def __init__(self, directory: str | os.PathLike, keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)

    def steps(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(
            int(p.name.split("-")[1]) for p in self.directory.glob("step-*") if (p / STATE_FILE).exists()
        )

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def best(self) -> dict[str, Any] | None:
        file = self.directory / "best.json"
        return read_json(file) if file.exists() else None

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``state`` for ``step`` (a complete directory appears, or nothing), then prune old ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(step)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=self.directory))
        try:
            torch.save(state, tmp / STATE_FILE)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune()
        return final

    def mark_best(self, step: int, valid_loss: float) -> None:
        write_json(self.directory / "best.json", {"step": step, "valid_loss": valid_loss})

    def load(self, path: Path) -> dict[str, Any]:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)

    def _prune(self) -> None:
        best = self.best()
        keep = set(self.steps()[-self.keep_last :]) | ({best["step"]} if best else set())
        for step in self.steps():
            if step not in keep:
                shutil.rmtree(self.path(step), ignore_errors=True)
