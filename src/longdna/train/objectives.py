"""Language-model objectives as per-sample transforms of token windows.

Both objectives turn a window into ``(inputs, targets)`` where ignored target positions hold
:data:`IGNORE_INDEX`. ``N`` and padding are never targets. Randomness (the MLM mask) is drawn from a generator
seeded by ``(seed, sample index)``, so a sample is the same in any worker, process or resumed run.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from longdna import vocab
from longdna.data.tokens.windows import mix64

IGNORE_INDEX = -100
NOT_TARGETS = (vocab.N, vocab.PAD)
_NOT_TARGETS = torch.tensor(NOT_TARGETS)


def causal_example(window: Tensor) -> tuple[Tensor, Tensor]:
    """Next-token prediction: a window of L+1 tokens gives inputs w[:-1] and targets w[1:] (along the last
    dimension, so a (B, L+1) batch works the same)."""
    targets = window[..., 1:].clone()
    targets[torch.isin(targets, _NOT_TARGETS.to(targets.device))] = IGNORE_INDEX
    return window[..., :-1], targets


def masked_example(window: Tensor, probability: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """BERT masking: each eligible base is selected with ``probability``; selected positions become [MASK]
    (80 %), a random base A/C/G/T (10 %) or stay unchanged (10 %). Only selected positions are targets."""
    eligible = ~torch.isin(window, _NOT_TARGETS)
    selected = (torch.rand(window.shape, generator=generator) < probability) & eligible
    action = torch.rand(window.shape, generator=generator)
    random_bases = torch.randint(vocab.A, vocab.T + 1, window.shape, generator=generator)
    inputs = window.clone()
    inputs[selected & (action < 0.8)] = vocab.MASK
    replace = selected & (action >= 0.8) & (action < 0.9)
    inputs[replace] = random_bases[replace]
    targets = torch.where(selected, window, torch.full_like(window, IGNORE_INDEX))
    return inputs, targets


class LMExamples(Dataset):
    """(inputs, targets) pairs for ``objective`` (``causal`` or ``masked``) over a window dataset.

    For ``causal`` the window dataset must yield L+1 tokens per item.
    """

    def __init__(self, windows: Dataset, objective: str, seed: int = 0, mask_probability: float = 0.15) -> None:
        if objective not in ("causal", "masked"):
            raise ValueError(f"objective must be 'causal' or 'masked', not {objective!r}")
        self.windows = windows
        self.objective = objective
        self.seed = seed
        self.mask_probability = mask_probability

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        window = self.windows[index]
        if self.objective == "causal":
            return causal_example(window)
        generator = torch.Generator().manual_seed(mix64(self.seed, index, 0x4D4C4D) & (2**63 - 1))
        return masked_example(window, self.mask_probability, generator)


def token_loss_sum(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over target positions (float32) and the number of target positions."""
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss, (targets != IGNORE_INDEX).sum()


#: converts a loss in nats to bits (per base, for single-nucleotide tokens)
BITS_PER_NAT = 1 / math.log(2)
