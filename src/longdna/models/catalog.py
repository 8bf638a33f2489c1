"""What the model zoo offers, as plain tables: architectures, their named sizes (presets), pooling choices.

Standard library only, like the package's ``__init__`` at import time: the Snakefile (job resources, config
checks) and the settings (:mod:`longdna.settings`) read these tables without torch. The models themselves
live in one module per architecture (:data:`ARCHITECTURES`).
"""

from __future__ import annotations

from typing import Any

#: architecture name -> "module:class"; modules are imported on first use
ARCHITECTURES: dict[str, str] = {
    "hyenadna": "longdna.models.hyenadna:HyenaDNA",
    "caduceus": "longdna.models.caduceus:Caduceus",
    "mamba": "longdna.models.mamba:Mamba",
    "hawk": "longdna.models.hawk:Hawk",
    "transformer": "longdna.models.transformer:Transformer",
}

#: architecture -> preset name -> config values over the architecture's config defaults
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # released checkpoint sizes (LongSafari/hyenadna-*); l_max is the released max_seq_len
    "hyenadna": {
        "tiny-1k": dict(d_model=128, n_layer=2, d_inner=512, l_max=1026),
        "tiny-1k-d256": dict(d_model=256, n_layer=2, d_inner=1024, l_max=1026),
        "tiny-16k": dict(d_model=128, n_layer=2, d_inner=512, l_max=16386),
        "small-32k": dict(d_model=256, n_layer=4, d_inner=1024, l_max=32770),
        "medium-160k": dict(d_model=256, n_layer=8, d_inner=1024, l_max=160002),
        "medium-450k": dict(d_model=256, n_layer=8, d_inner=1024, l_max=450002),
        "large-1m": dict(d_model=256, n_layer=8, d_inner=1024, l_max=1000002),
    },
    # Released sizes (kuleshov-group/caduceus-{ph,ps}_seqlen-*). Parameters per layer, D = d_model, E = 2D,
    # N = 16, R = ceil(D/16), K = 4: shared in_proj 2ED and out_proj ED, per direction conv E(K+1), x_proj
    # E(R+2N), dt_proj (R+1)E, A_log EN and D E; RMSNorm D. Plus the 16 x D embedding (tied head) and the final
    # norm D. PS shares every parameter between the strands, so PH and PS counts are equal:
    "caduceus": {
        # 470,702 (paper Table 1, 4 x 118, "470k")
        "caduceus-ph-1k-d118": dict(d_model=118, n_layer=4),
        "caduceus-ps-1k-d118": dict(d_model=118, n_layer=4, rcps=True),
        # 1,934,592 (paper Table 2, 4 x 256, "1.9M")
        "caduceus-ph-1k-d256": dict(d_model=256, n_layer=4),
        "caduceus-ps-1k-d256": dict(d_model=256, n_layer=4, rcps=True),
        # 7,725,312 (paper, 16 x 256, "7.73M")
        "caduceus-ph-131k": dict(d_model=256, n_layer=16),
        "caduceus-ps-131k": dict(d_model=256, n_layer=16, rcps=True),
    },
    # Parameters per layer with D = d_model, E = 2D, N = 16, R = ceil(D/16), K = 4: in_proj 2ED + conv E(K+1)
    # + x_proj E(R+2N) + dt_proj (R+1)E + A_log EN + D E + out_proj ED + norm D; plus the 16 x D embedding (tied
    # head) and the final norm D.
    "mamba": {
        # 468,608: the "Mamba 468k" baseline of the Caduceus paper (GenomicBenchmarks, Table 1)
        "mamba-1k-d128": dict(d_model=128, n_layer=4),
        # 7,012,608: Caduceus-131k's shape (16 x 256) with one direction
        "mamba-d256-l16": dict(d_model=256, n_layer=16),
        # 7,888,640: the depth at width 256 closest to Caduceus-131k's 7,725,312 parameters
        "mamba-d256-l18": dict(d_model=256, n_layer=18),
    },
    # Both bidirectional (masked LM), the study's configuration. hawk-50m: 49,748,544 parameters at the budget
    # of the 50M Transformer baseline and its depth (12 layers); hawk-7m: 7,011,424 parameters, size-matched
    # with transformer-7m for speed comparisons. Gate blocks are 64 and 32 channels wide.
    "hawk": {
        "hawk-50m": dict(d_model=576, n_layer=12, num_heads=9, bidirectional=True),
        "hawk-7m": dict(d_model=224, n_layer=11, num_heads=7, bidirectional=True),
    },
    # transformer-50m: 50,365,440 parameters (NTv2-50M-like, bidirectional); transformer-7m: 7,039,488
    # parameters, size-matched with hawk-7m
    "transformer": {
        "transformer-50m": dict(d_model=512, n_layer=12, n_heads=16, d_ff=2048, causal=False),
        "transformer-7m": dict(d_model=256, n_layer=6, n_heads=8, d_ff=1184, causal=False),
    },
}

#: (d_model, n_layer) of each architecture's config without a preset: the defaults of its config class, which
#: imports torch with its module (``tests/test_settings.py`` checks that they agree)
DEFAULT_SHAPES: dict[str, tuple[int, int]] = {
    "hyenadna": (128, 2),
    "caduceus": (128, 4),
    "mamba": (128, 4),
    "hawk": (256, 4),
    "transformer": (256, 4),
}

#: sequence poolings of :func:`longdna.models.base.pool`
POOLINGS = ("mean", "max", "last", "first", "segments", "mean_segments")
#: default number of segments of ``segments`` and ``mean_segments`` pooling
SEGMENTS = 16


def presets(arch: str) -> dict[str, dict[str, Any]]:
    """Named released-size configurations of an architecture."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return {name: dict(values) for name, values in PRESETS.get(arch, {}).items()}
