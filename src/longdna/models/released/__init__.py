"""Released checkpoints in, our models out: the public HyenaDNA and Caduceus layouts.

>>> from longdna.models.released import load_released, export_released
>>> model = load_released("hyenadna-small-32k-seqlen")        # a checkpoint directory (config.json + weights)
>>> export_released(model, "out/", "caduceus", training_length=1024)   # for the public code (Caduceus models)

:func:`read_released` recognises the layout from ``config.json`` (HyenaDNA's original Lightning or ``-hf``
layout, Caduceus' HF layout), maps the checkpoint's token ids onto ours by name (:mod:`.tokens`), converts the
weights (:mod:`.hyenadna`, :mod:`.caduceus`) and returns our model, which computes the public modelling code's
forward pass as the checkpoint's config sets it up. :func:`export_released` writes one of our models in a
released layout.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from longdna.models.base import DNALanguageModel
from longdna.models.caduceus import Caduceus
from longdna.models.hyenadna import HyenaDNA
from longdna.models.released import caduceus, hyenadna
from longdna.models.released.tokens import checkpoint_vocabulary, token_map

#: weight files of the released layouts, in order of preference when a directory holds several
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "weights.ckpt")
#: the files a released checkpoint directory needs (a download fetches these and nothing else)
CHECKPOINT_FILES = ("config.json", "tokenizer_config.json", *WEIGHT_FILES)
FORMATS = ("hyenadna", "caduceus")


@dataclass
class Released:
    """A loaded release: our model (eval mode) and what was learned about the checkpoint."""

    model: DNALanguageModel
    layout: str  # hyenadna-lightning, hyenadna-hf or caduceus-hf
    weights_file: str
    training_length: int | None  # the length it was pretrained at, when the checkpoint says
    token_ids: list[int]  # the checkpoint's id of each of our tokens (index: our id)


def read_released(path: str | Path) -> Released:
    """Load a released checkpoint directory; errors name the file and the tensor or key at fault."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing; a released checkpoint directory holds config.json")
    raw = json.loads(config_file.read_text())
    tokenizer_file = path / "tokenizer_config.json"
    tokenizer = json.loads(tokenizer_file.read_text()) if tokenizer_file.is_file() else None
    ids = token_map(checkpoint_vocabulary(tokenizer, str(tokenizer_file)), str(tokenizer_file))
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{path}: no weights ({', '.join(WEIGHT_FILES)})")
    state = read_state_dict(weights)
    where = str(weights)
    model: DNALanguageModel
    if caduceus.is_caduceus(raw):
        config = caduceus.released_config(raw, str(config_file))
        model = Caduceus(config)
        model.load_state_dict(caduceus.convert_state_dict(state, raw, config, ids, where), strict=True)
        layout, length = caduceus.LAYOUT, caduceus.training_length(tokenizer)
    elif hyenadna.is_hyenadna(raw):
        config = hyenadna.released_config(raw, str(config_file))
        model = HyenaDNA(config)
        model.load_state_dict(
            hyenadna.convert_state_dict(state, config, ids, raw.get("train_freq", True), where), strict=True
        )
        layout, length = hyenadna.layout(raw), hyenadna.training_length(config)
    else:
        raise ValueError(
            f"{config_file}: neither a HyenaDNA (layer / model_type hyenadna) nor a Caduceus"
            " (model_type caduceus) config"
        )
    return Released(model.eval(), layout, weights.name, length, ids)


def load_released(path: str | Path) -> DNALanguageModel:
    """Our model from a released checkpoint directory (eval mode); see :func:`read_released`."""
    return read_released(path).model


def export_released(model: DNALanguageModel, out_dir: str | Path, format: str, training_length: int) -> list[str]:
    """Write ``model`` in the released ``format`` (``hyenadna``: config.json + weights.ckpt of the original code;
    ``caduceus``: config.json + model.safetensors + tokenizer_config.json of ``CaduceusForMaskedLM``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {FORMATS}, not {format!r}")
    if format == "hyenadna":
        if not isinstance(model, HyenaDNA):
            raise ValueError(f"--format hyenadna needs a HyenaDNA model, not {model.arch}")
        return hyenadna.export(model, out_dir)
    if not isinstance(model, Caduceus):
        raise ValueError(f"--format caduceus needs a Caduceus model, not {model.arch}")
    return caduceus.export(model, out_dir, training_length)


# -- reading weight files -------------------------------------------------------------------------------------------
class _Inert:
    """Stands in for an object a pickled checkpoint names besides its tensors (hyper-parameters, callbacks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def read_state_dict(file: Path) -> dict[str, Tensor]:
    """Tensors of a weight file. Pickles (``.bin``, Lightning ``.ckpt``) are read by torch's weights-only
    unpickler, with any other class they name replaced by an inert stand-in: no code in them runs."""
    if file.suffix == ".safetensors":
        return load_file(file)
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        loaded = None
        for stand_in in (_Inert, dict):  # objects, then dict subclasses (e.g. Lightning's AttributeDict)
            try:
                with torch.serialization.safe_globals([(stand_in, name) for name in foreign]):
                    loaded = torch.load(file, map_location="cpu", weights_only=True)
                break
            except pickle.UnpicklingError:
                continue
        if loaded is None:
            raise ValueError(f"{file}: cannot read its tensors without running code it names ({foreign})") from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a state dict of tensors (or a checkpoint with a 'state_dict')")
    return state


__all__ = [
    "CHECKPOINT_FILES",
    "FORMATS",
    "WEIGHT_FILES",
    "Released",
    "export_released",
    "load_released",
    "read_released",
    "read_state_dict",
]
