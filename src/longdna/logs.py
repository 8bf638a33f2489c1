"""Send a job's output to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Redirect stdout and stderr to ``path`` (appending), with the ``longdna`` loggers' INFO records there,
    time-stamped; a failure's traceback is written there too.

    The exception is re-raised, so the job still fails (with its exit status: a preempted pretraining run
    keeps its distinct code).
    """
    package = logging.getLogger("longdna")
    with open(path, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        level = package.level
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        try:
            yield
        except BaseException as exc:
            if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
                traceback.print_exc(file=log)
            raise
        finally:
            package.removeHandler(handler)
            package.setLevel(level)


def describe_file(path: str | os.PathLike) -> str:
    """``path (size)``, for a log line."""
    size = float(Path(path).stat().st_size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    return f"{path} ({size:.3g} {unit})"
