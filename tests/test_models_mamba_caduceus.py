"""Mamba and Caduceus: shapes, published sizes, causality, fast path vs reference, RC equivariance (PS),
chunked inference, checkpoints and activation checkpointing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from longdna import vocab
from longdna.models import build_model, load_pretrained, mamba, save_pretrained
from longdna.models.base import POOLINGS, pooled_width
from longdna.models.mamba import selective_scan, selective_scan_reference
from longdna.models.scan import linear_scan_parallel

COMPLEMENT = torch.as_tensor(vocab.COMPLEMENT)
VARIANTS = {
    "mamba": ("mamba", {}),
    "caduceus-ph": ("caduceus", {}),
    "caduceus-ps": ("caduceus", {"rcps": True}),
}
EXACT = dict(rtol=0.0, atol=1e-10)  # float64 comparisons


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: intra-op threads only add synchronisation (7x slower on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(variant: str, dtype: torch.dtype = torch.float64, **overrides):
    arch, config = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_model(arch, **{"d_model": 16, "n_layer": 2, "scan_chunk_size": 8, **config, **overrides})
    return model.to(dtype).eval()


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab.VOCAB_SIZE, (batch, length), generator=generator)


def reverse_complement_logits(logits: torch.Tensor) -> torch.Tensor:
    """What RC(x) must score if the model is equivariant: positions reversed, tokens complemented."""
    return logits.flip(1)[..., COMPLEMENT]


# -- interface and sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes(variant):
    model = tiny(variant)
    x = tokens(2, 33)
    assert model(x).shape == (2, 33, vocab.VOCAB_SIZE)
    assert model.embed(x).shape == (2, 33, model.hidden_size)
    assert model.hidden_size == (32 if variant == "caduceus-ps" else 16)
    assert model.feature_size == 16
    assert model.causal == (variant == "mamba")


@pytest.mark.parametrize(
    ("arch", "preset", "count"),
    [
        ("mamba", "mamba-1k-d128", 468_608),  # Caduceus paper Table 1: "Mamba 468k"
        ("mamba", "mamba-d256-l16", 7_012_608),
        ("mamba", "mamba-d256-l18", 7_888_640),
        ("caduceus", "caduceus-ph-1k-d118", 470_702),  # published: 470,702
        ("caduceus", "caduceus-ps-1k-d118", 470_702),
        ("caduceus", "caduceus-ph-1k-d256", 1_934_592),  # published: 1.93M
        ("caduceus", "caduceus-ps-1k-d256", 1_934_592),
        ("caduceus", "caduceus-ph-131k", 7_725_312),  # published: 7.73M
        ("caduceus", "caduceus-ps-131k", 7_725_312),
    ],
)
def test_preset_parameter_counts(arch, preset, count):
    assert build_model(arch, preset=preset).num_parameters() == count


def test_weight_tie_shares_projections_only():
    model = tiny("caduceus-ph")
    mixer = model.backbone.layers[0].mixer
    assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
    assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    assert mixer.mamba_rev.conv1d.weight is not mixer.mamba_fwd.conv1d.weight
    assert mixer.mamba_rev.A_log is not mixer.mamba_fwd.A_log
    untied = tiny("caduceus-ph", bidirectional_weight_tie=False)
    projections = 16 * 64 + 32 * 16  # in_proj D x 2E + out_proj E x D, per layer
    assert untied.num_parameters() == model.num_parameters() + 2 * projections


def test_mixer_initialisation():
    model = tiny("mamba", dtype=torch.float32, n_layer=3)
    mixer = model.backbone.layers[0].mixer
    config = model.config
    assert config.dt_rank == 1  # "auto" = ceil(16 / 16)
    dt = F.softplus(mixer.dt_proj.bias)
    assert config.dt_min * 0.999 <= dt.min() and dt.max() <= config.dt_max * 1.001
    torch.testing.assert_close(-torch.exp(mixer.A_log), -torch.arange(1.0, 17.0).expand(32, 16))
    assert torch.equal(mixer.D, torch.ones(32))
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    # kaiming-uniform bound 1/sqrt(fan_in), rescaled by 1/sqrt(n_layer)
    assert mixer.out_proj.weight.abs().max() <= 1 / math.sqrt(32) / math.sqrt(3)
    assert abs(model.embedding.weight.std().item() - 0.02) < 0.01


def test_config_validation():
    with pytest.raises(ValueError, match="bidirectional_strategy"):
        build_model("caduceus", bidirectional_strategy="concat")
    with pytest.raises(ValueError, match="dt_rank"):
        build_model("mamba", dt_rank="half")


def test_caduceus_without_reverse_direction_is_mamba():
    mamba, caduceus = tiny("mamba"), tiny("caduceus-ph", bidirectional=False)
    assert caduceus.causal and caduceus.num_parameters() == mamba.num_parameters()
    x = tokens(2, 19)
    torch.testing.assert_close(caduceus(x), mamba(x), **EXACT)


def test_ew_multiply_strategy_runs():
    model = tiny("caduceus-ps", bidirectional_strategy="ew_multiply")
    x = tokens(2, 13)
    logits = model(x)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(model(vocab.reverse_complement(x)), reverse_complement_logits(logits), **EXACT)


# -- causality and the reference path -------------------------------------------------------------------------
def test_mamba_is_causal():
    model = tiny("mamba")
    x = tokens(2, 30)
    logits = model(x)
    for t in (0, 7, 8, 20):
        changed = x.clone()
        changed[:, t + 1 :] = (x[:, t + 1 :] + 1) % vocab.VOCAB_SIZE
        other = model(changed)
        torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1], rtol=0.0, atol=1e-12)
        assert not torch.allclose(other[:, t + 1 :], logits[:, t + 1 :])


def test_caduceus_sees_both_sides():
    model = tiny("caduceus-ph")
    x = tokens(1, 20)
    changed = x.clone()
    changed[:, -1] = (x[:, -1] + 1) % vocab.VOCAB_SIZE
    assert not torch.allclose(model(changed)[:, 0], model(x)[:, 0])


def test_selective_scan_matches_reference_from_a_state():
    generator = torch.Generator().manual_seed(1)
    b, length, e, n = 2, 21, 6, 4

    def rand(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    x, dt, bm, cm = rand(b, length, e), F.softplus(rand(b, length, e)), rand(b, length, n), rand(b, length, n)
    a, d, h0 = -torch.exp(rand(e, n)), rand(e), rand(b, e, n)
    y_ref, h_ref = selective_scan_reference(x, dt, a, bm, cm, d, h0)
    y, h = selective_scan(x, dt, a, bm, cm, d, h0, chunk_size=8)
    torch.testing.assert_close(y, y_ref, **EXACT)
    torch.testing.assert_close(h, h_ref, **EXACT)


@pytest.mark.parametrize("scan", ["sequential", "parallel"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("length", [1, 7, 8, 21, 50])
def test_fast_path_matches_reference(variant, length, scan, monkeypatch):
    if scan == "parallel":  # what a GPU runs without mamba_ssm (a CPU runs the sequential scan)
        monkeypatch.setattr(mamba, "linear_scan", linear_scan_parallel)
    model = tiny(variant)  # scan_chunk_size 8: lengths below, at and across chunk boundaries
    x = tokens(2, length, seed=length)
    fast = model(x)
    with model.reference_path():
        reference = model(x)
    torch.testing.assert_close(fast, reference, **EXACT)


# -- reverse-complement equivariance ----------------------------------------------------------------------------
def test_ps_is_rc_equivariant():
    model = tiny("caduceus-ps", n_layer=3)
    x = tokens(2, 37)
    rc = vocab.reverse_complement(x)
    # RC of a hidden state: positions and all 2 x d_model channels reversed
    torch.testing.assert_close(model.embed(rc), model.embed(x).flip(1, 2), **EXACT)
    torch.testing.assert_close(model(rc), reverse_complement_logits(model(x)), **EXACT)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_ps_pooled_features_are_rc_invariant(pooling):
    model = tiny("caduceus-ps")
    x = tokens(3, 29)
    mask = torch.ones_like(x, dtype=torch.bool)
    features = model.pooled_features(model.embed(x), mask, pooling)
    rc_features = model.pooled_features(model.embed(vocab.reverse_complement(x)), mask, pooling)
    assert features.shape == (3, pooled_width(model.feature_size, pooling))
    torch.testing.assert_close(rc_features, features, **EXACT)
    torch.testing.assert_close(model.pooled_features(model.embed(x), None, pooling), features, **EXACT)


def test_ps_pooled_features_reject_unknown_pooling():
    model = tiny("caduceus-ps")
    with pytest.raises(ValueError, match="pooling"):
        model.pooled_features(model.embed(tokens(1, 5)), None, "median")


def test_ph_is_not_rc_equivariant():
    model = tiny("caduceus-ph")
    x = tokens(2, 37)
    assert not torch.allclose(model(vocab.reverse_complement(x)), reverse_complement_logits(model(x)), atol=1e-4)


# -- training and long inputs -----------------------------------------------------------------------------------
def _loss(model, x: torch.Tensor) -> torch.Tensor:
    targets = tokens(*x.shape, seed=99)
    return F.cross_entropy(model(x).flatten(0, 1), targets.flatten())


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_are_finite(variant):
    model = tiny(variant, dtype=torch.float32).train()
    _loss(model, tokens(2, 40)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("variant", ["mamba", "caduceus-ps"])
def test_runs_at_16x_training_length(variant):
    model = tiny(variant, dtype=torch.float32, scan_chunk_size=128)
    with torch.no_grad():
        logits = model(tokens(1, 16 * 64))
    assert logits.shape == (1, 1024, vocab.VOCAB_SIZE) and torch.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_activation_checkpointing_changes_nothing(variant):
    model = tiny(variant).train()
    x = tokens(2, 24)

    def loss_and_grads():
        model.zero_grad()
        loss = _loss(model, x)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    loss, grads = loss_and_grads()
    model.gradient_checkpointing = True
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    torch.testing.assert_close(checkpointed_loss, loss, rtol=0.0, atol=1e-12)
    for name, grad in grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=0.0, atol=1e-12, msg=name)


# -- chunked inference and checkpoints --------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("chunk_size", [1, 5, 16, 37, 64])
def test_embed_chunked_matches_embed(variant, chunk_size):
    model = tiny(variant)
    x = tokens(2, 37)
    with torch.no_grad():
        torch.testing.assert_close(model.embed_chunked(x, chunk_size), model.embed(x), **EXACT)


def test_embed_chunked_rejects_empty_chunks():
    with pytest.raises(ValueError, match="chunk_size"):
        tiny("mamba").embed_chunked(tokens(1, 4), 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_load_round_trip(variant, tmp_path):
    model = tiny(variant, dtype=torch.float32)
    save_pretrained(model, tmp_path / "checkpoint")
    loaded = load_pretrained(tmp_path / "checkpoint")
    assert type(loaded) is type(model) and loaded.config == model.config
    x = tokens(2, 21)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    if variant != "mamba":  # the reverse direction still uses the forward one's projections
        mixer = loaded.backbone.layers[1].mixer
        mixer = getattr(mixer, "submodule", mixer)
        assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
