"""A fine-tuned classifier on disk and what applying one needs, apart from the training engine.

A run with the setting ``save_model`` writes :data:`MODEL_FILE` (the classifier's weights, safetensors) and
:data:`MODEL_INFO_FILE` (how to rebuild and apply it; docs/formats.md); :func:`load_finetuned` rebuilds it.
Evaluation, extrapolation, embeddings and variant scoring read runs through this module, so none of them
imports the fine-tuning engine (:mod:`longdna.train.finetune`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_model, save_model
from torch import Tensor

from longdna.data.benchmarks.format import BenchmarkInfo
from longdna.io import atomic_path, read_json, sort_safetensors_metadata, write_json
from longdna.models import SequenceClassifier, build_model
from longdna.models.catalog import SEGMENTS
from longdna.settings import FinetuneConfig

MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"


def crop(ids: np.ndarray, max_length: int | None, keep: str) -> np.ndarray:
    if max_length is None or ids.size <= max_length:
        return ids
    if keep == "start":
        return ids[:max_length]
    if keep == "end":
        return ids[-max_length:]
    offset = (ids.size - max_length) // 2
    return ids[offset : offset + max_length]


def to_outputs(task: str, scores: Tensor) -> Tensor:
    """Model scores -> what metrics consume: class probabilities, per-label probabilities or values."""
    if task == "classification":
        return scores.float().softmax(-1)
    if task == "multilabel":
        return scores.float().sigmoid()
    return scores.float()


def save_finetuned(
    model: SequenceClassifier,
    out_dir: Path,
    info: BenchmarkInfo,
    config: FinetuneConfig,
    train_length: int,
    target_shift: np.ndarray,
    target_scale: np.ndarray,
    fingerprint: dict[str, Any] | None = None,
) -> None:
    """``model.safetensors`` (the classifier's weights) and ``model.json`` (how to rebuild and apply it)."""
    backbone = model.backbone
    init_fields = {f.name for f in dataclasses.fields(backbone.config) if f.init}
    with atomic_path(out_dir / MODEL_FILE, suffix=".safetensors") as tmp:
        save_model(model, str(tmp))
        sort_safetensors_metadata(tmp)  # byte-identical files for identical runs
    write_json(
        out_dir / MODEL_INFO_FILE,
        {
            "kind": "classifier",
            "arch": backbone.arch,
            "backbone_config": {k: v for k, v in dataclasses.asdict(backbone.config).items() if k in init_fields},
            "task": info.task,
            "num_outputs": info.num_outputs,
            "pooling": config.pooling,
            "pool_segments": config.pool_segments,
            "rc_conjoin": config.rc_conjoin,
            "train_length": train_length,  # longest training sequence after cropping: the model's training length
            "target_shift": np.asarray(target_shift, dtype=float).tolist(),
            "target_scale": np.asarray(target_scale, dtype=float).tolist(),
            "fingerprint": fingerprint,  # of the run that trained it (longdna.fingerprint)
        },
    )


def load_finetuned(run_dir: str | os.PathLike, **backbone_overrides: Any) -> tuple[SequenceClassifier, dict[str, Any]]:
    """The classifier a ``save_model`` run wrote (eval mode) and its ``model.json``; ``backbone_overrides``
    change settings that keep the weights' shapes (``rope_scaling`` for position interpolation)."""
    meta = read_json(Path(run_dir) / MODEL_INFO_FILE)
    backbone = build_model(meta["arch"], **{**meta["backbone_config"], **backbone_overrides})
    model = SequenceClassifier(
        backbone,
        meta["num_outputs"],
        pooling=meta["pooling"],
        rc_conjoin=meta["rc_conjoin"],
        segments=meta.get("pool_segments", SEGMENTS),
    )
    load_model(model, str(Path(run_dir) / MODEL_FILE), strict=True)
    return model.eval(), meta
