"""Objectives, optimiser groups and schedules of the training engine."""

from __future__ import annotations

import math

import pytest
import torch

from longdna import vocab
from longdna.models import build_model
from longdna.train.objectives import IGNORE_INDEX, LMExamples, causal_example, masked_example, token_loss_sum
from longdna.train.optim import build_optimizer, parameter_groups, warmup_cosine


def genome_like_window(length: int, seed: int = 0) -> torch.Tensor:
    """Random bases with a run of N in the middle and padding at the end."""
    generator = torch.Generator().manual_seed(seed)
    window = torch.randint(vocab.A, vocab.T + 1, (length,), generator=generator)
    window[length // 3 : length // 3 + length // 10] = vocab.N
    window[-length // 20 :] = vocab.PAD
    return window


def test_mlm_masking_statistics() -> None:
    window = genome_like_window(400_000)
    inputs, targets = masked_example(window, 0.15, torch.Generator().manual_seed(1))
    eligible = (window != vocab.N) & (window != vocab.PAD)
    selected = targets != IGNORE_INDEX
    assert not selected[~eligible].any(), "N and padding must never be selected"
    assert torch.equal(inputs[~eligible], window[~eligible]), "N and padding must stay in the input"
    assert torch.equal(targets[selected], window[selected]), "targets are the original bases"
    assert not (inputs[~selected] != window[~selected]).any(), "unselected positions are untouched"
    assert selected.sum() / eligible.sum() == pytest.approx(0.15, abs=0.003)

    chosen_inputs, originals = inputs[selected], window[selected]
    n = selected.sum().item()
    masked = (chosen_inputs == vocab.MASK).sum().item() / n
    random_other = ((chosen_inputs != vocab.MASK) & (chosen_inputs != originals)).sum().item() / n
    unchanged = (chosen_inputs == originals).sum().item() / n
    assert masked == pytest.approx(0.80, abs=0.01)
    # 10 % random bases, a quarter of which happen to equal the original; 10 % kept as they are
    assert random_other == pytest.approx(0.075, abs=0.01)
    assert unchanged == pytest.approx(0.125, abs=0.01)
    assert ((chosen_inputs >= vocab.A) & (chosen_inputs <= vocab.T) | (chosen_inputs == vocab.MASK)).all()


def test_mlm_mask_is_a_function_of_the_sample_index() -> None:
    windows = [genome_like_window(512, seed=i) for i in range(4)]
    first = LMExamples(windows, "masked", seed=7)
    again = LMExamples(windows, "masked", seed=7)
    other_seed = LMExamples(windows, "masked", seed=8)
    for i in range(4):
        assert all(torch.equal(a, b) for a, b in zip(first[i], again[i]))
    assert not torch.equal(first[0][1], other_seed[0][1])
    assert not torch.equal(first[0][1], first[1][1])


def test_causal_targets_skip_n_and_padding() -> None:
    window = torch.tensor([vocab.A, vocab.C, vocab.N, vocab.G, vocab.PAD, vocab.T])
    inputs, targets = causal_example(window)
    assert inputs.tolist() == window[:-1].tolist()
    assert targets.tolist() == [vocab.C, IGNORE_INDEX, vocab.G, IGNORE_INDEX, vocab.T]


def test_token_loss_sum_counts_only_targets() -> None:
    logits = torch.randn(2, 5, vocab.VOCAB_SIZE)
    targets = torch.tensor([[7, 8, IGNORE_INDEX, 9, 10], [IGNORE_INDEX] * 4 + [7]])
    loss, count = token_loss_sum(logits, targets)
    keep = targets != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    assert count.item() == 5
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_weight_decay_on_norms_biases_and_hyena_filters() -> None:
    model = build_model("hyenadna", d_model=16, n_layer=1)
    decay, no_decay = (group["params"] for group in parameter_groups(model, 0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay}
    assert "backbone.layers.0.mixer.in_proj.weight" in decayed
    assert "backbone.embeddings.word_embeddings.weight" in decayed
    assert not any("filter_fn" in n or n.endswith(".bias") or "norm" in n or "ln_f" in n for n in decayed)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    optimizer = build_optimizer(model, 1e-3, 0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(s, 10, 110, 0.1) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:9], factors[1:10]))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factors[110] == pytest.approx(0.1)
