"""Resumable training state on disk: ``step-XXXXXXXX/state.pt`` directories written atomically.

A checkpoint holds everything needed to continue bit-for-bit: model, optimiser, the step and samples seen
(the data position: every sample is a function of its index), the RNG states (Python, NumPy, torch CPU and
CUDA) of every process, and the run's fingerprint (:mod:`longdna.fingerprint`). ``best.json`` names the
checkpoint with the lowest validation loss; the store keeps the last ``keep_last`` checkpoints plus that one.
``finished.json`` marks a run that completed and exported its weights.

Nothing in a store is deleted to make room for another run: :meth:`CheckpointStore.set_aside` renames the
whole directory (``checkpoints.stale-<fingerprint>-<time>``), and a checkpoint that cannot be read back (a
truncated ``state.pt``) is renamed ``unreadable-step-XXXXXXXX`` inside it, so that :meth:`load_latest`
falls back to the one before.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longdna.io import read_json, reporting_disk_full, write_json

STATE_FILE = "state.pt"
BEST_FILE = "best.json"
FINISHED_FILE = "finished.json"


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
    """A directory of step checkpoints; only one process (the main one) may write to it."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)

    def steps(self) -> list[int]:
        if not self.directory.exists():
            return []
        return sorted(int(p.name.split("-")[1]) for p in self.directory.glob("step-*") if (p / STATE_FILE).exists())

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def best(self) -> dict[str, Any] | None:
        """``{"step", "valid_loss"}`` of the best checkpoint, or None before the first validated one."""
        file = self.directory / BEST_FILE
        return read_json(file) if file.exists() else None

    def finished(self) -> dict[str, Any] | None:
        """What :meth:`mark_finished` recorded, or None while the run is unfinished."""
        file = self.directory / FINISHED_FILE
        return read_json(file) if file.exists() else None

    def save(
        self, step: int, state: dict[str, Any], valid_loss: float | None = None, files: dict[str, str] | None = None
    ) -> Path:
        """Write ``state`` for ``step`` (a complete directory appears, or nothing), with ``files`` (name -> text)
        beside it; if ``valid_loss`` beats the best so far, mark this checkpoint best; then prune old ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._remove_partial_writes()
        final = self.path(step)
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=self.directory))
        try:
            with reporting_disk_full(final / STATE_FILE):
                torch.save(state, tmp / STATE_FILE)
                for name, text in (files or {}).items():
                    (tmp / name).write_text(text)
            if final.exists():  # rewriting a step: move the old one aside so ``final`` is never half-present
                os.replace(final, tmp / "previous")
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(final / "previous", ignore_errors=True)
        best = self.best()
        if valid_loss is not None and (best is None or valid_loss < best["valid_loss"]):
            self.mark_best(step, valid_loss)
        self._prune()
        return final

    def mark_best(self, step: int, valid_loss: float) -> None:
        write_json(self.directory / BEST_FILE, {"step": step, "valid_loss": valid_loss})

    def mark_finished(self, step: int, fingerprint: dict[str, Any]) -> None:
        """Record that the run completed at ``step`` and exported its weights: its checkpoints are then never
        resumed (:meth:`set_aside` makes room for a rerun)."""
        write_json(self.directory / FINISHED_FILE, {"step": step, "fingerprint": fingerprint})

    def load(self, path: Path) -> dict[str, Any]:
        # the state holds NumPy RNG tuples and config dicts, hence not weights_only
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)

    def load_latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that can be read, and its state. A newer one that cannot (a truncated or
        damaged ``state.pt``) is renamed ``unreadable-step-XXXXXXXX``, with a warning naming both."""
        for step in reversed(self.steps()):
            path = self.path(step)
            try:
                return path, self.load(path)
            except Exception as err:  # torch reports a damaged file as RuntimeError, EOFError, pickle errors, ...
                moved = _unique(self.directory / f"unreadable-{path.name}")
                os.replace(path, moved)
                warnings.warn(
                    f"{path / STATE_FILE} cannot be read ({type(err).__name__}: {err}); kept as {moved}; falling"
                    " back to the checkpoint before it",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return None

    def set_aside(self, tag: str) -> Path:
        """Rename the whole store to ``<directory>.stale-<tag>-<time>`` (kept for inspection, never resumed);
        the store is empty afterwards. Returns the new name."""
        moved = _unique(self.directory.with_name(f"{self.directory.name}.stale-{tag}-{time.strftime('%Y%m%dT%H%M%S')}"))
        os.replace(self.directory, moved)
        return moved

    def _remove_partial_writes(self) -> None:
        """Temporary directories left by a process killed mid-save (SIGKILL after the SIGTERM grace period)."""
        for leftover in self.directory.glob(".step-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _prune(self) -> None:
        best = self.best()
        keep = set(self.steps()[-self.keep_last :]) | ({best["step"]} if best else set())
        for step in self.steps():
            if step not in keep:
                shutil.rmtree(self.path(step), ignore_errors=True)


def _unique(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... if it exists."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate
