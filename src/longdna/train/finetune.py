"""Fine-tuning a backbone on one benchmark with one seed: the unit of the finetune stage (:class:`Finetuner`).

Protocol (the honest one): a validation split is carved from train with the run's seed (stratified for
classes) unless the benchmark ships one, or with ``kfold`` the seed picks the validation fold; the epoch with
the best validation metric is kept; the test split is predicted once, at the end, with that model.

A run has up to three phases, each reported in ``history.csv`` (column ``phase``) and in the job log:

``adapt`` (``adapt_epochs`` > 0)
    domain-adaptive pretraining: the backbone's own language-model objective on the training sequences, no
    labels (DNABERT-2's extra pretraining on GUE did this); it helps most where the backbone was pretrained on
    other DNA or not at all, as on a CPU.
``probe`` (``head_init: probe``)
    the LP of LP-FT (Kumar et al., ICLR 2022): the head is fitted on the frozen backbone's pooled training
    features (:func:`fit_head`) before fine-tuning. A random head's first updates push large, uninformative
    gradients into the backbone; a fitted one starts fine-tuning where a linear probe ends, for the price of
    one forward pass over the training split. Recorded as epoch 0; model selection only considers fine-tuned
    epochs.
``finetune``
    every parameter trained on the task loss, validated after each epoch.

Pooling: ``mean`` and ``max`` see what occurs, not where; ``segments`` keeps where along the sequence (see
:func:`longdna.models.base.pool`), which position-aligned tasks (promoters around their TSS, splice sites)
need: with mean pooling the model cannot learn what a position one-hot logistic regression learns.

Sequence length: a sequence longer than ``max_length`` keeps its ``keep`` part (``start``, ``end`` or
``center``); shorter ones in a batch are padded with ``[PAD]`` on ``padding_side`` (``auto``: left for
causal models, so the last position is a real base, right for bidirectional ones). Pooling ignores padding.
Recurrent and convolutional backbones may run longer than they were pretrained on; nothing is truncated
unless ``max_length`` says so.

With ``save_model`` the run also writes the fine-tuned classifier (:mod:`longdna.train.finetuned`), so that it
can be evaluated again later, e.g. on the test split re-cut at other lengths (:mod:`longdna.eval.extrapolation`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from longdna import vocab
from longdna.data.benchmarks.format import BenchmarkInfo, is_variant_benchmark, read_benchmark
from longdna.data.benchmarks.info import SPLITS, label_array
from longdna.data.benchmarks.splits import train_valid_split
from longdna.device import job_device
from longdna.eval.metrics import compute_metrics, point_predictions
from longdna.fingerprint import finetune_fingerprint
from longdna.io import atomic_path, write_json
from longdna.models import SequenceClassifier, build_model, load_pretrained, read_checkpoint_config
from longdna.settings import FinetuneConfig
from longdna.train.finetuned import crop, save_finetuned, to_outputs
from longdna.train.objectives import BITS_PER_NAT, causal_example, masked_example, token_loss_sum
from longdna.train.optim import build_optimizer, warmup_cosine
from longdna.train.progress import ProgressLog


# -- data ----------------------------------------------------------------------------------------------------
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
        segments=config.pool_segments,
        conjoin_in_training=config.rc_conjoin_train,
    )


def task_loss(task: str, scores: Tensor, labels: Tensor) -> Tensor:
    if task == "classification":
        return F.cross_entropy(scores.float(), labels.long())
    if task == "regression":
        return F.mse_loss(scores.float().reshape(labels.shape), labels.float())
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def fit_head(
    head: torch.nn.Linear, features: Tensor, targets: Tensor, task: str, l2: float, max_iter: int = 200
) -> float:
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
class Finetuner:
    """One fine-tuning run: data, split and model are set up in the constructor; :meth:`run` adapts, probes,
    fine-tunes, selects, tests once and writes the run directory.

    The backbone is the pretrained checkpoint in ``backbone_dir`` or, with ``init: scratch``, a freshly
    initialised ``architecture`` ``(arch, config)``.
    """

    def __init__(
        self,
        benchmark_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        config: FinetuneConfig,
        seed: int,
        backbone_dir: str | os.PathLike | None = None,
        architecture: tuple[str, dict[str, Any]] | None = None,
        run_name: dict[str, str] | None = None,
        progress: bool = True,
    ) -> None:
        self.out_dir, self.config, self.seed, self.run_name = Path(out_dir), config, seed, run_name or {}
        self.progress = ProgressLog(
            "finetune " + (" ".join(self.run_name.values()) or Path(benchmark_dir).name), progress
        )
        if config.threads:
            torch.set_num_threads(config.threads)
        frame, self.info = read_benchmark(benchmark_dir)
        if is_variant_benchmark(frame):
            raise ValueError(
                f"{benchmark_dir} is a variant-effect benchmark (reference/alternative pairs): score it"
                " with longdna.eval.variant_effect, not by fine-tuning on the reference sequences"
            )
        split = train_valid_split(frame, self.info, config, seed).to_numpy()
        self.rows = {name: np.flatnonzero(split == name) for name in SPLITS}
        torch.manual_seed(seed)
        self.model = build_classifier(self.info, config, backbone_dir, architecture)
        self.fingerprint = finetune_fingerprint(
            benchmark_dir,
            asdict(config),
            seed,
            self.model.backbone.arch,
            asdict(self.model.backbone.config),
            backbone_dir if config.init == "pretrained" else None,
        ).to_dict()
        self.device = job_device()
        self.model.to(self.device)
        backbone = self.model.backbone
        self.padding_side = (
            config.padding_side if config.padding_side != "auto" else ("left" if backbone.causal else "right")
        )
        self.sequences = [
            crop(vocab.encode(s, where=f"{benchmark_dir}: row {i + 1}"), config.max_length, config.keep)
            for i, s in enumerate(frame["sequence"])
        ]
        self.lengths = np.array([s.size for s in self.sequences])
        self.labels = label_array(frame["label"], self.info)
        if self.info.task == "regression":  # train on standardised targets (each output its own); report in units
            train_targets = self.labels[self.rows["train"]]
            self.shift, scale = train_targets.mean(0), train_targets.std(0)
            self.scale = np.where(scale > 0, scale, 1.0)
        else:
            self.shift, self.scale = np.zeros(1), np.ones(1)
        self.eval_batch = config.eval_batch_size or config.batch_size
        self.autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if (config.precision == "bf16" or (config.precision == "auto" and self.device.type == "cuda"))
            else torch.autocast(device_type=self.device.type, enabled=False)
        )
        self.rng = np.random.default_rng([seed, 0x7EA1])
        self.history: list[dict[str, Any]] = []
        self.selection = config.selection_metric or self.info.metric

    # -- data ------------------------------------------------------------------------------------------------
    def batch(self, index: np.ndarray, augment: bool = False) -> tuple[Tensor, Tensor]:
        """(B, L) padded token ids of rows ``index`` and the mask of real positions; training batches are
        reverse-complemented with probability ``rc_augment``."""
        batch = [self.sequences[i] for i in index]
        if augment and self.config.rc_augment > 0:
            flips = self.rng.random(len(batch)) < self.config.rc_augment
            batch = [vocab.reverse_complement(s) if f else s for s, f in zip(batch, flips)]
        ids, mask = pad_batch(batch, self.padding_side)
        return ids.to(self.device), mask.to(self.device)

    def batches(self, index: np.ndarray, shuffle: bool) -> list[np.ndarray]:
        """Rows of ``index`` in length-bucketed batches: training batches shuffled, evaluation ones in order."""
        size = self.config.batch_size if shuffle else self.eval_batch
        return [index[b] for b in length_bucketed_batches(self.lengths[index], size, self.rng if shuffle else None)]

    def targets(self, index: np.ndarray) -> Tensor:
        labels = self.labels[index]
        if self.info.task == "regression":
            labels = (labels - self.shift) / self.scale
        return torch.as_tensor(labels, device=self.device)

    @torch.no_grad()
    def predict(self, index: np.ndarray) -> np.ndarray:
        """(N, num_outputs) outputs of rows ``index`` (probabilities or values in the labels' units)."""
        self.model.eval()
        outputs = np.empty((index.size, self.info.num_outputs), dtype=np.float64)
        position = {row: i for i, row in enumerate(index)}
        for rows in self.batches(index, shuffle=False):
            ids, mask = self.batch(rows)
            with self.autocast:
                scores = self.model(ids, mask)
            outputs[[position[r] for r in rows]] = (
                to_outputs(self.info.task, scores).cpu().numpy().reshape(len(rows), -1)
            )
        if self.info.task == "regression":
            outputs = outputs * self.scale + self.shift
        return outputs

    def evaluate(self, split: str) -> dict[str, float]:
        index = self.rows[split]
        return compute_metrics(self.info.task, self.labels[index], self.predict(index), self.info.num_outputs)

    @torch.no_grad()
    def frozen_features(self, index: np.ndarray) -> Tensor:
        """(views, N, feature_size) pooled features of the backbone in eval mode, in ``index`` order."""
        self.model.eval()
        views = torch.empty(
            (2 if self.model.rc_conjoin else 1, index.size, self.model.feature_size), device=self.device
        )
        position = {row: i for i, row in enumerate(index)}
        for rows in self.batches(index, shuffle=False):
            ids, mask = self.batch(rows)
            with self.autocast:
                views[:, [position[r] for r in rows]] = self.model.strand_features(ids, mask).float()
        return views

    # -- phases ----------------------------------------------------------------------------------------------
    def adapt(self) -> None:
        """Domain-adaptive pretraining: ``adapt_epochs`` of the backbone's own language-model objective
        (next token for causal models, masked tokens for bidirectional ones) on the training rows' sequences
        (never validation or test), before any label is seen -- DNABERT-2's extra pretraining on the GUE
        training sets ("DNABERT-2 ♦") is this idea. A backbone pretrained on another genome, or none, first
        learns the k-mer statistics of the task's own sequences."""
        config, backbone = self.config, self.model.backbone
        objective = "causal" if backbone.causal else "masked"
        optimizer = build_optimizer(backbone, config.adapt_lr or config.lr, config.weight_decay)
        train = self.rows["train"]
        total = self.phase_steps(config.adapt_epochs)
        generator = torch.Generator().manual_seed(int(self.rng.integers(2**62)))
        step = 0
        self.progress.begin(total)
        for epoch in range(1, config.adapt_epochs + 1):
            backbone.train()
            tick, losses = time.time(), []
            batches = self.batches(train, shuffle=True)
            for rows in batches[: total - step]:
                ids, _ = self.batch(rows, augment=True)
                inputs, targets = lm_batch(ids, objective, config.mask_probability, generator)
                with self.autocast:
                    logits = backbone(inputs)
                loss_sum, count = token_loss_sum(logits, targets.to(self.device))
                loss = loss_sum / count.clamp_min(1)
                self._check_finite(loss, "adapt", epoch, step)
                self._optimizer_step(
                    optimizer,
                    loss,
                    warmup_cosine(step, max(1, int(0.1 * total)), total, 0.0),
                    config.adapt_lr or config.lr,
                    backbone,
                )
                losses.append(loss.item())
                step += 1
                self.progress.step(f"adapt epoch {epoch}/{config.adapt_epochs}", step, loss.item() * BITS_PER_NAT)
            row = {
                "phase": "adapt",
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) * BITS_PER_NAT,
                "seconds": time.time() - tick,
                "valid_bits_per_base": self._lm_bits(self.rows["valid"], objective),
            }
            self.history.append(row)
            self.progress.line(
                f"adapt epoch {epoch}/{config.adapt_epochs}: {objective} LM loss"
                f" {row['train_loss']:.4f} bits/base on train, {row['valid_bits_per_base']:.4f} on valid"
            )
            if step >= total:
                break

    @torch.no_grad()
    def _lm_bits(self, index: np.ndarray, objective: str) -> float:
        """Language-model loss (bits per target base) of rows ``index``, with masks drawn from a fixed seed."""
        backbone = self.model.backbone.eval()
        generator = torch.Generator().manual_seed(0x4D4C4D)
        total, count = 0.0, 0
        for rows in self.batches(index, shuffle=False):
            ids, _ = self.batch(rows)
            inputs, targets = lm_batch(ids, objective, self.config.mask_probability, generator)
            with self.autocast:
                loss_sum, n = token_loss_sum(backbone(inputs), targets.to(self.device))
            total, count = total + loss_sum.item(), count + int(n)
        return total / max(count, 1) * BITS_PER_NAT

    def probe(self) -> None:
        """LP of LP-FT: fit the head on the frozen backbone's pooled training features (history's epoch 0,
        phase ``probe``; recorded for comparison, never selected)."""
        tick = time.time()
        train = self.rows["train"]
        loss = fit_head(
            self.model.score, self.frozen_features(train), self.targets(train), self.info.task, self.config.probe_l2
        )
        valid = self.evaluate("valid")
        self.history.append(
            {
                "phase": "probe",
                "epoch": 0,
                "train_loss": loss,
                "seconds": time.time() - tick,
                **{f"valid_{k}": v for k, v in valid.items()},
            }
        )
        self.progress.line(
            f"probe (linear head fitted on the frozen backbone's features): train loss {loss:.4f},"
            f" valid {self.selection} {valid[self.selection]:.4f}"
        )

    def run(self) -> dict[str, Any]:
        config, model = self.config, self.model
        train = self.rows["train"]
        self.progress.line(
            f"{train.size} training, {self.rows['valid'].size} validation, {self.rows['test'].size}"
            f" test sequences; {model.backbone.arch} backbone, {model.backbone.num_parameters():,}"
            f" parameters ({config.init}); pooling {config.pooling}; selection on valid {self.selection}"
        )
        if config.adapt_epochs:
            self.adapt()
        if config.head_init == "probe":
            self.probe()
        optimizer = build_optimizer(model, config.lr, config.weight_decay)
        total = self.phase_steps(config.epochs)
        warmup = max(int(config.warmup_fraction * total), 1)
        best_value, best_state, best_epoch, since_best, step = -math.inf, None, 0, 0, 0
        self.progress.begin(total)
        for epoch in range(1, config.epochs + 1):
            model.train()
            tick, losses = time.time(), []
            for rows in self.batches(train, shuffle=True)[: total - step]:
                ids, mask = self.batch(rows, augment=True)
                with self.autocast:
                    scores = model(ids, mask)
                loss = task_loss(self.info.task, scores, self.targets(rows))
                self._check_finite(loss, "fine-tuning", epoch, step)
                self._optimizer_step(
                    optimizer, loss, warmup_cosine(step, warmup, total, config.min_lr_ratio), config.lr, model
                )
                losses.append(loss.item())
                step += 1
                self.progress.step(f"epoch {epoch}/{config.epochs}", step, loss.item())
            valid = self.evaluate("valid")
            self.history.append(
                {
                    "phase": "finetune",
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "seconds": time.time() - tick,
                    **{f"valid_{k}": v for k, v in valid.items()},
                }
            )
            if valid[self.selection] > best_value:
                best_value, best_epoch, since_best = valid[self.selection], epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            self.progress.line(
                f"epoch {epoch}/{config.epochs}: train loss {np.mean(losses):.4f}, valid"
                f" {self.selection} {valid[self.selection]:.4f} (best {best_value:.4f} at epoch"
                f" {best_epoch})"
            )
            if config.early_stopping_patience is not None and since_best >= config.early_stopping_patience:
                self.progress.line(f"early stopping: no better validation {self.selection} for {since_best} epochs")
                break
            if step >= total:
                self.progress.line(
                    f"step cap reached ({total} steps: max_steps {config.max_steps}, max_tokens {config.max_tokens})"
                )
                break
        model.load_state_dict(best_state)
        return self._write(best_epoch)

    def phase_steps(self, epochs: int) -> int:
        """Optimizer steps of a phase of ``epochs`` over the training split (:meth:`FinetuneConfig.phase_steps`;
        the learning-rate schedule spans the capped length; the last epoch may be partial)."""
        train = self.rows["train"]
        return self.config.phase_steps(epochs, train.size, self.lengths[train].mean())

    def _optimizer_step(
        self, optimizer: torch.optim.Optimizer, loss: Tensor, lr_factor: float, lr: float, module: torch.nn.Module
    ) -> None:
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.config.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @staticmethod
    def _check_finite(loss: Tensor, phase: str, epoch: int, step: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{phase} loss is {loss.item()} at epoch {epoch}, step {step + 1}")

    # -- outputs ---------------------------------------------------------------------------------------------
    def _write(self, best_epoch: int) -> dict[str, Any]:
        """Test once with the selected model; write predictions, history, (the model) and metrics.json last."""
        config, info = self.config, self.info
        predictions, results = [], {}
        for name in ("valid", "test"):  # test touched once, here
            index = self.rows[name]
            outputs = self.predict(index)
            results[name] = compute_metrics(info.task, self.labels[index], outputs, info.num_outputs)
            predictions.append(
                pd.DataFrame(
                    {
                        "split": name,
                        "row": index,
                        "label": list(self.labels[index]) if self.labels.ndim > 1 else self.labels[index],
                        "prediction": point_predictions(info.task, outputs),
                        "scores": list(outputs),
                    }
                )
            )
        self.progress.line(
            f"selected epoch {best_epoch}: valid {self.selection} {results['valid'][self.selection]:.4f},"
            f" test {info.metric} {results['test'][info.metric]:.4f}"
        )
        finetuned = [row["epoch"] for row in self.history if row["phase"] == "finetune"]
        summary = {
            **self.run_name,
            "seed": self.seed,
            "suite": info.suite,
            "task": info.task,
            "num_outputs": info.num_outputs,
            "metric": info.metric,
            "selection_metric": self.selection,
            "best_epoch": best_epoch,
            "epochs_run": finetuned[-1] if finetuned else 0,
            "num_parameters": self.model.backbone.num_parameters(),
            "metrics": results,
            "config": asdict(config),
            "fingerprint": self.fingerprint,
        }
        if config.save_model:  # before metrics.json: a run with metrics is a complete run
            save_finetuned(
                self.model,
                self.out_dir,
                info,
                config,
                train_length=int(self.lengths[self.rows["train"]].max()),
                target_shift=self.shift,
                target_scale=self.scale,
                fingerprint=self.fingerprint,
            )
        with atomic_path(self.out_dir / "predictions.parquet", suffix=".parquet") as tmp:
            pd.concat(predictions, ignore_index=True).to_parquet(tmp, index=False)
        with atomic_path(self.out_dir / "history.csv", suffix=".csv") as tmp:
            pd.DataFrame(self.history).to_csv(tmp, index=False)
        write_json(self.out_dir / "metrics.json", summary)
        return summary


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
    """Fine-tune and evaluate (:class:`Finetuner`); writes ``predictions.parquet``, ``history.csv`` and
    ``metrics.json`` (returned) to ``out_dir``."""
    return Finetuner(benchmark_dir, out_dir, config, seed, backbone_dir, architecture, run_name, progress).run()


def lm_batch(ids: Tensor, objective: str, mask_probability: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Language-model (inputs, targets) of a padded (B, L) batch: the next token (padding and N are never
    targets), or BERT masking with the masks drawn on the CPU from ``generator``
    (:mod:`longdna.train.objectives`)."""
    if objective == "causal":
        return causal_example(ids)
    inputs, targets = masked_example(ids.cpu(), mask_probability, generator)
    return inputs.to(ids.device), targets.to(ids.device)
