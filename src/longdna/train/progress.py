"""Plain progress lines for job logs: newline-terminated, so ``tail -f`` works and a log stays readable (a
terminal progress bar written to a file is one long line of carriage returns)."""

from __future__ import annotations

import sys
import time


class ProgressLog:
    """``[name] text`` lines on stderr: each phase's summaries (:meth:`line`) and, within a phase, its step,
    loss, speed and time left (:meth:`step`), at most every ``interval`` seconds."""

    def __init__(self, name: str, enabled: bool = True, interval: float = 30.0) -> None:
        self.name, self.enabled, self.interval = name, enabled, interval
        self.last = self.phase_start = time.time()
        self.first_step = self.total = 0

    def line(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.name}] {text}", file=sys.stderr, flush=True)

    def begin(self, total_steps: int, first_step: int = 0) -> None:
        """A phase of ``total_steps`` optimiser steps starts at ``first_step`` (a resumed run: past 0); its
        speed is measured from here."""
        self.phase_start, self.first_step, self.total = time.time(), first_step, total_steps

    def step(self, where: str, step: int, loss: float, extra: str = "") -> None:
        """After 1-based ``step`` of the phase; ``extra`` is appended (e.g. tokens per second)."""
        now = time.time()
        if now - self.last < self.interval or step >= self.total:
            return
        self.last = now
        rate = (step - self.first_step) / max(now - self.phase_start, 1e-9)
        left = (self.total - step) / rate / 60 if rate > 0 else float("inf")
        self.line(
            f"{where}, step {step}/{self.total}: loss {loss:.4f}, {rate:.2f} steps/s{extra},"
            f" {left:.1f} min left in this phase"
        )
