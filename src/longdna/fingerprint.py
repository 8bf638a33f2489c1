"""Run fingerprints: one hash of everything that determines a training result.

A pretraining result is a function of

* its settings (the resolved ``pretrain`` section, less :data:`EXECUTION_SETTINGS`: how it runs, not what it
  computes, like the GPU and node counts, which are resources and no settings at all),
* the model's configuration (the architecture's config dataclass, preset and defaults resolved),
* the data (each sequence's length and sha256 from the shard manifest, and the territory of each split),
* the code (the package version and a hash of the package's source files).

A fine-tuning result also depends on its seed, the benchmark's files and the backbone (the backbone's own
fingerprint and the sha256 of its weights). The fingerprint is the sha256 of the hashes of these parts; the
part hashes are kept beside it (:meth:`Fingerprint.to_dict`), so that a mismatch can say what changed. It is
stored in every checkpoint and stage output (``docs/formats.md``); pretraining resumes a checkpoint only when
its fingerprint is the current one.

Torch-free, so that tools and the workflow can read and compare fingerprints without loading a model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longdna import __version__
from longdna.io import file_digest, read_json

#: settings that choose how a run executes, never what it computes; left out of the fingerprint
EXECUTION_SETTINGS = frozenset({"threads", "num_workers", "gpu_memory_gb"})
#: the package whose source is hashed into every fingerprint
PACKAGE_ROOT = Path(__file__).resolve().parent
#: hex digits of a fingerprint in names (``checkpoints.stale-<short>-<time>``) and messages
SHORT = 12


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} cannot be part of a fingerprint")


def value_digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


@functools.cache
def source_digest() -> str:
    """sha256 over the package's ``.py`` files (relative path and content, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_identity() -> dict[str, str]:
    return {"version": __version__, "source": source_digest()}


def training_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without :data:`EXECUTION_SETTINGS`."""
    return {key: value for key, value in settings.items() if key not in EXECUTION_SETTINGS}


@dataclass(frozen=True)
class Fingerprint:
    """The hashes of a run's parts (part name -> sha256 of its canonical JSON) and their combined digest."""

    parts: Mapping[str, str]

    @classmethod
    def of(cls, **parts: Any) -> Fingerprint:
        return cls({name: value_digest(value) for name, value in parts.items()})

    @property
    def digest(self) -> str:
        return value_digest(dict(self.parts))

    @property
    def short(self) -> str:
        return self.digest[:SHORT]

    def to_dict(self) -> dict[str, Any]:
        """What outputs and checkpoints store: ``{"sha256": digest, "parts": {name: sha256}}``."""
        return {"sha256": self.digest, "parts": dict(self.parts)}

    def changed_parts(self, stored: Mapping[str, Any] | None) -> list[str]:
        """Names of the parts that differ from a stored :meth:`to_dict` (every part when none is stored)."""
        previous = (stored or {}).get("parts") or {}
        return sorted(name for name in {*self.parts, *previous} if self.parts.get(name) != previous.get(name))


def pretrain_fingerprint(
    settings: Mapping[str, Any], arch: str, model_config: Mapping[str, Any], data: Any
) -> Fingerprint:
    """Fingerprint of a pretraining run: ``settings`` (the resolved pretrain settings), the model's resolved
    config, ``data`` (:meth:`longdna.data.tokens.shards.GenomeShards.identity`) and the code."""
    return Fingerprint.of(
        settings=training_settings(settings),
        model={"arch": arch, "config": dict(model_config)},
        data=data,
        code=code_identity(),
    )


def finetune_fingerprint(
    benchmark_dir: str | os.PathLike,
    settings: Mapping[str, Any],
    seed: int,
    arch: str,
    model_config: Mapping[str, Any],
    backbone_dir: str | os.PathLike | None,
) -> Fingerprint:
    """Fingerprint of a fine-tuning run: settings, seed, the backbone's resolved config, the benchmark's files
    (every file of its directory: ``data.parquet``, ``benchmark.json``), a pretrained backbone's fingerprint
    and weights, and the code."""
    benchmark_dir = Path(benchmark_dir)
    backbone = None
    if backbone_dir is not None:
        backbone_dir = Path(backbone_dir)
        stored = read_json(backbone_dir / "config.json").get("fingerprint") or {}  # longdna.models.save_pretrained
        backbone = {"fingerprint": stored.get("sha256"), "weights": file_digest(backbone_dir / "model.safetensors")}
    return Fingerprint.of(
        settings=training_settings(settings),
        seed=int(seed),
        model={"arch": arch, "config": dict(model_config)},
        backbone=backbone,
        data={
            path.name: file_digest(path)
            for path in sorted(benchmark_dir.iterdir())
            if path.is_file() and not path.name.startswith(".")
        },  # hidden: temporaries of a writer
        code=code_identity(),
    )
