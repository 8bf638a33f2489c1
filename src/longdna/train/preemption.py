"""Preemption: SIGTERM or SIGUSR1 (what SLURM sends before a kill or requeue) ends a run cleanly.

The training loop checks :class:`Preemption`'s flag between steps, writes a checkpoint and raises
:class:`Preempted`, which exits with :data:`PREEMPTED_EXIT_CODE` after leaving :data:`PREEMPTED_MARKER` in
the output directory; rerunning resumes from the checkpoint. Standard library only: the launcher
(:mod:`longdna.train.launch`) reads the exit code and the marker.
"""

from __future__ import annotations

import signal
from typing import Any

#: exit status of a run stopped by SIGTERM after writing its checkpoint (EX_TEMPFAIL: "try again")
PREEMPTED_EXIT_CODE = 75
#: written into the output directory by a preempted run, so a launcher can tell preemption from failure
PREEMPTED_MARKER = "preempted.json"


class Preempted(SystemExit):
    """Raised after the preemption checkpoint; exits the process with :data:`PREEMPTED_EXIT_CODE`."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step


class Preemption:
    """Turns SIGTERM (and SIGUSR1, SLURM's configurable warning) into a flag checked between steps."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Preemption:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
