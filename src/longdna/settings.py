"""The typed settings of every stage, with their defaults and checks, in one module without torch.

One dataclass per engine: :class:`PretrainConfig` (the ``pretrain`` settings), :class:`FinetuneConfig`
(``finetune.settings`` and its layers), :class:`VariantEffectConfig` (a variant benchmark's
``variant_effect``), :class:`ExtrapolationConfig` (``extrapolation``), :class:`VariantScoringConfig`
(``variants.settings``) and :class:`EmbeddingConfig` (``longdna embed``). ``from_dict`` builds one from the
resolved workflow settings (:mod:`longdna.config`) and names unknown keys; every class checks its values in
``__post_init__``, so one built directly (by the CLI, a test, ``dataclasses.replace``) is checked the same way.

Standard library only (and the model package's tables): the Snakefile checks the settings and derives job
resources (:mod:`longdna.resources`) from these classes where neither torch nor NumPy is installed.
``config/README.md`` documents every field (``tests/test_settings.py``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from longdna.models.catalog import POOLINGS, SEGMENTS

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16")


def config_from_dict(config_class: type[T], values: dict[str, Any], *, where: str) -> T:
    """Instantiate a config dataclass, naming unknown keys and the valid ones instead of a bare TypeError."""
    names = {f.name for f in dataclasses.fields(config_class)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown config key(s) {unknown}; valid keys are {sorted(names)}")
    return config_class(**values)


class _Settings:
    """What every settings class shares: the name its messages start with (``WHERE``), the values each choice
    field takes (``CHOICES``, checked on construction) and ``from_dict``."""

    WHERE: ClassVar[str]
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{self.WHERE}: {name} must be one of {allowed}, not {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        return config_from_dict(cls, values, where=cls.WHERE)  # type: ignore[attr-defined]


@dataclass
class PretrainConfig(_Settings):
    """The ``pretrain`` settings of the workflow config (``workflow/schemas``); lengths are in tokens (bases)."""

    seq_len: int = 1024
    batch_size: int = 16  # global sequences per optimiser step at seq_len: batch_size * seq_len tokens per step
    micro_batch_size: int | None = None  # sequences per forward per process at seq_len (None: no accumulation)
    max_steps: int = 1000
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping (the norm is still logged)
    objective: str = "auto"  # causal | masked | auto (the model's: causal models next-token, others MLM)
    mask_probability: float = 0.15
    rc_probability: float = 0.0
    max_n_fraction: float = 0.1
    seq_len_warmup: dict[str, int] | None = None  # {start_length, steps_per_stage}: HyenaDNA-style doubling
    eval_every: int = 100
    eval_windows: int = 32
    eval_lengths: list[int] = field(default_factory=list)  # test-split perplexity per context length at the end
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    export: str = "final"  # weights written as the stage output: final | best (lowest validation loss)
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False
    activation_checkpointing: bool = False
    gpu_memory_gb: float | None = None  # memory budget per process; None: the CUDA device's (no check on CPU)
    num_workers: int = 0
    threads: int | None = None

    @property
    def tokens_per_step(self) -> int:
        """The global batch in tokens, the same in every stage of the sequence-length warm-up."""
        return self.batch_size * self.seq_len

    WHERE: ClassVar[str] = "pretrain config"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "export": ("final", "best"),
        "precision": PRECISIONS,
        "objective": ("auto", "causal", "masked"),
    }

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # YAML gives a list
        super().__post_init__()
        for name in (
            "seq_len",
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_windows",
            "log_every",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"pretrain.{name} must be at least 1, not {getattr(self, name)}")
        if self.micro_batch_size is not None and not 1 <= self.micro_batch_size <= self.batch_size:
            raise ValueError(f"pretrain.micro_batch_size must be in [1, batch_size={self.batch_size}]")
        if not 0 <= self.rc_probability <= 1 or not 0 < self.mask_probability < 1:
            raise ValueError("pretrain.rc_probability must be in [0, 1] and mask_probability in (0, 1)")
        self._check_seq_len_warmup()

    def _check_seq_len_warmup(self) -> None:
        """Doubling from ``start_length`` lands on seq_len (and keeps tokens per step exact) only from
        seq_len / 2^k (the schedule itself: :func:`longdna.train.schedule.length_schedule`)."""
        warmup = self.seq_len_warmup
        if not warmup:
            return
        if set(warmup) != {"start_length", "steps_per_stage"}:
            raise ValueError(
                f"pretrain.seq_len_warmup needs exactly start_length and steps_per_stage, not {sorted(warmup)}"
            )
        length, per_stage = int(warmup["start_length"]), int(warmup["steps_per_stage"])
        factor = self.seq_len // length if length > 0 else 0
        if factor < 1 or self.seq_len % length or factor & (factor - 1) or per_stage < 1:
            raise ValueError(
                f"pretrain.seq_len_warmup: start_length ({length}) must be seq_len ({self.seq_len}) divided by a"
                f" power of two, and steps_per_stage ({per_stage}) at least 1"
            )


@dataclass
class FinetuneConfig(_Settings):
    """The fine-tuning settings of one run, layered as ``finetune.settings`` < ``benchmarks.<b>.finetune`` <
    ``finetune.models.<m>.settings`` (:func:`longdna.config.finetune_settings`)."""

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    pooling: str = "mean"  # one of POOLINGS; segments, mean_segments: position-aware (longdna.models.base.pool)
    pool_segments: int = SEGMENTS  # number of segments of ``segments`` and ``mean_segments`` pooling
    head_dropout: float = 0.0
    freeze_backbone: bool = False  # linear probe
    head_init: str = "random"  # random | probe (LP-FT: fit the head on frozen features, then fine-tune)
    probe_l2: float = 1e-3  # L2 penalty on the head's weights when head_init is probe
    init: str = "pretrained"  # pretrained | scratch (same architecture, random weights)
    adapt_epochs: int = 0  # language-model epochs on the training sequences before the head (Finetuner.adapt)
    adapt_lr: float | None = None  # learning rate of those epochs; None: lr
    mask_probability: float = 0.15  # masked-LM selection rate of adapt epochs for bidirectional backbones
    backbone_overrides: dict[str, Any] | None = None  # e.g. dropout settings for fine-tuning
    rc_augment: float = 0.0  # probability of reverse-complementing a training sequence
    rc_conjoin: bool = False  # average scores over both strands (train and test; see rc_conjoin_train)
    rc_conjoin_train: bool = True  # false: rc_conjoin at inference only (Caduceus-PH's post-hoc conjoining)
    valid_fraction: float = 0.1
    kfold: int | None = None  # k-fold: the seed picks the validation fold of train
    early_stopping_patience: int | None = None
    max_steps: int | None = None  # at most this many optimizer steps in each training phase (adapt, finetune)
    max_tokens: int | None = None  # at most the steps that see this many training bases in each phase
    selection_metric: str | None = None  # default: the benchmark's reported metric
    max_length: int | None = None
    keep: str = "center"  # start | end | center
    padding_side: str = "auto"  # auto | left | right
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    threads: int | None = None
    save_model: bool = False  # write the fine-tuned classifier (model.safetensors, model.json) into the run

    WHERE: ClassVar[str] = "finetune settings"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "pooling": POOLINGS,
        "init": ("pretrained", "scratch"),
        "head_init": ("random", "probe"),
        "keep": ("start", "end", "center"),
        "padding_side": ("auto", "left", "right"),
        "precision": PRECISIONS,
    }

    def phase_steps(self, epochs: int, rows: int, mean_length: float) -> int:
        """Optimizer steps of a training phase (adapt or fine-tuning) of ``epochs`` over ``rows`` training
        sequences of ``mean_length`` bases, capped at ``max_steps`` and at the steps that see ``max_tokens``
        bases. Compute per step grows with sequence length: a base cap gives a phase about the same cost on
        500 bp sequences as on 100 bp ones, where a step cap gives it five times as much."""
        caps = [epochs * math.ceil(rows / self.batch_size)]
        if self.max_steps:
            caps.append(self.max_steps)
        if self.max_tokens:
            caps.append(max(1, math.floor(self.max_tokens / (self.batch_size * mean_length))))
        return min(caps)


@dataclass
class VariantEffectConfig(_Settings):
    """A variant benchmark's ``variant_effect`` settings (:mod:`longdna.eval.variant_effect`)."""

    window: int = 1536  # bp centred on the variant averaged into the embedding
    batch_size: int = 8  # variants per forward pass (each is 4 sequences: ref/alt x both strands)
    l2_grid: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    valid_fraction: float = 0.1
    max_train: int | None = None  # stratified subsample of the training split (embedding long inputs is costly)
    zero_shot: bool = True
    chunk_size: int | None = None  # run recurrent backbones in chunks of this many positions (long inputs)
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    threads: int | None = None

    WHERE: ClassVar[str] = "variant_effect settings"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"precision": PRECISIONS}


#: how :mod:`longdna.eval.extrapolation` pools a longer input (see its docstring)
EXTRAPOLATION_POOLINGS = ("window", "full")


@dataclass
class ExtrapolationConfig(_Settings):
    """The ``extrapolation`` settings (:mod:`longdna.eval.extrapolation`)."""

    multiples: list[float] = field(default_factory=lambda: [1, 2, 4, 8, 10])
    position_interpolation: bool = True  # also score rope_scaling backbones with positions divided by the multiple
    pooling: str = "window"  # window | full (see longdna.eval.extrapolation)
    max_examples: int | None = None  # stratified subsample of the test split, the same for every model and length
    tokens_per_batch: int = 65536
    chunk_size: int | None = None
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    threads: int | None = None

    WHERE: ClassVar[str] = "extrapolation settings"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"pooling": EXTRAPOLATION_POOLINGS, "precision": PRECISIONS}


#: what scoring a VCF does with a record whose REF disagrees with the genome
ON_REF_MISMATCH = ("error", "flag")


@dataclass
class VariantScoringConfig(_Settings):
    """The ``variants.settings`` of VCF scoring (:mod:`longdna.eval.variant_scoring`, ``longdna score``)."""

    window: int | None = None  # bp of each window; None: the model's pretraining seq_len
    embedding_window: int | None = None  # bp centred on the variant averaged into LDNA_EMB; None: the window
    batch_size: int = 16  # ALT alleles per forward pass (each is 4 sequences: ref/alt x both strands)
    on_ref_mismatch: str = "error"  # error | flag
    chunk_size: int | None = None  # run recurrent backbones in chunks of this many positions (long windows)
    # fp32 by default: the LLR is the difference of two sums over the window, which bf16 activations (3
    # significant digits per token's log-probability) would drown in rounding noise
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 on CUDA)
    threads: int | None = None

    WHERE: ClassVar[str] = "variant scoring settings"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"on_ref_mismatch": ON_REF_MISMATCH, "precision": PRECISIONS}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window is not None and self.window < 2:
            raise ValueError(f"variant scoring settings: window must be at least 2 bp, not {self.window}")


@dataclass
class EmbeddingConfig(_Settings):
    """The options of ``longdna embed`` (:mod:`longdna.eval.embeddings`)."""

    pooling: str | None = None  # mean | max | last | first; None: the fine-tuned run's, else mean
    rc_conjoin: bool | None = None  # also embed the reverse complement and average; None: the run's, else no
    max_length: int | None = None  # crop longer records to their centre
    tokens_per_batch: int = 65536  # tokens per forward pass (at least one record)
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    threads: int | None = None

    WHERE: ClassVar[str] = "embedding options"
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"pooling": (None, *POOLINGS), "precision": PRECISIONS}
