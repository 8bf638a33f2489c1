"""The model zoo behind one interface.

>>> from longdna.models import build_model
>>> model = build_model("hyenadna", preset="tiny-1k")
>>> logits = model(input_ids)            # (B, L, 12)
>>> hidden = model.embed(input_ids)      # (B, L, hidden_size)

Checkpoints are a directory with ``model.safetensors`` and ``config.json`` (see ``docs/formats.md``):
:func:`save_pretrained` writes one, :func:`load_pretrained` reads it back.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longdna import __version__
from longdna.io import atomic_path, read_json, sort_safetensors_metadata, write_json
from longdna.models.catalog import ARCHITECTURES, presets

if TYPE_CHECKING:
    import torch

    from longdna.models.base import DNALanguageModel, pool
    from longdna.models.heads import SequenceClassifier

CHECKPOINT_FORMAT = 1

#: served from their torch modules on first use (PEP 562): importing the package, and its torch-free tables
#: (:mod:`longdna.models.catalog`), does not import torch
_TORCH_NAMES = {
    "DNALanguageModel": "longdna.models.base",
    "pool": "longdna.models.base",
    "SequenceClassifier": "longdna.models.heads",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def model_class(arch: str) -> type[DNALanguageModel]:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    module, name = ARCHITECTURES[arch].split(":")
    return getattr(importlib.import_module(module), name)


def build_config(arch: str, preset: str | None = None, **overrides: Any) -> Any:
    """The architecture's config dataclass from an optional preset plus keyword overrides."""
    values: dict[str, Any] = {}
    if preset is not None:
        known = presets(arch)
        if preset not in known:
            raise ValueError(f"{arch}: unknown preset {preset!r}; choose one of {sorted(known)}")
        values.update(known[preset])
    values.update(overrides)
    from longdna.settings import config_from_dict  # here: longdna.settings imports this package's catalog

    return config_from_dict(model_class(arch).config_class, values, where=f"{arch} config")


def build_model(name: str, preset: str | None = None, **config: Any) -> DNALanguageModel:
    """Build architecture ``name`` (``hyenadna``, ``caduceus``, ``mamba``, ``hawk``, ``transformer``)."""
    return model_class(name)(build_config(name, preset, **config))


def save_pretrained(model: DNALanguageModel, directory: str | Path, **metadata: Any) -> None:
    """Write ``model.safetensors``, ``config.json`` and ``tokenizer.json`` into ``directory`` atomically."""
    from safetensors.torch import save_model

    from longdna import vocab

    directory = Path(directory)
    with atomic_path(directory / "model.safetensors", suffix=".safetensors") as tmp:
        save_model(model, str(tmp), metadata={"arch": model.arch, "format": str(CHECKPOINT_FORMAT)})
        sort_safetensors_metadata(tmp)  # byte-identical files for identical models
    write_json(
        directory / "config.json",
        {
            "format": CHECKPOINT_FORMAT,
            "arch": model.arch,
            "config": dataclasses.asdict(model.config),
            "num_parameters": model.num_parameters(),
            "longdna_version": __version__,
            **metadata,
        },
    )
    write_json(directory / "tokenizer.json", vocab.tokenizer_description())


def read_checkpoint_config(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """(architecture, constructor config) recorded in ``directory/config.json``."""
    meta = read_json(Path(directory) / "config.json")
    init_fields = {f.name for f in dataclasses.fields(model_class(meta["arch"]).config_class) if f.init}
    return meta["arch"], {k: v for k, v in meta["config"].items() if k in init_fields}


def load_pretrained(
    directory: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
) -> DNALanguageModel:
    """Rebuild the model described by ``directory/config.json`` and load its weights (in eval mode).

    ``overrides`` change settings that do not affect the weights' shapes, e.g. dropout for fine-tuning.
    """
    from safetensors.torch import load_model

    arch, config = read_checkpoint_config(directory)
    model = build_model(arch, **{**config, **overrides})
    load_model(model, str(Path(directory) / "model.safetensors"), strict=True, device=str(map_location))
    return model.eval()


__all__ = [
    "ARCHITECTURES",
    "DNALanguageModel",
    "SequenceClassifier",
    "build_config",
    "build_model",
    "load_pretrained",
    "model_class",
    "pool",
    "presets",
    "read_checkpoint_config",
    "save_pretrained",
]
