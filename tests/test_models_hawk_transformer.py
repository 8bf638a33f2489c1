"""Hawk (RG-LRU) and Transformer baselines: interface, causality, fast path vs reference, chunked inference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from longdna import vocab
from longdna.models import build_model, hawk, load_pretrained, save_pretrained
from longdna.models.hawk import MAX_SQRT_GRADIENT, sqrt_bounded_gradient
from longdna.models.scan import linear_scan_parallel
from longdna.models.transformer import attention_reference
from longdna.train.optim import parameter_groups

TINY = {
    "hawk": dict(d_model=16, n_layer=2, num_heads=2, scan_chunk_size=8),
    "hawk-bi": dict(d_model=16, n_layer=2, num_heads=2, scan_chunk_size=8, bidirectional=True),
    "hawk-bi-concat": dict(
        d_model=16, n_layer=2, num_heads=2, scan_chunk_size=8, bidirectional=True, bidirectional_combine="concat"
    ),
    "transformer": dict(d_model=16, n_layer=2, n_heads=2, causal=True),
    "transformer-bi": dict(d_model=16, n_layer=2, n_heads=2, causal=False, mlp="gelu", norm="rmsnorm"),
}
CAUSAL = ["hawk", "transformer"]
BIDIRECTIONAL = ["hawk-bi", "hawk-bi-concat", "transformer-bi"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: intra-op threads only add synchronisation, which dominates on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    arch = name.split("-")[0]
    return build_model(arch, **{**TINY[name], **overrides}).to(dtype).eval()


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab.VOCAB_SIZE, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(TINY))
def test_shapes_and_parameter_count(name):
    model = tiny(name)
    ids = tokens(2, 13)
    assert model(ids).shape == (2, 13, vocab.VOCAB_SIZE)
    assert model.embed(ids).shape == (2, 13, model.hidden_size)
    assert model.causal == (name in CAUSAL)
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "arch, preset, count, target",
    [
        ("hawk", "hawk-50m", 49_748_544, 50e6),
        ("hawk", "hawk-7m", 7_011_424, 7e6),
        ("transformer", "transformer-50m", 50_365_440, 50e6),
        ("transformer", "transformer-7m", 7_039_488, 7e6),
    ],
)
def test_preset_parameter_counts(arch, preset, count, target):
    with torch.device("meta"):  # counts only: no memory, no init cost
        model = build_model(arch, preset=preset)
    assert model.num_parameters() == count
    assert abs(count / target - 1) < 0.01
    assert not model.causal  # the study's models are masked-LM


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_models_never_see_the_future(name):
    model = tiny(name)
    ids = tokens(2, 24)
    base = model.embed(ids)
    for t in (0, 9, 22):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % vocab.VOCAB_SIZE
        out = model.embed(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(out[:, t + 1], base[:, t + 1])


@pytest.mark.parametrize("name", BIDIRECTIONAL)
def test_bidirectional_models_see_the_future(name):
    model = tiny(name)
    ids = tokens(2, 24)
    changed = ids.clone()
    changed[:, 20] = (changed[:, 20] + 1) % vocab.VOCAB_SIZE
    assert not torch.allclose(model.embed(changed)[:, 5], model.embed(ids)[:, 5])


@pytest.mark.parametrize("scan", ["sequential", "parallel"])
@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("length", [1, 7, 20, 37])
def test_fast_path_matches_reference(name, length, scan, monkeypatch):
    if scan == "parallel":  # what a GPU runs (a CPU runs the sequential scan)
        monkeypatch.setattr(hawk, "linear_scan", linear_scan_parallel)
    model = tiny(name)  # scan chunks of 8: 20 and 37 span several
    ids = tokens(2, length)
    fast = model(ids)
    with model.reference_path():
        reference = model(ids)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-10)


def test_rg_lru_follows_its_definition():
    """The RG-LRU against a per-step transcription of the equations (independent of the shared scan)."""
    model = tiny("hawk")
    lru = model.layers[0].recurrent_block.forward_rnn.rg_lru
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    h0 = torch.randn(2, 16, dtype=torch.float64)

    def block_diagonal(gate, x_t):
        w = torch.block_diag(*gate.weight)  # (W, W)
        return x_t @ w + gate.bias.flatten()

    h, expected = h0, []
    for t in range(x.shape[1]):
        i_t = torch.sigmoid(block_diagonal(lru.input_gate, x[:, t]))
        r_t = torch.sigmoid(block_diagonal(lru.a_gate, x[:, t]))
        a_t = torch.exp(-8.0 * F.softplus(lru.a_param) * r_t)
        h = a_t * h + torch.sqrt(1 - a_t**2) * (i_t * x[:, t])
        expected.append(h)
    out, last = lru(x, h0)
    torch.testing.assert_close(out, torch.stack(expected, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(last, h, rtol=0, atol=1e-12)


def test_rg_lru_initialisation_and_weight_decay():
    model = build_model("hawk", **TINY["hawk"])
    lru = model.layers[0].recurrent_block.forward_rnn.rg_lru
    base_decay = torch.exp(-F.softplus(lru.a_param))
    assert base_decay.min() >= 0.9 - 1e-6 and base_decay.max() <= 0.999 + 1e-6
    no_decay = {id(p) for p in parameter_groups(model, 0.1)[1]["params"]}
    assert id(lru.a_param) in no_decay
    assert id(lru.input_gate.weight) not in no_decay


def test_sqrt_gradient_is_bounded():
    x = torch.tensor([0.0, 1e-12, 0.25], dtype=torch.float64, requires_grad=True)
    y = sqrt_bounded_gradient(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), x.detach().sqrt())
    torch.testing.assert_close(x.grad, torch.tensor([MAX_SQRT_GRADIENT, MAX_SQRT_GRADIENT, 1.0], dtype=torch.float64))


def test_bidirectional_hawk_is_flip_equivariant_with_tied_directions():
    """With the reverse recurrence a copy of the forward one, reversing the input reverses the output: the
    reverse pass really is the forward pass run right to left (anti-causal conv included)."""
    model = tiny("hawk-bi")
    for block in model.layers:
        rec = block.recurrent_block
        rec.reverse_rnn.load_state_dict(rec.forward_rnn.state_dict())
    ids = tokens(2, 19)
    torch.testing.assert_close(model.embed(ids.flip(1)), model.embed(ids).flip(1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["hawk", "hawk-bi", "hawk-bi-concat"])
@pytest.mark.parametrize("chunk_size", [1, 5, 8, 64])
def test_embed_chunked_equals_embed(name, chunk_size):
    model = tiny(name)
    ids = tokens(2, 37)  # 37 is not a multiple of any chunk size
    torch.testing.assert_close(model.embed_chunked(ids, chunk_size), model.embed(ids), rtol=0, atol=1e-10)


def test_embed_chunked_rejects_empty_chunks():
    with pytest.raises(ValueError, match="chunk_size"):
        tiny("hawk").embed_chunked(tokens(1, 4), 0)


@pytest.mark.parametrize("name", list(TINY))
def test_gradients_are_finite(name):
    model = tiny(name, dtype=torch.float32).train()
    ids = tokens(2, 40)
    loss = F.cross_entropy(model(ids).flatten(0, 1), tokens(2, 40, seed=2).flatten())
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", list(TINY))
def test_runs_far_beyond_training_length(name):
    model = tiny(name, dtype=torch.float32)
    with torch.no_grad():
        out = model(tokens(1, 16 * 32))  # no position table: any length runs
    assert out.shape == (1, 512, vocab.VOCAB_SIZE) and torch.isfinite(out).all()


def test_rope_scaling_interpolates_positions():
    model = tiny("transformer-bi")
    scaled = build_model("transformer", **{**TINY["transformer-bi"], "rope_scaling": 2.0}).double().eval()
    scaled.load_state_dict(model.state_dict())
    ids = tokens(2, 64)
    out = scaled(ids)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, model(ids))
    # positions divided by 2: a length-1 input has only position 0 and is unaffected
    torch.testing.assert_close(scaled(ids[:, :1]), model(ids[:, :1]))


def test_sdpa_matches_explicit_attention_with_causal_mask():
    q, k, v = torch.randn(3, 2, 4, 9, 8, dtype=torch.float64).unbind(0)
    for causal in (True, False):
        expected = attention_reference(q, k, v, causal, 0.0)
        torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=causal), expected)
    assert torch.equal(attention_reference(q, k, v, True, 0.0)[:, :, 0], v[:, :, 0])  # first query sees itself only


@pytest.mark.parametrize("name", ["hawk-bi-concat", "transformer"])
def test_save_load_round_trip(name, tmp_path):
    model = tiny(name, dtype=torch.float32)
    save_pretrained(model, tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    ids = tokens(2, 21)
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


@pytest.mark.parametrize("name", ["hawk-bi", "transformer"])
def test_activation_checkpointing_gives_identical_loss_and_gradients(name):
    ids, targets = tokens(2, 30), tokens(2, 30, seed=2)
    results = []
    for checkpointing in (False, True):
        model = tiny(name, dtype=torch.float64).train()
        model.gradient_checkpointing = checkpointing
        loss = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["hawk-bi", "transformer"])
def test_bfloat16_autocast_stays_close_to_float32(name):
    model = tiny(name, dtype=torch.float32)
    ids = tokens(2, 33)
    reference = model(ids)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(ids)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, rtol=0, atol=0.1 * reference.abs().max().item())


def test_rg_lru_runs_in_float32_under_autocast():
    lru = tiny("hawk", dtype=torch.float32).layers[0].recurrent_block.forward_rnn.rg_lru
    x = torch.randn(2, 9, 16, dtype=torch.bfloat16)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out, state = lru(x)
    assert out.dtype == torch.bfloat16 and state.dtype == torch.float32
    torch.testing.assert_close(state, lru(x.float())[1])


@pytest.mark.parametrize(
    "arch, config, message",
    [
        ("hawk", dict(d_model=16, num_heads=3), "divisible"),
        ("hawk", dict(d_model=16, num_heads=2, bidirectional_combine="mean"), "bidirectional_combine"),
        ("hawk", dict(d_model=16, num_heads=2, a_min=0.99, a_max=0.9), "a_min"),
        ("transformer", dict(d_model=16, n_heads=3), "heads"),
        ("transformer", dict(d_model=16, n_heads=2, mlp="relu"), "mlp"),
        ("transformer", dict(d_model=16, n_heads=2, rope_scaling=0.0), "rope_scaling"),
    ],
)
def test_invalid_configs_are_rejected(arch, config, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, **config)


def test_hawk_embedding_is_scaled_by_sqrt_width():
    model = tiny("hawk")
    model.layers = torch.nn.ModuleList()  # embedding -> final norm only
    ids = tokens(1, 5)
    expected = model.final_norm(model.embedding(ids) * math.sqrt(16))
    torch.testing.assert_close(model.embed(ids), expected)
