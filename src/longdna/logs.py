"""Send a job's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Redirect stdout and stderr to ``path`` (appending); a failure's traceback is written there too.

    The exception is re-raised, so the job still fails (with its exit status: a preempted pretraining run
    keeps its distinct code).
    """
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except BaseException as exc:
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                traceback.print_exc(file=log)
            raise
