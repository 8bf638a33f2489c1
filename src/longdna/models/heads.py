"""Sequence-level heads on top of any :class:`~longdna.models.base.DNALanguageModel`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longdna import vocab
from longdna.models.base import POOLINGS, SEGMENTS, DNALanguageModel, pooled_width


def reverse_complement_padded(input_ids: Tensor, mask: Tensor) -> Tensor:
    """Reverse complement each row's real tokens in place, keeping padding where it was.

    With left padding a row ``[PAD PAD a b c]`` becomes ``[PAD PAD rc(c) rc(b) rc(a)]``, so the padding side
    (and hence the meaning of ``last``/``first`` pooling) is unchanged.
    """
    length = input_ids.shape[1]
    positions = torch.arange(length, device=input_ids.device).expand_as(input_ids)
    start = torch.where(mask, positions, length).amin(1, keepdim=True)
    end = torch.where(mask, positions, -1).amax(1, keepdim=True)
    source = torch.where(mask, start + end - positions, positions)
    complement = torch.as_tensor(vocab.COMPLEMENT, device=input_ids.device)[input_ids.gather(1, source)]
    return torch.where(mask, complement, input_ids)


class SequenceClassifier(nn.Module):
    """Backbone -> pooling (``mean``, ``max``, ``last``, ``first`` or ``segments``) -> dropout -> linear scores.

    ``num_outputs`` is the number of classes (or 1 for regression, k for k-label tasks). With
    ``freeze_backbone`` only the linear head trains (a linear probe). With ``rc_conjoin`` the scores are
    averaged over the sequence and its reverse complement, which makes the classifier reverse-complement
    invariant: in training and inference, or with ``conjoin_in_training=False`` in inference (eval mode) only,
    Caduceus-PH's post-hoc conjoining (train on one strand per example, with reverse-complement augmentation,
    at half the cost; score both).
    """

    def __init__(
        self,
        backbone: DNALanguageModel,
        num_outputs: int,
        pooling: str = "mean",
        dropout: float = 0.0,
        freeze_backbone: bool = False,
        rc_conjoin: bool = False,
        segments: int = SEGMENTS,
        conjoin_in_training: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.segments = segments
        self.rc_conjoin = rc_conjoin
        self.conjoin_in_training = conjoin_in_training
        self.freeze_backbone = freeze_backbone
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Linear(self.feature_size, num_outputs)
        if freeze_backbone:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "SequenceClassifier":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # a frozen backbone keeps inference behaviour (no dropout)
        return self

    @property
    def feature_size(self) -> int:
        """Width of :meth:`features`, what the linear head reads."""
        return pooled_width(self.backbone.feature_size, self.pooling, self.segments)

    def features(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        hidden = self.backbone.embed(input_ids)
        return self.backbone.pooled_features(hidden, mask, self.pooling, self.segments)

    def strand_features(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(views, B, feature_size): the sequence's features, and with ``rc_conjoin`` its reverse complement's;
        the scores are the mean of the views' scores."""
        views = [self.features(input_ids, mask)]
        if self.rc_conjoin and (self.conjoin_in_training or not self.training):
            if mask is None:
                mask = torch.ones_like(input_ids, dtype=torch.bool)
            views.append(self.features(reverse_complement_padded(input_ids, mask), mask))
        return torch.stack(views)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.score(self.dropout(self.strand_features(input_ids, mask))).mean(0)
