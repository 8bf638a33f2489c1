"""Zero-shot length extrapolation of fine-tuned models: the test split re-cut at multiples of the training length.

A benchmark with locus columns (``longdna.data.benchmarks.format``) can be cut again around the same cores at any
length: the Genomics Long-Range Benchmark from its coordinates, the demo tasks from their loci and implanted
cores. :func:`evaluate_extrapolation` takes one saved run -- a fine-tuned classifier (``save_model``) or a
variant-effect probe -- and scores its benchmark's test examples at ``multiple x`` the length it was trained
on, with no further training; the Transformer (any backbone with ``rope_scaling``) is also scored with
position interpolation, ``rope_scaling = multiple`` times its own, so that the positions it sees stay in its
training range.

What the head reads at a longer length (``pooling``):

``window`` (default)
    the classifier pools over the central ``train_length`` positions, the very bases it was trained on,
    whose hidden states are now computed with the longer context around them. A change of the metric is
    then the effect of the extra context on the representation, not the dilution of a mean over more
    positions (which would hurt every model alike).
``full``
    the classifier pools over the whole input, as it would if simply fed the longer sequence.

Variant-effect probes always pool their window around the variant (their protocol), so ``pooling`` does not
apply to them; their zero-shot LLR is re-scored too.

Long inputs run in batches of at most ``tokens_per_batch`` tokens (at least one sequence), and recurrent
backbones in chunks of ``chunk_size`` positions (exact chunked inference, bounded memory).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from longdna import vocab
from longdna.data.benchmarks.format import is_resizable, read_benchmark, resize_examples
from longdna.eval.inference import autocast, embed, encode_batch, inference_device
from longdna.eval.metrics import compute_metrics
from longdna.eval.variant_effect import load_probe, score_rows, zero_shot_metrics
from longdna.io import atomic_path, read_json
from longdna.models import SequenceClassifier, load_pretrained
from longdna.settings import ExtrapolationConfig, VariantEffectConfig
from longdna.train.finetuned import MODEL_INFO_FILE, load_finetuned, to_outputs

COLUMNS = ["benchmark", "model", "seed", "arch", "multiple", "length", "interpolation", "metric", "value", "n_examples"]


def test_examples(frame: pd.DataFrame, task: str, max_examples: int | None) -> pd.DataFrame:
    """The test split, or a subsample of ``max_examples`` (stratified by class for classification) drawn with
    a fixed seed, so every model and length is scored on the same examples."""
    test = frame.loc[frame["split"] == "test"]
    if max_examples is None or len(test) <= max_examples:
        return test
    rng = np.random.default_rng(0)
    if task != "classification":
        return test.iloc[np.sort(rng.choice(len(test), max_examples, replace=False))]
    share = max_examples / len(test)
    labels = test["label"].to_numpy()
    keep = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == k))[: max(1, round(share * (labels == k).sum()))]
            for k in np.unique(labels)
        ]
    )
    return test.iloc[np.sort(keep)]


@torch.no_grad()
def classifier_scores(
    model: SequenceClassifier, input_ids: Tensor, pool_mask: Tensor, chunk_size: int | None
) -> Tensor:
    """The classifier's scores with the backbone run over the whole input (chunked if asked) and pooling over
    ``pool_mask`` only; RC conjoining reverse-complements the whole input and mirrors the mask.

    ``SequenceClassifier.forward`` cannot do this: its mask also marks what is padding, and its RC pass
    reverse-complements only the masked positions.
    """

    def scores(ids: Tensor, mask: Tensor) -> Tensor:
        hidden = embed(model.backbone, ids, chunk_size)
        return model.score(model.backbone.pooled_features(hidden, mask, model.pooling, model.segments))

    out = scores(input_ids, pool_mask)
    if model.rc_conjoin:
        out = (out + scores(vocab.reverse_complement(input_ids), pool_mask.flip(1))) / 2
    return out


def _pool_mask(frame: pd.DataFrame, length: int, train_length: int, pooling: str, device: torch.device) -> Tensor:
    """(B, length) positions pooled: everything (``full``) or where the training window's bases lie."""
    if pooling == "full" or length <= train_length:
        return torch.ones(len(frame), length, dtype=torch.bool, device=device)
    forward_first = length // 2 - train_length // 2  # the core's midpoint stays at index length // 2
    first = np.where(frame["strand"] == "-", length - forward_first - train_length, forward_first)
    first = torch.as_tensor(first, device=device)[:, None]
    positions = torch.arange(length, device=device)
    return (positions >= first) & (positions < first + train_length)


def _classifier_metrics(
    run_dir: Path,
    meta: dict[str, Any],
    test: pd.DataFrame,
    fasta: str | os.PathLike,
    length: int,
    overrides: dict[str, Any],
    config: ExtrapolationConfig,
    device: torch.device,
) -> dict[str, float]:
    model, _ = load_finetuned(run_dir, **overrides)
    model.to(device)
    batch = max(1, config.tokens_per_batch // length)
    outputs = []
    for begin in range(0, len(test), batch):
        rows = resize_examples(test.iloc[begin : begin + batch], fasta, length)
        ids = encode_batch(rows["sequence"].tolist(), device)
        mask = _pool_mask(rows, length, meta["train_length"], config.pooling, device)
        with autocast(config.precision, device):
            scores = classifier_scores(model, ids, mask, config.chunk_size)
            outputs.append(to_outputs(meta["task"], scores).cpu().numpy())
    scores = np.concatenate(outputs).astype(np.float64)
    if meta["task"] == "regression":
        scores = scores * np.asarray(meta["target_scale"]) + np.asarray(meta["target_shift"])
    return compute_metrics(meta["task"], test["label"].to_numpy(), scores, meta["num_outputs"])


def _variant_metrics(
    run_dir: Path,
    test: pd.DataFrame,
    fasta: str | os.PathLike,
    length: int,
    overrides: dict[str, Any],
    config: ExtrapolationConfig,
    device: torch.device,
) -> dict[str, float]:
    probe, meta = load_probe(run_dir)
    settings = VariantEffectConfig.from_dict(
        {
            **meta["config"],
            "chunk_size": config.chunk_size,
            "precision": config.precision,
            "batch_size": max(1, config.tokens_per_batch // (4 * length)),
        }
    )
    backbone = load_pretrained(meta["backbone_dir"], **overrides).to(device).eval()
    features, llr = score_rows(backbone, resize_examples(test, fasta, length), settings, device)
    labels = test["label"].to_numpy()
    metrics = compute_metrics("classification", labels, probe.probabilities(features), 2)
    return {**metrics, **(zero_shot_metrics(labels, llr) if llr is not None else {})}


def evaluate_extrapolation(
    run_dir: str | os.PathLike,
    benchmark_dir: str | os.PathLike,
    genome_fasta: str | os.PathLike,
    config: ExtrapolationConfig,
    out_csv: str | os.PathLike,
    run_name: dict[str, Any],
    progress: bool = True,
) -> pd.DataFrame:
    """Score one saved run at every multiple of its training length; writes and returns the long table
    (``benchmark, model, seed, arch, multiple, length, interpolation, metric, value, n_examples``)."""
    run_dir = Path(run_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    frame, info = read_benchmark(benchmark_dir)
    if not is_resizable(frame):
        raise ValueError(f"{benchmark_dir}: no locus columns, so its examples cannot be re-cut at other lengths")
    meta = read_json(run_dir / MODEL_INFO_FILE)
    test = test_examples(frame, info.task, config.max_examples)
    device = inference_device()
    if meta["kind"] == "classifier":
        arch, backbone_config = meta["arch"], meta["backbone_config"]
    else:
        backbone_meta = read_json(Path(meta["backbone_dir"]) / "config.json")
        arch, backbone_config = backbone_meta["arch"], backbone_meta["config"]
    rows = []
    for multiple in config.multiples:
        length = int(round(multiple * meta["train_length"]))
        variants = [("none", {})]
        if config.position_interpolation and "rope_scaling" in backbone_config and multiple != 1:
            variants.append(("position", {"rope_scaling": backbone_config["rope_scaling"] * multiple}))
        for interpolation, overrides in variants:
            if meta["kind"] == "classifier":
                metrics = _classifier_metrics(run_dir, meta, test, genome_fasta, length, overrides, config, device)
            else:
                metrics = _variant_metrics(run_dir, test, genome_fasta, length, overrides, config, device)
            rows += [
                {
                    **run_name,
                    "arch": arch,
                    "multiple": float(multiple),
                    "length": length,
                    "interpolation": interpolation,
                    "metric": metric,
                    "value": value,
                    "n_examples": len(test),
                }
                for metric, value in metrics.items()
            ]
            if progress:
                print(
                    f"{multiple}x ({length} bp, interpolation {interpolation}): {info.metric}"
                    f" {metrics[info.metric]:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(out_csv, suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    return table
