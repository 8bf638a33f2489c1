"""Fine-tuning a backbone on one benchmark with one seed: the unit of the finetune stage.

Protocol (the honest one): a validation split is carved from train with the run's seed (stratified for
classes) unless the benchmark ships one, or with ``kfold`` the seed picks the validation fold; the epoch with
the best validation metric is kept; the test split is predicted once, at the end, with that model.

Head initialisation: ``random``, or ``probe`` for LP-FT (Kumar et al., ICLR 2022): the head is first fitted
on the frozen backbone's pooled training features (:func:`fit_head`), then everything is fine-tuned. A random
head's first updates push large, uninformative gradients into the backbone; a fitted one starts fine-tuning
where a linear probe ends, for the price of one forward pass over the training split. The probe's validation
metrics are history's epoch 0; model selection only considers fine-tuned epochs.

Sequence length: a sequence longer than ``max_length`` keeps its ``keep`` part (``start``, ``end`` or
``center``); shorter ones in a batch are padded with ``[PAD]`` on ``padding_side`` (``auto``: left for
causal models, so the last position is a real base, right for bidirectional ones). Pooling ignores padding.
Recurrent and convolutional backbones may run longer than they were pretrained on; nothing is truncated
unless ``max_length`` says so.

With ``save_model`` the run also writes the fine-tuned classifier (``model.safetensors``: backbone and head;
``model.json``: what :func:`load_finetuned` needs to rebuild it), so that it can be evaluated again later, e.g.
on the test split re-cut at other lengths (:mod:`longdna.eval.extrapolation`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor

from longdna import vocab
from longdna.data.benchmarks import BenchmarkInfo, is_variant_benchmark, read_benchmark
from longdna.eval.metrics import compute_metrics
from longdna.io import atomic_path, read_json, write_json
from longdna.models import SequenceClassifier, build_model, load_pretrained, read_checkpoint_config
from longdna.models.base import POOLINGS, config_from_dict
from longdna.train.optim import build_optimizer, warmup_cosine

MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    pooling: str = "mean"  # mean | max | last | first
    head_dropout: float = 0.0
    freeze_backbone: bool = False  # linear probe
    head_init: str = "random"  # random | probe (LP-FT: fit the head on frozen features, then fine-tune)
    probe_l2: float = 1e-3  # L2 penalty on the head's weights when head_init is probe
    init: str = "pretrained"  # pretrained | scratch (same architecture, random weights)
    backbone_overrides: dict[str, Any] | None = None  # e.g. dropout settings for fine-tuning
    rc_augment: float = 0.0  # probability of reverse-complementing a training sequence
    rc_conjoin: bool = False  # average scores over both strands (train and test)
    valid_fraction: float = 0.1
    kfold: int | None = None  # k-fold: the seed picks the validation fold of train
    early_stopping_patience: int | None = None
    selection_metric: str | None = None  # default: the benchmark's reported metric
    max_length: int | None = None
    keep: str = "center"  # start | end | center
    padding_side: str = "auto"  # auto | left | right
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    threads: int | None = None
    save_model: bool = False  # write the fine-tuned classifier (model.safetensors, model.json) into the run

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FinetuneConfig":
        config = config_from_dict(cls, values, where="finetune settings")
        for name, value, allowed in (
            ("pooling", config.pooling, POOLINGS),
            ("init", config.init, ("pretrained", "scratch")),
            ("head_init", config.head_init, ("random", "probe")),
            ("keep", config.keep, ("start", "end", "center")),
            ("padding_side", config.padding_side, ("auto", "left", "right")),
            ("precision", config.precision, ("auto", "fp32", "bf16")),
        ):
            if value not in allowed:
                raise ValueError(f"finetune settings: {name} must be one of {allowed}, not {value!r}")
        return config


# -- data ----------------------------------------------------------------------------------------------------
def crop(ids: np.ndarray, max_length: int | None, keep: str) -> np.ndarray:
    if max_length is None or ids.size <= max_length:
        return ids
    if keep == "start":
        return ids[:max_length]
    if keep == "end":
        return ids[-max_length:]
    offset = (ids.size - max_length) // 2
    return ids[offset : offset + max_length]


def pad_batch(sequences: list[np.ndarray], side: str) -> tuple[Tensor, Tensor]:
    """Stack token arrays into (B, L) ids padded with [PAD], and the (B, L) mask of real positions."""
    length = max(s.size for s in sequences)
    ids = np.full((len(sequences), length), vocab.PAD, dtype=np.int64)
    for row, seq in enumerate(sequences):
        if side == "left":
            ids[row, length - seq.size :] = seq
        else:
            ids[row, : seq.size] = seq
    tensor = torch.from_numpy(ids)
    return tensor, tensor != vocab.PAD


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar lengths (little padding); shuffled order when ``rng`` is given."""
    order = rng.permutation(lengths.size) if rng is not None else np.arange(lengths.size)
    chunk = batch_size * 50
    batches = []
    for start in range(0, order.size, chunk):
        piece = order[start : start + chunk]
        piece = piece[np.argsort(lengths[piece], kind="stable")]
        batches += [piece[i : i + batch_size] for i in range(0, piece.size, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def train_valid_split(frame: pd.DataFrame, info: BenchmarkInfo, config: FinetuneConfig, seed: int) -> pd.Series:
    """The split of every row after carving validation from train (``valid`` rows kept if shipped)."""
    split = frame["split"].copy()
    if (split == "valid").any():
        return split
    train_rows = np.flatnonzero(split.to_numpy() == "train")
    rng = np.random.default_rng([seed, 0x5EED])
    if config.kfold:  # one fixed partition of train; the seed picks the fold
        folds = np.empty(train_rows.size, dtype=np.int64)
        folds[np.random.default_rng(0xF01D).permutation(train_rows.size)] = np.arange(train_rows.size) % config.kfold
        valid_rows = train_rows[folds == seed % config.kfold]
    elif info.task == "classification":  # stratified: every class keeps its share in validation
        labels = frame["label"].to_numpy()[train_rows].astype(np.int64)
        valid_rows = np.concatenate([
            rng.permutation(rows)[: max(1, round(config.valid_fraction * rows.size))]
            for rows in (train_rows[labels == k] for k in np.unique(labels))
        ])
    else:
        valid_rows = rng.permutation(train_rows)[: max(1, round(config.valid_fraction * train_rows.size))]
    split.iloc[valid_rows] = "valid"
    return split


# -- model ---------------------------------------------------------------------------------------------------
def build_classifier(
    info: BenchmarkInfo,
    config: FinetuneConfig,
    backbone_dir: str | os.PathLike | None = None,
    architecture: tuple[str, dict[str, Any]] | None = None,
) -> SequenceClassifier:
    """A head on a pretrained backbone (``backbone_dir``), or on ``architecture`` at random init (scratch)."""
    overrides = config.backbone_overrides or {}
    if config.init == "pretrained":
        if backbone_dir is None:
            raise ValueError("finetune: init 'pretrained' needs the pretrained backbone directory")
        backbone = load_pretrained(backbone_dir, **overrides)
    else:
        if architecture is None:
            if backbone_dir is None:
                raise ValueError("finetune: init 'scratch' needs an architecture or a backbone directory")
            architecture = read_checkpoint_config(backbone_dir)
        arch, values = architecture
        backbone = build_model(arch, **{**values, **overrides})
    backbone.train()
    return SequenceClassifier(
        backbone,
        info.num_outputs,
        pooling=config.pooling,
        dropout=config.head_dropout,
        freeze_backbone=config.freeze_backbone,
        rc_conjoin=config.rc_conjoin,
    )


def task_loss(task: str, scores: Tensor, labels: Tensor) -> Tensor:
    if task == "classification":
        return F.cross_entropy(scores.float(), labels.long())
    if task == "regression":
        return F.mse_loss(scores.float().reshape(labels.shape), labels.float())
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def to_outputs(task: str, scores: Tensor) -> Tensor:
    """Model scores -> what metrics consume: class probabilities, per-label probabilities or values."""
    if task == "classification":
        return scores.float().softmax(-1)
    if task == "multilabel":
        return scores.float().sigmoid()
    return scores.float()


def fit_head(head: torch.nn.Linear, features: Tensor, targets: Tensor, task: str, l2: float,
             max_iter: int = 200) -> float:
    """Fit the linear head on frozen pooled features: full-batch L-BFGS on the task loss plus ``l2`` times
    the squared weights (not the bias), which keeps the scores finite when the classes are separable.
    Returns the task loss of the fitted head.

    ``features`` is (views, N, feature_size), :meth:`SequenceClassifier.strand_features` of the data.
    """
    features, targets = features.to(head.weight.dtype), targets.to(features.device)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def task_loss_of_head() -> Tensor:
        return task_loss(task, head(features).mean(0), targets)  # scores as SequenceClassifier averages them

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = task_loss_of_head() + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return task_loss_of_head().item()


# -- the run -------------------------------------------------------------------------------------------------
def finetune(
    benchmark_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: FinetuneConfig,
    seed: int,
    backbone_dir: str | os.PathLike | None = None,
    architecture: tuple[str, dict[str, Any]] | None = None,
    run_name: dict[str, str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune and evaluate; writes ``predictions.parquet``, ``metrics.json``, ``history.csv`` to out_dir.

    The backbone is the pretrained checkpoint in ``backbone_dir`` or, with ``init: scratch``, a freshly
    initialised ``architecture`` ``(arch, config)``.
    """
    out_dir = Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    frame, info = read_benchmark(benchmark_dir)
    if is_variant_benchmark(frame):
        raise ValueError(f"{benchmark_dir} is a variant-effect benchmark (reference/alternative pairs): score it"
                         " with longdna.eval.variant_effect, not by fine-tuning on the reference sequences")
    split = train_valid_split(frame, info, config, seed).to_numpy()
    torch.manual_seed(seed)
    model = build_classifier(info, config, backbone_dir, architecture)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    side = config.padding_side if config.padding_side != "auto" else ("left" if model.backbone.causal else "right")
    sequences = [crop(vocab.encode(s, where=f"{benchmark_dir}: row {i + 1}"), config.max_length, config.keep)
                 for i, s in enumerate(frame["sequence"])]
    labels = _label_array(frame["label"], info)
    if info.task == "regression":  # train on standardised targets (each output its own); report in original units
        train_targets = labels[split == "train"]
        shift, scale = train_targets.mean(0), train_targets.std(0)
        scale = np.where(scale > 0, scale, 1.0)
    else:
        shift, scale = np.zeros(1), np.ones(1)
    rows = {name: np.flatnonzero(split == name) for name in ("train", "valid", "test")}
    lengths = np.array([s.size for s in sequences])
    eval_batch = config.eval_batch_size or config.batch_size
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if (
        config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    ) else torch.autocast(device_type=device.type, enabled=False)

    def batch_tensors(index: np.ndarray, augment_rng: np.random.Generator | None) -> tuple[Tensor, Tensor]:
        batch = [sequences[i] for i in index]
        if augment_rng is not None and config.rc_augment > 0:
            flips = augment_rng.random(len(batch)) < config.rc_augment
            batch = [vocab.reverse_complement(s) if f else s for s, f in zip(batch, flips)]
        ids, mask = pad_batch(batch, side)
        return ids.to(device), mask.to(device)

    @torch.no_grad()
    def predict(index: np.ndarray) -> np.ndarray:
        model.eval()
        outputs = np.empty((index.size, info.num_outputs), dtype=np.float64)
        for batch in length_bucketed_batches(lengths[index], eval_batch, None):
            ids, mask = batch_tensors(index[batch], None)
            with autocast:
                scores = model(ids, mask)
            outputs[batch] = to_outputs(info.task, scores).cpu().numpy().reshape(len(batch), -1)
        if info.task == "regression":
            outputs = outputs * scale + shift
        return outputs

    def evaluate(name: str) -> dict[str, float]:
        return compute_metrics(info.task, labels[rows[name]], predict(rows[name]), info.num_outputs)

    def training_targets(index: np.ndarray) -> Tensor:
        return torch.as_tensor((labels[index] - shift) / scale if info.task == "regression" else labels[index],
                               device=device)

    @torch.no_grad()
    def frozen_features(index: np.ndarray) -> Tensor:
        """(views, N, feature_size) pooled features of the backbone in eval mode, in ``index`` order."""
        model.eval()
        views = torch.empty((2 if model.rc_conjoin else 1, index.size, model.backbone.feature_size), device=device)
        for batch in length_bucketed_batches(lengths[index], eval_batch, None):
            ids, mask = batch_tensors(index[batch], None)
            with autocast:
                views[:, batch] = model.strand_features(ids, mask).float()
        return views

    optimizer = build_optimizer(model, config.lr, config.weight_decay)
    steps_per_epoch = math.ceil(rows["train"].size / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup = int(config.warmup_fraction * total_steps)
    selection = config.selection_metric or info.metric
    rng = np.random.default_rng([seed, 0x7EA1])
    best_value, best_state, best_epoch, since_best = -math.inf, None, 0, 0
    history, step = [], 0

    def end_epoch(epoch: int, train_loss: float, tick: float) -> bool:
        """Validate, record, keep the best fine-tuned model; True when early stopping ends the run."""
        nonlocal best_value, best_state, best_epoch, since_best
        valid = evaluate("valid")
        history.append({"epoch": epoch, "train_loss": train_loss, "seconds": time.time() - tick,
                        **{f"valid_{k}": v for k, v in valid.items()}})
        if progress:
            print(f"epoch {epoch}: train loss {train_loss:.4f}, valid {selection} {valid[selection]:.4f}",
                  file=sys.stderr, flush=True)
        if epoch == 0:  # the probe is recorded, not selected: the run's model is a fine-tuned one
            return False
        if valid[selection] > best_value:
            best_value, best_epoch, since_best = valid[selection], epoch, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            return False
        since_best += 1
        return config.early_stopping_patience is not None and since_best >= config.early_stopping_patience

    if config.head_init == "probe":  # history's epoch 0: the probe, before any fine-tuning
        tick = time.time()
        probe_loss = fit_head(model.score, frozen_features(rows["train"]), training_targets(rows["train"]),
                              info.task, config.probe_l2)
        end_epoch(0, probe_loss, tick)
    for epoch in range(1, config.epochs + 1):
        model.train()
        tick, losses = time.time(), []
        for batch in length_bucketed_batches(lengths[rows["train"]], config.batch_size, rng):
            index = rows["train"][batch]
            ids, mask = batch_tensors(index, rng)
            target = training_targets(index)
            with autocast:
                scores = model(ids, mask)
            loss = task_loss(info.task, scores, target)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss is {loss.item()} at epoch {epoch}, step {step + 1}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * warmup_cosine(step, max(warmup, 1), total_steps, config.min_lr_ratio)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
        if end_epoch(epoch, float(np.mean(losses)), tick):
            break
    model.load_state_dict(best_state)
    results = {name: evaluate(name) for name in ("valid", "test")}  # test touched once, here
    predictions = []
    for name in ("valid", "test"):
        outputs = predict(rows[name])
        predictions.append(pd.DataFrame({
            "split": name,
            "row": rows[name],
            "label": list(labels[rows[name]]) if labels.ndim > 1 else labels[rows[name]],
            "prediction": _point_predictions(info.task, outputs),
            "scores": list(outputs),
        }))
    summary = {
        **(run_name or {}),
        "seed": seed,
        "suite": info.suite,
        "task": info.task,
        "num_outputs": info.num_outputs,
        "metric": info.metric,
        "selection_metric": selection,
        "best_epoch": best_epoch,
        "epochs_run": history[-1]["epoch"],  # fine-tuning epochs (a probe is epoch 0)
        "num_parameters": model.backbone.num_parameters(),
        "metrics": results,
        "config": asdict(config),
    }
    if config.save_model:  # before metrics.json: a run with metrics is a complete run
        save_finetuned(model, out_dir, info, config, train_length=int(lengths[rows["train"]].max()),
                       target_shift=shift, target_scale=scale)
    with atomic_path(out_dir / "predictions.parquet", suffix=".parquet") as tmp:
        pd.concat(predictions, ignore_index=True).to_parquet(tmp, index=False)
    with atomic_path(out_dir / "history.csv", suffix=".csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    write_json(out_dir / "metrics.json", summary)
    return summary


def save_finetuned(model: SequenceClassifier, out_dir: Path, info: BenchmarkInfo, config: FinetuneConfig,
                   train_length: int, target_shift: np.ndarray, target_scale: np.ndarray) -> None:
    """``model.safetensors`` (the classifier's weights) and ``model.json`` (how to rebuild and apply it)."""
    backbone = model.backbone
    init_fields = {f.name for f in dataclasses.fields(backbone.config) if f.init}
    with atomic_path(out_dir / MODEL_FILE, suffix=".safetensors") as tmp:
        save_model(model, str(tmp))
    write_json(out_dir / MODEL_INFO_FILE, {
        "kind": "classifier",
        "arch": backbone.arch,
        "backbone_config": {k: v for k, v in dataclasses.asdict(backbone.config).items() if k in init_fields},
        "task": info.task,
        "num_outputs": info.num_outputs,
        "pooling": config.pooling,
        "rc_conjoin": config.rc_conjoin,
        "train_length": train_length,  # longest training sequence after cropping: the model's training length
        "target_shift": np.asarray(target_shift, dtype=float).tolist(),
        "target_scale": np.asarray(target_scale, dtype=float).tolist(),
    })


def load_finetuned(run_dir: str | os.PathLike, **backbone_overrides: Any) -> tuple[SequenceClassifier, dict[str, Any]]:
    """The classifier a ``save_model`` run wrote (eval mode) and its ``model.json``; ``backbone_overrides``
    change settings that keep the weights' shapes (``rope_scaling`` for position interpolation)."""
    meta = read_json(Path(run_dir) / MODEL_INFO_FILE)
    backbone = build_model(meta["arch"], **{**meta["backbone_config"], **backbone_overrides})
    model = SequenceClassifier(backbone, meta["num_outputs"], pooling=meta["pooling"], rc_conjoin=meta["rc_conjoin"])
    load_model(model, str(Path(run_dir) / MODEL_FILE), strict=True)
    return model.eval(), meta


def _point_predictions(task: str, outputs: np.ndarray) -> Any:
    """Class ids, 0/1 label vectors, or values: the predictions a human reads next to the labels."""
    if task == "classification":
        return outputs.argmax(1)
    if task == "multilabel":
        return list((outputs > 0.5).astype(np.int64))
    return outputs[:, 0] if outputs.shape[1] == 1 else list(outputs)


def _label_array(labels: pd.Series, info: BenchmarkInfo) -> np.ndarray:
    if info.task == "classification":
        return labels.to_numpy().astype(np.int64)
    if info.task == "regression" and info.num_outputs == 1:
        return labels.to_numpy().astype(np.float64)
    dtype = np.float64 if info.task == "regression" else np.int64
    return np.stack([np.asarray(v, dtype=dtype) for v in labels])
