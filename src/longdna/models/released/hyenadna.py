"""Released HyenaDNA checkpoints (``LongSafari/hyenadna-*``): read both published layouts, write the original one.

* **Lightning** (``LongSafari/hyenadna-{tiny-1k,...,large-1m}-seqlen``): ``config.json`` holds the
  ``HyenaDNAModel`` arguments with a nested ``layer`` dict; ``weights.ckpt`` a Lightning checkpoint whose
  ``state_dict`` keys start with ``model.`` and, for runs trained with ``checkpoint_mixer``/``checkpoint_mlp``,
  carry a ``.layer`` after ``mixer``/``mlp``.
* **-hf** (``...-seqlen-hf``): a transformers ``HyenaConfig`` (``max_seq_len``, ``hyena_order``, ...) and
  ``model.safetensors`` (or ``pytorch_model.bin``) with keys under ``hyena.``, the filter's shared ``freq`` stored
  once and an untied ``lm_head.weight`` that equals the embedding.

Both store each layer's positional table (``pos_emb.z``, ``pos_emb.t``); they are checked against the closed form
of :func:`~longdna.models.hyenadna.positional_features` and dropped. ``max_seq_len`` (``l_max``) is the training
length plus 2 in every released config (1026, 16386, 32770, 160002, 450002, 1000002).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from longdna import vocab
from longdna.io import atomic_path, write_json
from longdna.models.base import padded_vocab_size
from longdna.models.hyenadna import HyenaDNA, HyenaDNAConfig, positional_features
from longdna.models.released.tokens import map_embedding_rows
from longdna.settings import config_from_dict

LIGHTNING, HF = "hyenadna-lightning", "hyenadna-hf"
#: the extra positions of every released l_max over the training length (the tokenizer's added tokens)
L_MAX_MARGIN = 2

_PREFIX = re.compile(r"^.*?(?=backbone\.)")
_CHECKPOINT_WRAPPER = re.compile(r"\.(mixer|mlp)\.layer\.")


def is_hyenadna(raw: dict[str, Any]) -> bool:
    return "layer" in raw or raw.get("model_type") == "hyenadna"


def layout(raw: dict[str, Any]) -> str:
    return LIGHTNING if "layer" in raw else HF


def released_config(raw: dict[str, Any], where: str) -> HyenaDNAConfig:
    """Our config from a released ``config.json`` of either layout."""
    if raw.get("vocab_size", vocab.VOCAB_SIZE) != vocab.VOCAB_SIZE:
        raise ValueError(f"{where}: vocab_size {raw['vocab_size']}, expected {vocab.VOCAB_SIZE} (single nucleotides)")
    if layout(raw) == LIGHTNING:
        layer = raw["layer"]
        if raw.get("attn_layer_idx"):
            raise ValueError(f"{where}: attention layers ({raw['attn_layer_idx']}) are not part of HyenaDNA here")
        values = dict(
            d_model=raw["d_model"],
            n_layer=raw["n_layer"],
            d_inner=raw.get("d_inner"),
            l_max=layer["l_max"],
            order=layer.get("order", 2),
            filter_order=layer.get("filter_order", 64),
            emb_dim=layer.get("emb_dim", 3),
            short_filter_order=layer.get("local_order", layer.get("short_filter_order", 3)),
            num_inner_mlps=layer.get("num_inner_mlps", 2),
            activation_freq=layer.get("w", 1),
            modulate=layer.get("modulate", True),
            modulation_shift=layer.get("shift", 0.05),
            fast_decay_pct=layer.get("fast_decay_pct", 0.3),
            slow_decay_pct=layer.get("slow_decay_pct", 1.5),
            decay_target=layer.get("target", 1e-2),
            embed_dropout=raw.get("embed_dropout", 0.1),
            resid_dropout=raw.get("resid_dropout", 0.0),
            layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5),
            residual_in_fp32=raw.get("residual_in_fp32", False),
            pad_vocab_size_multiple=raw.get("pad_vocab_size_multiple", 1),
        )
    else:  # the transformers port: its modulation and norms use the library defaults (ours)
        values = dict(
            d_model=raw["d_model"],
            n_layer=raw["n_layer"],
            d_inner=raw.get("d_inner"),
            l_max=raw["max_seq_len"],
            order=raw.get("hyena_order", 2),
            filter_order=raw.get("filter_order", 64),
            emb_dim=raw.get("emb_dim", 3),
            short_filter_order=raw.get("short_filter_order", 3),
            num_inner_mlps=raw.get("num_inner_mlps", 2),
            activation_freq=raw.get("activation_freq", 1),
            embed_dropout=raw.get("embed_dropout", 0.1),
            hyena_dropout=raw.get("hyena_dropout", 0.0),
            layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5),
            initializer_range=raw.get("initializer_range", 0.02),
            pad_vocab_size_multiple=raw.get("pad_vocab_size_multiple", 8),
        )
    return config_from_dict(HyenaDNAConfig, values, where=f"{where} (HyenaDNA config)")


def training_length(config: HyenaDNAConfig) -> int:
    return config.l_max - L_MAX_MARGIN


def convert_state_dict(
    raw_state: dict[str, Tensor], config: HyenaDNAConfig, ids: list[int], train_freq: bool, where: str
) -> dict[str, Tensor]:
    """A released state dict (either layout) as :class:`HyenaDNA`'s; ``ids[our_id]`` is the checkpoint's id."""
    expected = HyenaDNA(config).state_dict()
    state: dict[str, Tensor] = {}
    lm_head = None
    for key, value in raw_state.items():
        if key == "lm_head.weight" or key.endswith(".lm_head.weight"):
            lm_head = value
            continue
        if "backbone." not in key:
            continue  # classification heads; our LM head is tied to the embedding
        key = _CHECKPOINT_WRAPPER.sub(r".\1.", _PREFIX.sub("", key, count=1))
        if key.endswith(("pos_emb.z", "pos_emb.t")):
            _check_positional_table(key, value, config, where)
            continue
        if key not in expected:
            raise KeyError(f"{where}: checkpoint tensor {key!r} has no counterpart in HyenaDNA")
        if tuple(value.shape) != tuple(expected[key].shape) and key != "backbone.embeddings.word_embeddings.weight":
            raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")
        state[key] = value.float()
    _fill_shared_frequencies(state, expected, config, train_freq, where)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise KeyError(f"{where}: checkpoint lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    embedding_key = "backbone.embeddings.word_embeddings.weight"
    table = state[embedding_key]
    if lm_head is not None and not torch.equal(lm_head.float(), table[: lm_head.shape[0]]):
        raise ValueError(
            f"{where}: lm_head.weight differs from the token embedding; HyenaDNA's LM head is tied to"
            " it, and a checkpoint with another head cannot be reproduced here"
        )
    state[embedding_key] = map_embedding_rows(table, ids, expected[embedding_key].shape[0], where)
    return state


def _fill_shared_frequencies(
    state: dict[str, Tensor], expected: dict[str, Tensor], config: HyenaDNAConfig, train_freq: bool, where: str
) -> None:
    """One Sin module serves every layer of a filter MLP, so a checkpoint may store its frequency once (-hf, via
    safetensors) or not at all (``train_freq: false``: the constant ``activation_freq``)."""
    for key in expected:
        if not key.endswith(".freq") or key in state:
            continue
        prefix = key.rsplit(".implicit_filter.", 1)[0]
        stored = [v for k, v in state.items() if k.startswith(prefix + ".") and k.endswith(".freq")]
        if stored:
            state[key] = stored[0]
        elif not train_freq:
            state[key] = torch.full(tuple(expected[key].shape), float(config.activation_freq))
        else:
            raise KeyError(f"{where}: checkpoint lacks {key}")
    for key in [k for k in state if k.endswith(".freq")]:
        prefix = key.rsplit(".implicit_filter.", 1)[0]
        first = next(v for k, v in state.items() if k.startswith(prefix + ".") and k.endswith(".freq"))
        if not torch.equal(state[key], first):
            raise ValueError(f"{where}: {key} differs from the filter's other Sin frequencies, which are one tensor")


def _check_positional_table(key: str, value: Tensor, config: HyenaDNAConfig, where: str) -> None:
    value = value.reshape(value.shape[-2], value.shape[-1]).float()
    z, t = positional_features(value.shape[0], config.l_max, config.emb_dim, torch.device("cpu"))
    reference = z if key.endswith(".z") else t
    if value.shape != reference.shape or not torch.allclose(value, reference, atol=1e-5, rtol=1e-4):
        raise ValueError(
            f"{where}: {key} differs from the closed-form positional table (trained positional embeddings are"
            " not supported)"
        )


# -- export -------------------------------------------------------------------------------------------------------
def lightning_config(config: HyenaDNAConfig) -> dict[str, Any]:
    """``config.json`` of the original layout (``HyenaDNAModel(**config)`` in the public code)."""
    unsupported = {
        "short_filter_order": (config.short_filter_order, 3),  # the public operators build a 3-tap short filter
        "modulation_shift": (config.modulation_shift, 0.05),
        "modulate": (config.modulate, True),
    }
    for name, (value, public) in unsupported.items():
        if value != public:
            raise ValueError(f"hyenadna export: {name}={value!r}, but the released code only computes {public!r}")
    layer = {
        "_name_": "hyena",
        "emb_dim": config.emb_dim,
        "filter_order": config.filter_order,
        "local_order": 3,
        "l_max": config.l_max,
        "modulate": True,
        "w": config.activation_freq,
        "lr": 6e-4,
        "wd": 0.0,
        "lr_pos_emb": 0.0,
        "num_inner_mlps": config.num_inner_mlps,
    }
    if config.order != 2:
        layer["order"] = config.order
    for ours, theirs, default in (
        ("fast_decay_pct", "fast_decay_pct", 0.3),
        ("slow_decay_pct", "slow_decay_pct", 1.5),
        ("decay_target", "target", 1e-2),
    ):
        if getattr(config, ours) != default:
            layer[theirs] = getattr(config, ours)
    return {
        "d_model": config.d_model,
        "n_layer": config.n_layer,
        "d_inner": config.d_inner,
        "vocab_size": vocab.VOCAB_SIZE,
        "resid_dropout": config.resid_dropout,
        "embed_dropout": config.embed_dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "fused_mlp": False,
        "fused_dropout_add_ln": False,
        "checkpoint_mixer": False,
        "checkpoint_mlp": False,
        "residual_in_fp32": config.residual_in_fp32,
        "pad_vocab_size_multiple": config.pad_vocab_size_multiple,
        "return_hidden_state": True,
        "layer": layer,
    }


def lightning_state_dict(model: HyenaDNA) -> dict[str, Tensor]:
    """``weights.ckpt``'s ``state_dict``: every tensor the public ``HyenaDNAModel`` has (including the positional
    tables it stores and each Sin frequency under all its names) under ``model.``, and the tied LM head."""
    config = model.config
    z, t = positional_features(config.l_max, config.l_max, config.emb_dim, torch.device("cpu"))
    state: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        state[f"model.{key}"] = value.detach().cpu().clone()
        if key.endswith("filter_fn.bias"):
            prefix = key.removesuffix("bias")
            state[f"model.{prefix}pos_emb.z"] = z[None].clone()
            state[f"model.{prefix}pos_emb.t"] = t[None].clone()
    state["model.lm_head.weight"] = state["model.backbone.embeddings.word_embeddings.weight"]
    return state


def export(model: HyenaDNA, out_dir: Path) -> list[str]:
    """Write ``config.json`` and ``weights.ckpt`` in the original layout; returns the file names."""
    if model.embedding.weight.shape[0] != padded_vocab_size(vocab.VOCAB_SIZE, model.config.pad_vocab_size_multiple):
        raise ValueError("hyenadna export: the embedding does not have the padded vocabulary's rows")
    config = lightning_config(model.config)
    with atomic_path(out_dir / "weights.ckpt", suffix=".ckpt") as tmp:
        torch.save({"state_dict": lightning_state_dict(model)}, tmp)
    write_json(out_dir / "config.json", config)
    return ["config.json", "weights.ckpt"]
