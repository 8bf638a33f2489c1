"""Variant effect prediction on reference/alternative pairs (the benchmark format's variant columns).

Two scores per variant, both from a frozen pretrained backbone and both averaged over the two strands:

**Embedding probe** (the Genomics Long-Range Benchmark's protocol, with Caduceus' feature): the hidden states
of the reference and the alternative sequence are averaged over a ``window`` (1,536 bp by default) centred on
the variant -- through ``pooled_features``, so an RC-equivariant Caduceus-PS averages its two strand halves --,
and the feature is their difference, alt - ref, averaged over the forward strand and the reverse complement
(where the variant sits at ``length - 1 - position``). A logistic regression on the standardised feature is
fitted on the training split for each L2 strength of ``l2_grid``; the strength with the best validation
metric (validation carved from train with the run's seed, stratified, as fine-tuning does) is kept and the
test split predicted once. The classifier is plain PyTorch (L-BFGS, float64), so scikit-learn stays a test
dependency.

**Zero-shot log-likelihood ratio** from the LM head, no training: for causal models the log-likelihood of
the whole alternative sequence minus that of the reference (sum of log p(x_t | x_<t)); for masked models the
masked marginal, log p(alt) - log p(ref) at the variant position with that position masked in the reference.
The score ranked against the labels is ``-LLR``: an allele the model finds unlikely is scored as more likely
to have an effect (pathogenic, causal). Reported as ``zero_shot_auroc`` and ``zero_shot_auprc``.

:func:`variant_scores` is also what scores a VCF (:mod:`longdna.eval.variant_scoring`), whose indels and
multi-base substitutions give equal-length windows that differ over a ``span`` of positions from the variant:
the masked marginal then masks those positions in each window and compares the sums of their log-probabilities
(a span of 1, the benchmarks' SNVs, is the masked marginal above).

A run writes the fine-tuning run layout (``metrics.json``, ``predictions.parquet`` with an extra
``zero_shot_score`` column, ``history.csv`` with one row per L2 strength) plus the probe
(``model.safetensors``, ``model.json``), so the evaluate stage aggregates it like any run and the length
extrapolation can re-apply it at other lengths.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from longdna import vocab
from longdna.data.benchmarks.format import is_variant_benchmark, read_benchmark
from longdna.data.benchmarks.splits import train_valid_split
from longdna.eval.inference import autocast, embed, encode_batch, inference_device, window_mask
from longdna.eval.metrics import auprc, auroc, compute_metrics
from longdna.fingerprint import finetune_fingerprint
from longdna.io import atomic_path, read_json, write_json
from longdna.models import DNALanguageModel, load_pretrained
from longdna.settings import FinetuneConfig, VariantEffectConfig
from longdna.train.finetuned import MODEL_FILE, MODEL_INFO_FILE


# -- scoring ---------------------------------------------------------------------------------------------------
def _wide(x: Tensor) -> Tensor:
    """x in float32 at least (bf16 activations under autocast; float64 models stay float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def token_log_probs(backbone: DNALanguageModel, hidden: Tensor, input_ids: Tensor) -> Tensor:
    """log p(input_ids) under the LM head at each position of ``hidden``: (B, L). The token's logit minus the
    log-sum-exp of all 12: on a CPU several times faster than a log_softmax over the 12, for the same values."""
    logits = _wide(backbone.lm_logits(hidden))
    return logits.gather(-1, input_ids[..., None]).squeeze(-1) - logits.logsumexp(-1)


def sequence_log_likelihood(backbone: DNALanguageModel, hidden: Tensor, input_ids: Tensor) -> Tensor:
    """sum_t log p(x_t | x_<t) of each row under a causal model: (B,), summed in float64 -- the LLR is the
    difference of two such sums, about -1.4 L each: in float32 a 131 kbp window would round it to 0.016."""
    return token_log_probs(backbone, hidden[:, :-1], input_ids[:, 1:]).sum(-1, dtype=torch.float64)


def masked_marginal(
    backbone: DNALanguageModel, ref_ids: Tensor, alt_ids: Tensor, starts: Tensor, spans: Tensor, chunk_size: int | None
) -> Tensor:
    """sum log p(alt) - sum log p(ref) over positions ``[start, start + span)`` of each row, those positions
    masked in each sequence: (B,). For a span of 1 both masked inputs are the same and one pass serves both."""
    positions = torch.arange(ref_ids.shape[1], device=ref_ids.device)
    masked = (positions >= starts[:, None]) & (positions < (starts + spans)[:, None])  # (B, L)
    masked_ref, masked_alt = ref_ids.masked_fill(masked, vocab.MASK), alt_ids.masked_fill(masked, vocab.MASK)

    def span_log_likelihood(hidden: Tensor, ids: Tensor, where: Tensor) -> Tensor:
        return token_log_probs(backbone, hidden, ids).masked_fill(~where, 0.0).sum(-1, dtype=torch.float64)

    hidden = embed(backbone, masked_ref, chunk_size)
    log_p_ref = span_log_likelihood(hidden, ref_ids, masked)
    log_p_alt = span_log_likelihood(hidden, alt_ids, masked)  # right wherever the masked inputs agree
    differ = (masked_ref != masked_alt).any(1).nonzero().squeeze(1)  # indels: the windows differ beyond the span
    if differ.numel():
        log_p_alt[differ] = span_log_likelihood(
            embed(backbone, masked_alt[differ], chunk_size), alt_ids[differ], masked[differ]
        )
    return log_p_alt - log_p_ref


@torch.no_grad()
def variant_scores(
    backbone: DNALanguageModel,
    ref_ids: Tensor,
    alt_ids: Tensor,
    positions: Tensor,
    window: int,
    chunk_size: int | None = None,
    zero_shot: bool = True,
    spans: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """(alt - ref window-mean embedding (B, feature_size), LLR (B,) or None), both averaged over the strands.

    ``ref_ids``/``alt_ids``: (B, L) token ids of equal length, differing from ``positions`` (B,) on; ``spans``
    (B,) is how many positions from there the masked marginal compares (default 1: an SNV).
    """
    length = ref_ids.shape[1]
    if spans is None:
        spans = torch.ones_like(positions)
    # on the reverse strand the variant's first base is at length - 1 - position, and its span ends there
    strands = (
        (ref_ids, alt_ids, positions, positions),
        (
            vocab.reverse_complement(ref_ids),
            vocab.reverse_complement(alt_ids),
            length - 1 - positions,
            length - positions - spans,
        ),
    )
    difference, llr = 0.0, 0.0
    for ref, alt, centre, start in strands:
        mask = window_mask(length, centre, window)
        hidden_ref, hidden_alt = embed(backbone, ref, chunk_size), embed(backbone, alt, chunk_size)
        difference = difference + (
            _wide(backbone.pooled_features(hidden_alt, mask, "mean"))
            - _wide(backbone.pooled_features(hidden_ref, mask, "mean"))
        )
        if zero_shot and backbone.causal:
            llr = llr + (
                sequence_log_likelihood(backbone, hidden_alt, alt) - sequence_log_likelihood(backbone, hidden_ref, ref)
            )
        elif zero_shot:
            llr = llr + masked_marginal(backbone, ref, alt, start, spans, chunk_size)
    return difference / 2, (llr / 2 if zero_shot else None)


def score_rows(
    backbone: DNALanguageModel,
    frame: pd.DataFrame,
    config: VariantEffectConfig,
    device: torch.device,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`variant_scores` of every row of a variant benchmark frame, in batches: (N, F) and (N,) or None."""
    features, llrs = [], []
    for begin in range(0, len(frame), config.batch_size):
        batch = frame.iloc[begin : begin + config.batch_size]
        ref = encode_batch(batch["sequence"].tolist(), device)
        alt = encode_batch(batch["alt_sequence"].tolist(), device)
        positions = torch.tensor(batch["variant_position"].to_numpy(dtype=np.int64), device=device)
        with autocast(config.precision, device):
            feature, llr = variant_scores(
                backbone, ref, alt, positions, config.window, config.chunk_size, config.zero_shot
            )
        features.append(feature.double().cpu().numpy())
        if llr is not None:
            llrs.append(llr.double().cpu().numpy())
        if progress:
            print(f"scored {begin + len(batch)}/{len(frame)} variants", file=sys.stderr, flush=True)
    return np.concatenate(features), (np.concatenate(llrs) if llrs else None)


# -- the probe ---------------------------------------------------------------------------------------------------
@dataclass
class LogisticProbe:
    """p(label 1) = sigmoid(w . (x - mean) / scale + b)."""

    weight: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, 2) class probabilities."""
        logits = ((features - self.mean) / self.scale) @ self.weight + self.bias
        p = 1.0 / (1.0 + np.exp(-logits))
        return np.stack([1.0 - p, p], axis=1)

    def save(self, path: Path) -> None:
        tensors = {"weight": self.weight, "bias": np.array([self.bias]), "mean": self.mean, "scale": self.scale}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in tensors.items()}, str(tmp))

    @classmethod
    def load(cls, path: Path) -> "LogisticProbe":
        t = {k: v.numpy() for k, v in load_file(str(path)).items()}
        return cls(t["weight"], float(t["bias"][0]), t["mean"], t["scale"])


def fit_probe(features: np.ndarray, labels: np.ndarray, l2: float) -> tuple[LogisticProbe, float]:
    """L2-regularised logistic regression on standardised features (full-batch L-BFGS, float64); returns the
    probe and its final training loss (mean cross-entropy)."""
    mean, scale = features.mean(0), features.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    x = torch.from_numpy((features - mean) / scale)
    y = torch.from_numpy(labels.astype(np.float64))
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=1000, tolerance_grad=1e-10, tolerance_change=0.0, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        loss = float(F.binary_cross_entropy_with_logits(x @ weight + bias, y))
    return LogisticProbe(weight.detach().numpy(), float(bias.detach()), mean, scale), loss


def zero_shot_metrics(labels: np.ndarray, llr: np.ndarray) -> dict[str, float]:
    return {"zero_shot_auroc": auroc(labels, -llr), "zero_shot_auprc": auprc(labels, -llr)}


# -- the run -----------------------------------------------------------------------------------------------------
def variant_effect(
    benchmark_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    backbone_dir: str | os.PathLike,
    config: VariantEffectConfig,
    seed: int,
    run_name: dict[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a variant benchmark with the frozen backbone of ``backbone_dir``; writes the run into ``out_dir``."""
    out_dir = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    frame, info = read_benchmark(benchmark_dir)
    if not is_variant_benchmark(frame) or info.task != "classification" or info.num_outputs != 2:
        raise ValueError(
            f"{benchmark_dir}: variant-effect scoring needs a binary benchmark with alt_sequence and"
            " variant_position columns"
        )
    split = train_valid_split(frame, info, FinetuneConfig(valid_fraction=config.valid_fraction), seed).to_numpy()
    labels = frame["label"].to_numpy(dtype=np.int64)
    rows = {name: np.flatnonzero(split == name) for name in ("train", "valid", "test")}
    if config.max_train is not None and rows["train"].size > config.max_train:
        rng = np.random.default_rng([seed, 0x7EA1])
        share = config.max_train / rows["train"].size
        rows["train"] = np.sort(
            np.concatenate(
                [  # stratified: each class keeps its share
                    rng.permutation(r)[: max(1, round(share * r.size))]
                    for r in (rows["train"][labels[rows["train"]] == k] for k in (0, 1))
                ]
            )
        )
    device = inference_device()
    backbone = load_pretrained(backbone_dir).to(device).eval()
    fingerprint = finetune_fingerprint(
        benchmark_dir, asdict(config), seed, backbone.arch, asdict(backbone.config), backbone_dir
    ).to_dict()
    scored = np.concatenate(list(rows.values()))
    features, llr = score_rows(backbone, frame.iloc[scored], config, device, progress)
    position = {
        name: slice(start, start + rows[name].size)
        for name, start in zip(rows, np.cumsum([0] + [r.size for r in rows.values()])[:-1])
    }
    x = {name: features[position[name]] for name in rows}
    y = {name: labels[rows[name]] for name in rows}

    selection = info.metric
    history, best = [], None
    for l2 in config.l2_grid:
        probe, loss = fit_probe(x["train"], y["train"], l2)
        valid = compute_metrics("classification", y["valid"], probe.probabilities(x["valid"]), 2)
        history.append({"l2": l2, "train_loss": loss, **{f"valid_{k}": v for k, v in valid.items()}})
        if best is None or valid[selection] > best[1]:
            best = (probe, valid[selection], l2)
    probe, _, l2 = best
    results, predictions = {}, []
    for name in ("valid", "test"):
        probabilities = probe.probabilities(x[name])
        results[name] = compute_metrics("classification", y[name], probabilities, 2)
        zero_shot = -llr[position[name]] if llr is not None else np.full(rows[name].size, np.nan)
        if llr is not None:
            results[name].update(zero_shot_metrics(y[name], llr[position[name]]))
        predictions.append(
            pd.DataFrame(
                {
                    "split": name,
                    "row": rows[name],
                    "label": y[name],
                    "prediction": probabilities.argmax(1),
                    "scores": list(probabilities),
                    "zero_shot_score": zero_shot,
                }
            )
        )
    summary = {
        **(run_name or {}),
        "seed": seed,
        "suite": info.suite,
        "task": info.task,
        "num_outputs": info.num_outputs,
        "metric": info.metric,
        "protocol": "variant_effect",
        "selection_metric": selection,
        "l2": l2,
        "n_train": int(rows["train"].size),
        "num_parameters": backbone.num_parameters(),
        "metrics": results,
        "config": asdict(config),
        "fingerprint": fingerprint,
    }
    probe.save(out_dir / MODEL_FILE)
    write_json(
        out_dir / MODEL_INFO_FILE,
        {
            "kind": "variant_effect",
            "backbone_dir": str(backbone_dir),
            "train_length": int(frame["sequence"].str.len().max()),
            "config": asdict(config),
            "fingerprint": fingerprint,
        },
    )
    with atomic_path(out_dir / "predictions.parquet", suffix=".parquet") as tmp:
        pd.concat(predictions, ignore_index=True).to_parquet(tmp, index=False)
    with atomic_path(out_dir / "history.csv", suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    write_json(out_dir / "metrics.json", summary)
    return summary


def load_probe(run_dir: str | os.PathLike) -> tuple[LogisticProbe, dict[str, Any]]:
    """The probe of a variant-effect run and its ``model.json``."""
    return LogisticProbe.load(Path(run_dir) / MODEL_FILE), read_json(Path(run_dir) / MODEL_INFO_FILE)
