"""Released Caduceus checkpoints (``kuleshov-group/caduceus-{ph,ps}_seqlen-*``): read and write the HF layout.

``config.json`` is a ``CaduceusConfig`` (``d_model``, ``n_layer``, ``ssm_cfg``, ``rcps``, ``complement_map``, ...);
``model.safetensors`` holds ``CaduceusForMaskedLM``'s tensors: ``caduceus.backbone.embeddings.word_embeddings``
(``.embedding.weight`` and the ``complement_map`` buffer for PS), ``caduceus.backbone.layers.{i}.norm.weight`` and
``.mixer[.submodule].mamba_{fwd,rev}.*``, ``caduceus.backbone.norm_f.weight`` and the tied ``lm_head``. The
reverse mixer's in/out projections are the forward one's (``bidirectional_weight_tie``); a file may store such a
shared tensor under either name or both.

**Strand handling of the fused add-and-norm path.** With ``fused_add_norm`` (every released config) the public
Caduceus-PS block calls the fused add + RMSNorm kernel on the state's *second* channel half as the "forward" strand
and on the flipped *first* half as the "reverse" one, and concatenates the results in that order: each block swaps
the two halves of the residual stream (the final norm does not). Writing S for that swap and rho for the strand
flip (reverse length and channels), the fused model computes our :class:`~longdna.models.caduceus.Caduceus`'s
function when the depth is even and each even-indexed layer (0, 2, ...) of ours is rho o f o rho of the
checkpoint's layer f (the state entering fused layer l is then S^(l+1) of ours). rho o f o rho of a BiMamba block
is the block whose forward and reverse mixers are exchanged and whose model-side channels are reversed (in_proj
columns, out_proj rows, the norm weight); :func:`conjugate_strand_frame` applies that map (its own
inverse) when loading and exporting. An odd depth leaves the halves swapped before the final norm, which no
weights of ours can express: such fused checkpoints are refused (their unfused form is exported instead).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from longdna import vocab
from longdna.io import atomic_path, write_json
from longdna.models.caduceus import Caduceus, CaduceusConfig
from longdna.models.released.tokens import check_complement, map_embedding_rows, tokenizer_config
from longdna.settings import config_from_dict

LAYOUT = "caduceus-hf"
#: where the public modelling code lives: an exported config points transformers' remote code at it
MODELING_REPO = "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
#: ssm_cfg keys of the released configs that only concern initialisation or the CUDA kernels
_IGNORED_SSM_KEYS = {"dt_init", "dt_scale", "use_fast_path"}
_SSM_KEYS = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max", "dt_init_floor", "conv_bias", "bias"}


def is_caduceus(raw: dict[str, Any]) -> bool:
    return raw.get("model_type") == "caduceus"


def released_config(raw: dict[str, Any], where: str) -> CaduceusConfig:
    """Our config from a released ``config.json``; refuses what our Caduceus cannot compute exactly."""
    ssm = dict(raw.get("ssm_cfg") or {})
    if ssm.get("layer", "Mamba1") != "Mamba1":
        raise ValueError(f"{where}: ssm_cfg.layer {ssm['layer']!r}: only Mamba-1 mixers are supported")
    unknown = sorted(set(ssm) - _SSM_KEYS - _IGNORED_SSM_KEYS - {"layer"})
    if unknown:
        raise ValueError(f"{where}: unsupported ssm_cfg keys {unknown}")
    if not raw.get("rms_norm", True):
        raise ValueError(f"{where}: rms_norm false (LayerNorm blocks) is not supported; Caduceus here uses RMSNorm")
    if fused_strand_swap(raw) and raw["n_layer"] % 2:
        raise ValueError(
            f"{where}: a fused-add-norm Caduceus-PS with an odd n_layer ({raw['n_layer']}) ends with its"
            " strand halves swapped, which this implementation cannot express"
        )
    if fused_strand_swap(raw) and not raw.get("bidirectional", True):
        raise ValueError(f"{where}: a fused-add-norm Caduceus-PS without the reverse mixer is not supported")
    values = dict(
        d_model=raw["d_model"],
        n_layer=raw["n_layer"],
        **{key: ssm[key] for key in _SSM_KEYS if key in ssm},
        norm_epsilon=raw.get("norm_epsilon", 1e-5),
        residual_in_fp32=raw.get("residual_in_fp32", True),
        pad_vocab_size_multiple=raw.get("pad_vocab_size_multiple", 8),
        initializer_range=(raw.get("initializer_cfg") or {}).get("initializer_range", 0.02),
        bidirectional=raw.get("bidirectional", True),
        bidirectional_strategy=raw.get("bidirectional_strategy") or "add",
        bidirectional_weight_tie=raw.get("bidirectional_weight_tie", True),
        rcps=raw.get("rcps", False),
    )
    return config_from_dict(CaduceusConfig, values, where=f"{where} (Caduceus config)")


def fused_strand_swap(raw: dict[str, Any]) -> bool:
    """True when the public code's blocks swap the strand halves (Caduceus-PS on the fused add-norm path)."""
    return bool(raw.get("rcps", False)) and bool(raw.get("fused_add_norm", True))


def complement_map(raw: dict[str, Any]) -> list[int]:
    """The config's complement map as a list indexed by id (the public code pads it with identities)."""
    mapping = {int(k): int(v) for k, v in (raw.get("complement_map") or {}).items()}
    return [mapping.get(i, i) for i in range(max(mapping, default=-1) + 1)]


def training_length(tokenizer: dict[str, Any] | None) -> int | None:
    """The uploaded tokenizer's ``model_max_length`` is the pretraining length (1024, 131072)."""
    length = (tokenizer or {}).get("model_max_length")
    return int(length) if isinstance(length, int) and 0 < length < 2**40 else None


# -- state dicts -------------------------------------------------------------------------------------------------
_THEIR_KEY = re.compile(
    r"backbone\.(?:"
    r"(?P<embedding>embeddings\.word_embeddings\.(?:embedding\.)?weight)"
    r"|(?P<complement>embeddings\.word_embeddings\.complement_map)"
    r"|layers\.(?P<layer>\d+)\.(?:norm\.(?:submodule\.)?(?P<norm>weight)|mixer\.(?:submodule\.)?(?P<mixer>mamba_.+))"
    r"|(?P<norm_f>norm_f\.(?:submodule\.)?weight))"
)


def _our_key(match: re.Match, rcps: bool) -> str | None:
    sub = ".submodule" if rcps else ""
    if match["embedding"]:
        return "backbone.embedding.weight"
    if match["norm"]:
        return f"backbone.layers.{match['layer']}.norm{sub}.weight"
    if match["mixer"]:
        return f"backbone.layers.{match['layer']}.mixer{sub}.{match['mixer']}"
    if match["norm_f"]:
        return f"backbone.norm_f{sub}.weight"
    return None


def convert_state_dict(
    raw_state: dict[str, Tensor], raw_config: dict[str, Any], config: CaduceusConfig, ids: list[int], where: str
) -> dict[str, Tensor]:
    """A released state dict as :class:`Caduceus`'s; ``ids[our_id]`` is the checkpoint's id of our token."""
    expected = Caduceus(config).state_dict()
    complement = complement_map(raw_config)
    if config.rcps:
        check_complement(complement, ids, f"{where} (config.json)")
    state: dict[str, Tensor] = {}
    lm_head = None
    for key, value in raw_state.items():
        if key.endswith("lm_head.weight"):
            lm_head = value
            continue
        if key.endswith("complement_map"):
            check_complement(value.tolist(), ids, f"{where} ({key})")
            continue
        match = _THEIR_KEY.search(key)
        if match is None:
            continue  # sequence-classification heads (score.*); our LM head is tied to the embedding
        ours = _our_key(match, config.rcps)
        if ours not in expected:
            raise KeyError(f"{where}: checkpoint tensor {key!r} has no counterpart in Caduceus ({ours})")
        if ours in state:
            raise KeyError(f"{where}: two checkpoint tensors map to {ours}")
        if ours != "backbone.embedding.weight" and tuple(value.shape) != tuple(expected[ours].shape):
            raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, expected {tuple(expected[ours].shape)}")
        state[ours] = value.float()
    _share_tied_projections(state, config, where)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise KeyError(f"{where}: checkpoint lacks {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    table = state["backbone.embedding.weight"]
    if lm_head is not None and not torch.equal(lm_head.float(), table):
        raise ValueError(f"{where}: lm_head weight differs from the token embedding it is tied to")
    state["backbone.embedding.weight"] = map_embedding_rows(
        table, ids, expected["backbone.embedding.weight"].shape[0], where
    )
    return conjugate_strand_frame(state, config) if fused_strand_swap(raw_config) else state


_TIED_PROJECTION = re.compile(r"\.mamba_(fwd|rev)\.(?=(?:in|out)_proj\.)")


def _share_tied_projections(state: dict[str, Tensor], config: CaduceusConfig, where: str) -> None:
    """With ``bidirectional_weight_tie`` the reverse mixer's in/out projections are the forward one's: a file may
    hold them under one name; both names must then carry the same values."""
    if not (config.bidirectional and config.bidirectional_weight_tie):
        return
    for key in [k for k in state if _TIED_PROJECTION.search(k)]:
        other = _TIED_PROJECTION.sub(lambda m: ".mamba_rev." if m[1] == "fwd" else ".mamba_fwd.", key, count=1)
        if other not in state:
            state[other] = state[key]
        elif not torch.equal(state[other], state[key]):
            raise ValueError(f"{where}: {key} and {other} are tied (bidirectional_weight_tie) but differ")


def conjugate_strand_frame(state: dict[str, Tensor], config: CaduceusConfig) -> dict[str, Tensor]:
    """Map between the fused-path Caduceus-PS and ours (see the module docstring); an involution.

    Every even-indexed layer's block f becomes rho o f o rho: forward and reverse mixers exchange their parameters,
    in_proj's input channels, out_proj's output channels and the norm weight are reversed.
    """
    state = dict(state)
    for layer in range(0, config.n_layer, 2):
        block = f"backbone.layers.{layer}."
        norm = block + "norm.submodule.weight"
        state[norm] = state[norm].flip(0)
        mixers = {key: value for key, value in state.items() if key.startswith(block + "mixer.")}
        for key, value in mixers.items():
            swapped = key.replace(".mamba_fwd.", ".mamba_tmp.").replace(".mamba_rev.", ".mamba_fwd.")
            swapped = swapped.replace(".mamba_tmp.", ".mamba_rev.")
            if key.endswith("in_proj.weight"):
                value = value.flip(1)
            elif key.endswith(("out_proj.weight", "out_proj.bias")):
                value = value.flip(0)
            state[swapped] = value
    return state


# -- export -------------------------------------------------------------------------------------------------------
def hf_config(config: CaduceusConfig, rows: int, fused: bool) -> dict[str, Any]:
    """``config.json`` as ``CaduceusConfig`` reads it, with our vocabulary (the released one) and complement."""
    complement = {str(i): int(vocab.COMPLEMENT[i]) if i < vocab.VOCAB_SIZE else i for i in range(rows)}
    return {
        "architectures": ["CaduceusForMaskedLM"],
        "auto_map": {
            "AutoConfig": f"{MODELING_REPO}--configuration_caduceus.CaduceusConfig",
            "AutoModel": f"{MODELING_REPO}--modeling_caduceus.Caduceus",
            "AutoModelForMaskedLM": f"{MODELING_REPO}--modeling_caduceus.CaduceusForMaskedLM",
            "AutoModelForSequenceClassification": (
                f"{MODELING_REPO}--modeling_caduceus.CaduceusForSequenceClassification"
            ),
        },
        "model_type": "caduceus",
        "d_model": config.d_model,
        "n_layer": config.n_layer,
        "vocab_size": rows,
        "ssm_cfg": {
            "d_state": config.d_state,
            "d_conv": config.d_conv,
            "expand": config.expand,
            "dt_rank": config.dt_rank,
            "dt_min": config.dt_min,
            "dt_max": config.dt_max,
            "dt_init_floor": config.dt_init_floor,
            "conv_bias": config.conv_bias,
            "bias": config.bias,
            "dt_init": "random",
            "dt_scale": 1.0,
            "use_fast_path": True,
        },
        "rms_norm": True,
        "residual_in_fp32": config.residual_in_fp32,
        "fused_add_norm": fused,
        "pad_vocab_size_multiple": config.pad_vocab_size_multiple,
        "norm_epsilon": config.norm_epsilon,
        "initializer_cfg": {
            "initializer_range": config.initializer_range,
            "rescale_prenorm_residual": True,
            "n_residuals_per_layer": 1,
        },
        "bidirectional": config.bidirectional,
        "bidirectional_strategy": config.bidirectional_strategy,
        "bidirectional_weight_tie": config.bidirectional_weight_tie,
        "rcps": config.rcps,
        "complement_map": complement,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: Caduceus, fused: bool) -> dict[str, Tensor]:
    """``CaduceusForMaskedLM``'s tensors (every name, tied ones included, as separate copies)."""
    config = model.config
    ours = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    if fused and config.rcps:
        ours = conjugate_strand_frame(ours, config)
    wrapped_norms = config.rcps and not fused  # the unfused PS path wraps its norms in RCPSAddNormWrapper
    state: dict[str, Tensor] = {}
    for key, value in ours.items():
        if key == "backbone.embedding.weight":
            key = "backbone.embeddings.word_embeddings." + ("embedding.weight" if config.rcps else "weight")
        elif ".norm" in key and not wrapped_norms:
            key = key.replace(".submodule.", ".")
        state["caduceus." + key] = value.clone().contiguous()
    embedding = ours["backbone.embedding.weight"]
    if config.rcps:
        complement = torch.arange(embedding.shape[0])
        complement[: vocab.VOCAB_SIZE] = torch.as_tensor(vocab.COMPLEMENT)
        state["caduceus.backbone.embeddings.word_embeddings.complement_map"] = complement.clone()
        state["lm_head.complement_map"] = complement.clone()
        state["lm_head.lm_head.weight"] = embedding.clone()
    else:
        state["lm_head.weight"] = embedding.clone()
    return state


def export(model: Caduceus, out_dir: Path, training_length: int) -> list[str]:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer_config.json`` of ``CaduceusForMaskedLM``.

    The released configuration (fused add-norm) is written whenever it can express the model; an odd-depth PS
    model is written for the unfused path, which computes the same function as ours without the strand swap.
    """
    config = model.config
    fused = not (config.rcps and (config.n_layer % 2 or not config.bidirectional))
    rows = model.embedding.weight.shape[0]
    with atomic_path(out_dir / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(hf_state_dict(model, fused), str(tmp), metadata={"format": "pt"})
    write_json(out_dir / "config.json", hf_config(config, rows, fused))
    tokenizer = tokenizer_config(training_length, "left", "CaduceusTokenizer")
    tokenizer["auto_map"] = {"AutoTokenizer": [f"{MODELING_REPO}--tokenization_caduceus.CaduceusTokenizer", None]}
    write_json(out_dir / "tokenizer_config.json", tokenizer)
    return ["config.json", "model.safetensors", "tokenizer_config.json"]
