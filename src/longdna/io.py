"""Atomic file output: a stage's file appears complete or not at all.

Every writer in the package goes through :func:`atomic_path`, which writes to a temporary file next to the
destination and renames it into place only when the writer returned without error. A crash, a SIGTERM or a
validation error therefore never leaves a truncated output that a rerun would take for finished work; the
temporary file a SIGKILL leaves behind is removed by the next writer of the same output
(:func:`remove_temporaries`).

A write that fails because the file system is full raises :class:`DiskFullError`, which names the file and
says that the disk is full, whatever the writer's own error was (NumPy's ``3000000 requested and 1372032
written``, torch's ``enforce fail ... unexpected pos``, bgzip's ``Error closing BGZFile object``).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: below this many free bytes a failed write is taken for a full disk (writers that lose the errno)
LOW_SPACE_BYTES = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; rename it to ``path`` on success.

    ``suffix`` is kept on the temporary name for writers that infer the format from it (``.npy``, ``.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with reporting_disk_full(path):
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with reporting_disk_full(path):  # inside the try: the free space is measured before the cleanup
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete (and report on stderr) the temporary files :func:`atomic_path` left for ``path`` when its writer
    was killed (SIGKILL, power loss); returns them. Call it only where no other process writes ``path`` at the
    same time (a workflow job's own outputs)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    leftovers = [p for p in path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*.tmp*") if p.is_file()]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
        print(f"removed {leftover}, left by an interrupted writer of {path.name}", file=sys.stderr)
    return leftovers


class DiskFullError(OSError):
    """A write failed because the file system is full (or the quota is exhausted); names the file."""

    def __init__(self, path: str | os.PathLike, cause: BaseException) -> None:
        directory = Path(path).parent
        free = _free_bytes(directory)
        super().__init__(
            errno.ENOSPC,
            f"{path}: cannot write it: the disk is full (no space left on the file system holding {directory},"
            f" {'unknown' if free is None else f'{free:,} bytes'} free; the writer said: {cause}). Free some space"
            " there or move the working directory to a larger disk, then rerun: finished outputs and checkpoints"
            " are intact.",
        )
        self.path = Path(path)

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return self.strerror


def _free_bytes(directory: Path) -> int | None:
    """Free bytes of the file system holding ``directory`` (or its nearest existing parent)."""
    existing = next((d for d in (directory, *directory.parents) if d.exists()), None)
    try:
        return None if existing is None else shutil.disk_usage(existing).free
    except OSError:
        return None


def is_disk_full(error: BaseException, directory: str | os.PathLike) -> bool:
    """Whether ``error``, raised while writing into ``directory``, comes from a full file system: its errno
    says so, its message is the system's (safetensors passes only that on), or it is an I/O error on a disk
    with next to no space left (NumPy, torch and htslib report a short write without the errno)."""
    if isinstance(error, DiskFullError):
        return False  # already reported
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or os.strerror(errno.ENOSPC) in str(error):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    free = _free_bytes(Path(directory))
    return free is not None and free < LOW_SPACE_BYTES


@contextlib.contextmanager
def reporting_disk_full(path: str | os.PathLike) -> Iterator[None]:
    """Turn an error of the writes in the block into :class:`DiskFullError` naming ``path`` when the file
    system holding it is full; other errors pass unchanged."""
    try:
        yield
    except Exception as error:
        if is_disk_full(error, Path(path).parent):
            raise DiskFullError(path, error) from error
        raise


def sort_safetensors_metadata(path: str | os.PathLike) -> None:
    """Rewrite the header of the safetensors file ``path`` in place with its ``__metadata__`` keys sorted.

    safetensors serialises the metadata from a Rust ``HashMap``, whose order changes from process to process,
    so two identical models would give files that differ in bytes. Sorting keeps the header's keys and values,
    hence its length: only those bytes change. Call it on the temporary file, before it is renamed into place.
    """
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        metadata = header.get("__metadata__") or {}
        if len(metadata) < 2:
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:
            raise ValueError(f"{path}: the sorted safetensors header outgrew the original ({len(text)} > {size} bytes)")
        fh.seek(8)
        fh.write(text.ljust(size))  # safetensors pads its header with spaces too


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (any :mod:`hashlib` algorithm), read in 16 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
