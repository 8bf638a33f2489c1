"""Checkpoints named by the config: ``hf:OWNER/NAME[@REVISION]`` on the Hugging Face Hub, or a local directory.

Downloads go through ``huggingface_hub`` and its cache, so its environment variables apply as usual:
``HF_ENDPOINT`` (a mirror or a local test server), ``HF_HOME`` / ``HF_HUB_CACHE`` (where files are kept),
``HF_HUB_OFFLINE=1`` (use the cache only), ``HF_TOKEN`` (gated or private repositories). Only the files a
checkpoint needs are fetched (:data:`longdna.models.released.CHECKPOINT_FILES`). The commit a revision resolved
to is recorded, with each file's SHA-256, in the provenance :func:`fetch` returns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HF_PREFIX = "hf:"
#: what a Hub source looks like (``models.<name>.pretrained`` is checked against it by :mod:`longdna.config`)
HUB_SOURCE_PATTERN = r"^hf:[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$"
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None  # branch, tag or commit; None: the default branch

    def __str__(self) -> str:
        return HF_PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_source(spec: str) -> HubSource | Path:
    """``hf:OWNER/NAME[@REVISION]`` -> :class:`HubSource`; anything else is a local directory."""
    if not spec.startswith(HF_PREFIX):
        return Path(spec)
    if not re.fullmatch(HUB_SOURCE_PATTERN, spec):
        raise ValueError(f"{spec!r}: expected hf:OWNER/NAME or hf:OWNER/NAME@REVISION")
    repo_id, _, revision = spec[len(HF_PREFIX) :].partition("@")
    return HubSource(repo_id, revision or None)


def fetch(spec: str, files: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """The local directory holding ``spec``'s checkpoint, and its provenance (source, resolved commit, files).

    ``files``: the names to download (those the repository has; the others are skipped).
    """
    source = parse_source(spec)
    if isinstance(source, Path):
        directory = source.expanduser().resolve()
        if not directory.is_dir():
            raise FileNotFoundError(f"{spec}: not a directory (a local checkpoint is a directory with config.json)")
        return directory, {"source": spec, "path": str(directory), "files": _checksums(directory, files)}
    directory = _download(source, files)
    commit = directory.name  # huggingface_hub keeps every revision's files under snapshots/<commit>
    if not _COMMIT.fullmatch(commit):
        raise RuntimeError(f"{spec}: unexpected snapshot folder {directory}")
    from huggingface_hub import constants

    return directory, {
        "source": str(source),
        "repo_id": source.repo_id,
        "revision": source.revision or constants.DEFAULT_REVISION,
        "commit": commit,
        "endpoint": constants.ENDPOINT,
        "files": _checksums(directory, files),
    }


def _download(source: HubSource, files: tuple[str, ...]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(source.repo_id, revision=source.revision, allow_patterns=list(files)))
    except RevisionNotFoundError:
        raise ValueError(f"{source}: the repository has no revision {source.revision!r}") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{source}: no such model repository (or it is private/gated: set HF_TOKEN)") from None
    except (LocalEntryNotFoundError, EntryNotFoundError) as err:
        raise OSError(f"{source}: not downloadable and not in the Hugging Face cache ({err})") from None


def _checksums(directory: Path, names: tuple[str, ...]) -> dict[str, str]:
    sums = {}
    for name in names:
        path = directory / name
        if path.is_file():
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            sums[name] = digest.hexdigest()
    return sums
