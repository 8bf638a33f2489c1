"""Released checkpoints at small random sizes, written in the published file layouts (for tests).

Each ``*_checkpoint`` function builds a reference model (:mod:`released_reference`) with random weights and
returns ``(files, model)``: the repository's files (name -> bytes, as uploaded: ``config.json``, the weights,
``tokenizer_config.json``) and the reference that computes the public forward pass for them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import released_reference as ref
import torch
from safetensors.torch import save as save_safetensors

#: the uploaded tokenizers' special tokens as their tokenizer_config.json lists them ([RESERVED] unlisted)
RELEASED_SPECIALS = {0: "[CLS]", 1: "[SEP]", 2: "[BOS]", 3: "[MASK]", 4: "[PAD]", 6: "[UNK]"}
#: the Caduceus repository's later tokenizer: ten special tokens, the characters from 10
LATER_CADUCEUS_SPECIALS = {
    0: "[CLS]",
    1: "[EOS]",
    2: "[SEP]",
    3: "[REF]",
    4: "[MUT]",
    5: "[BOS]",
    6: "[MASK]",
    7: "[PAD]",
    8: "[RESERVED]",
    9: "[UNK]",
}


def tokenizer_config(specials: dict[int, str], model_max_length: int) -> dict[str, Any]:
    return {
        "added_tokens_decoder": {
            str(i): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for i, token in specials.items()
        },
        "model_max_length": model_max_length,
        "padding_side": "left",
        "tokenizer_class": "CaduceusTokenizer",
    }


def _json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2).encode()


def _torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _stored_once(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What safetensors keeps of a state dict with shared tensors: each storage under its first name."""
    seen, kept = set(), {}
    for key, value in state.items():
        if value.data_ptr() not in seen:
            seen.add(value.data_ptr())
            kept[key] = value.clone().contiguous()
    return kept


# -- HyenaDNA -------------------------------------------------------------------------------------------------------
def hyenadna_reference(
    seed: int, d_model: int = 16, n_layer: int = 2, max_seq_len: int = 66
) -> ref.HyenaDNAForCausalLM:
    cfg = dict(
        d_model=d_model,
        n_layer=n_layer,
        d_inner=2 * d_model,
        max_seq_len=max_seq_len,
        emb_dim=5,
        filter_order=16,
        short_filter_order=3,
        num_inner_mlps=2,
        activation_freq=10,
        padded_vocab=16,
    )
    model = ref.HyenaDNAForCausalLM(cfg)
    model.cfg = cfg
    return ref.randomize_(model, torch.Generator().manual_seed(seed))


def hyenadna_lightning_checkpoint(model: ref.HyenaDNAForCausalLM, checkpointing: bool = False) -> dict[str, bytes]:
    """``config.json`` (HyenaDNAModel's arguments) + ``weights.ckpt`` (Lightning: ``model.`` prefix, every tensor,
    ``.layer`` after mixer/mlp when trained with checkpointing, and non-tensor entries beside the state dict)."""
    cfg = model.cfg
    config = {
        "d_model": cfg["d_model"],
        "n_layer": cfg["n_layer"],
        "d_inner": cfg["d_inner"],
        "vocab_size": 12,
        "resid_dropout": 0.0,
        "embed_dropout": 0.1,
        "fused_mlp": False,
        "fused_dropout_add_ln": True,
        "checkpoint_mixer": checkpointing,
        "checkpoint_mlp": checkpointing,
        "residual_in_fp32": True,
        "pad_vocab_size_multiple": 8,
        "return_hidden_state": True,
        "layer": {
            "_name_": "hyena",
            "emb_dim": cfg["emb_dim"],
            "filter_order": cfg["filter_order"],
            "local_order": 3,
            "l_max": cfg["max_seq_len"],
            "modulate": True,
            "w": cfg["activation_freq"],
            "lr": 6e-4,
            "wd": 0.0,
            "lr_pos_emb": 0.0,
            "num_inner_mlps": cfg["num_inner_mlps"],
        },
    }
    state = {}
    for key, value in model.state_dict().items():
        key = "model." + key.removeprefix("hyena.")
        if checkpointing:
            key = key.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer.")
        state[key] = value
    checkpoint = {
        "state_dict": state,
        "epoch": 3,
        "global_step": 1000,
        "pytorch-lightning_version": "1.8.6",
        "hyper_parameters": {"model": {"d_model": cfg["d_model"]}},
    }
    return {"config.json": _json(config), "weights.ckpt": _torch_bytes(checkpoint)}


def hyenadna_hf_checkpoint(model: ref.HyenaDNAForCausalLM, weights: str = "model.safetensors") -> dict[str, bytes]:
    """The ``-hf`` port: ``HyenaConfig`` + ``model.safetensors`` (shared tensors once: one Sin frequency per
    filter, the untied ``lm_head`` a copy of the embedding) or ``pytorch_model.bin`` (every name)."""
    cfg = model.cfg
    config = {
        "architectures": ["HyenaDNAForCausalLM"],
        "model_type": "hyenadna",
        "activation_freq": cfg["activation_freq"],
        "d_inner": cfg["d_inner"],
        "d_model": cfg["d_model"],
        "emb_dim": cfg["emb_dim"],
        "embed_dropout": 0.1,
        "filter_order": cfg["filter_order"],
        "hyena_dropout": 0.0,
        "hyena_filter_dropout": 0.0,
        "hyena_order": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5,
        "max_seq_len": cfg["max_seq_len"],
        "n_layer": cfg["n_layer"],
        "num_inner_mlps": cfg["num_inner_mlps"],
        "pad_token_id": 4,
        "pad_vocab_size_multiple": 8,
        "short_filter_order": cfg["short_filter_order"],
        "tie_word_embeddings": False,
        "train_freq": True,
        "use_bias": True,
        "vocab_size": 12,
    }
    state = dict(model.state_dict())
    state["lm_head.weight"] = state["lm_head.weight"].clone()  # untied in the port, equal values
    if weights == "model.safetensors":
        blob = save_safetensors(_stored_once(state), metadata={"format": "pt"})
    else:
        blob = _torch_bytes({k: v.clone() for k, v in state.items()})
    return {
        "config.json": _json(config),
        weights: blob,
        "tokenizer_config.json": _json(tokenizer_config(RELEASED_SPECIALS, cfg["max_seq_len"] - 2)),
    }


# -- Caduceus -------------------------------------------------------------------------------------------------------
def caduceus_config(
    rcps: bool, fused: bool = True, n_layer: int = 4, d_model: int = 8, complement: list[int] | None = None
) -> dict[str, Any]:
    """A released Caduceus config.json (as uploaded: vocab padded to 16, complement map over every id)."""
    complement = complement or [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]
    return {
        "architectures": ["CaduceusForMaskedLM"],
        "model_type": "caduceus",
        "d_model": d_model,
        "n_layer": n_layer,
        "vocab_size": 16,
        "rms_norm": True,
        "residual_in_fp32": False,
        "fused_add_norm": fused,
        "pad_vocab_size_multiple": 8,
        "norm_epsilon": 1e-5,
        "ssm_cfg": {
            "d_state": 4,
            "d_conv": 4,
            "expand": 2,
            "dt_rank": "auto",
            "dt_min": 0.001,
            "dt_max": 0.1,
            "dt_init": "random",
            "dt_scale": 1.0,
            "dt_init_floor": 1e-4,
            "conv_bias": True,
            "bias": False,
            "use_fast_path": True,
        },
        "initializer_cfg": {"initializer_range": 0.02, "n_residuals_per_layer": 1, "rescale_prenorm_residual": True},
        "bidirectional": True,
        "bidirectional_strategy": "add",
        "bidirectional_weight_tie": True,
        "rcps": rcps,
        "complement_map": {str(i): c for i, c in enumerate(complement)},
    }


def caduceus_reference(config: dict[str, Any], seed: int) -> ref.CaduceusForMaskedLM:
    model = ref.CaduceusForMaskedLM(config)
    model.config = config
    return ref.randomize_(model, torch.Generator().manual_seed(seed))


def caduceus_checkpoint(
    model: ref.CaduceusForMaskedLM,
    weights: str = "model.safetensors",
    specials: dict[int, str] = RELEASED_SPECIALS,
    model_max_length: int = 1024,
) -> dict[str, bytes]:
    """``config.json`` + ``model.safetensors`` (tied tensors once, as transformers saves them) or
    ``pytorch_model.bin`` (every name) + ``tokenizer_config.json``."""
    state = dict(model.state_dict())
    if weights == "model.safetensors":
        blob = save_safetensors(_stored_once(state), metadata={"format": "pt"})
    else:
        blob = _torch_bytes({k: v.clone() for k, v in state.items()})
    return {
        "config.json": _json(model.config),
        weights: blob,
        "tokenizer_config.json": _json(tokenizer_config(specials, model_max_length)),
    }
