"""Released checkpoints in and out of our model directories: the pretrain stage's ``models.<name>.pretrained``,
and ``longdna export``.

A model entry may name its weights instead of being pretrained here::

    models:
      caduceus_ps:
        arch: caduceus
        pretrained: hf:kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16@<commit or tag>

Two steps give ``results/pretrain/{model}/`` exactly the files a pretraining run leaves there, so that fine-tuning,
variant scoring, extrapolation and evaluation take the model as they take one trained here:

* :func:`import_pretrained` (rule ``fetch_pretrained``): download (:mod:`longdna.hub`) or read the checkpoint,
  convert it (:mod:`longdna.models.released`), write ``model.safetensors``, ``tokenizer.json`` and ``config.json``
  with ``pretrain`` = the objective and the length it was pretrained at, and ``released`` = where it came from
  (source, resolved commit, files and their SHA-256, layout, token-id map);
* :func:`score_pretrained` (rule ``test_pretrained``): its validation and test-split perplexity on our genome at
  ``pretrain.eval_lengths``, as a pretraining run ends with (``summary.json``, ``metrics.jsonl``; step 0: nothing
  was trained here).

:func:`export_model_dir` goes the other way: a pretraining output or a fine-tuning run (its backbone) written in
a released layout (:func:`longdna.models.released.export_released`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from longdna.data.tokens.shards import GenomeShards
from longdna.data.tokens.windows import SequentialWindows
from longdna.hub import fetch
from longdna.io import read_json, write_json, write_text
from longdna.models import load_pretrained, presets, save_pretrained
from longdna.models.released import CHECKPOINT_FILES, export_released, read_released
from longdna.settings import PretrainConfig
from longdna.train.distributed import Distributed
from longdna.train.metrics_log import METRICS_FILE
from longdna.train.objectives import LMExamples
from longdna.train.precision import autocast_context
from longdna.train.pretrain import evaluate_lm, resolve_objective


def import_pretrained(
    source: str,
    out_dir: str | os.PathLike,
    arch: str,
    model: str,
    preset: str | None = None,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """Fetch and convert ``source`` into our checkpoint format in ``out_dir``; returns the ``released`` record.

    ``arch`` (and ``preset``, if given) must describe the checkpoint; ``seq_len`` is the pretraining length to
    record when the checkpoint does not state one. Errors name the config keys of ``models.<model>``.
    """
    key = f"models.{model}"
    try:
        directory, provenance = fetch(source, CHECKPOINT_FILES)
        released = read_released(directory)
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{key}.pretrained: {err.args[0] if isinstance(err, KeyError) else err}") from None
    config = released.model.config
    if released.model.arch != arch:
        raise ValueError(f"{key}.arch: {arch!r}, but {source} is a {released.model.arch} checkpoint")
    if preset is not None:
        known = presets(arch)
        if preset not in known:
            raise ValueError(f"{key}.preset: {preset!r} is not a {arch} preset ({sorted(known)})")
        found = {name: getattr(config, name) for name in known[preset]}
        if found != known[preset]:
            raise ValueError(f"{key}.preset: {preset!r} is {known[preset]}, but {source} has {found}")
    length = released.training_length or seq_len
    if length is None:
        raise ValueError(
            f"{key}.pretrained: {source} does not record the length it was pretrained at; set {key}.pretrain.seq_len"
        )
    if released.training_length is None:
        print(f"{source}: no recorded pretraining length; using pretrain.seq_len = {length}", file=sys.stderr)
    record = {
        **provenance,
        "layout": released.layout,
        "weights_file": released.weights_file,
        "token_ids": released.token_ids,
    }
    objective = "causal" if released.model.causal else "masked"
    save_pretrained(
        released.model, out_dir, pretrain={"objective": objective, "config": {"seq_len": length}}, released=record
    )
    return record


@torch.no_grad()
def score_pretrained(
    model_dir: str | os.PathLike, shards_dir: str | os.PathLike, config: PretrainConfig
) -> dict[str, Any]:
    """Validation loss at ``config.seq_len`` and test loss at every ``config.eval_lengths`` of the imported model
    on the token shards; writes ``summary.json`` and ``metrics.jsonl`` (pretraining's formats) into ``model_dir``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    dist = Distributed()
    device = dist.device()
    model = load_pretrained(model_dir).to(device)
    objective = resolve_objective(config, model)
    shards = GenomeShards(shards_dir)
    autocast = autocast_context(config.precision, device)
    batch = config.micro_batch_size or config.batch_size

    def examples(split: str, length: int) -> LMExamples:
        window = length + 1 if objective == "causal" else length
        windows = SequentialWindows(shards, split, window, config.max_n_fraction, max_windows=config.eval_windows)
        return LMExamples(windows, objective, seed=config.seed, mask_probability=config.mask_probability)

    valid = evaluate_lm(model, examples("valid", config.seq_len), batch, device, dist, autocast)
    rows = [{"kind": "valid", "step": 0, "tokens_seen": 0, **valid}]
    test_by_length = {}
    for length in config.eval_lengths or [config.seq_len]:
        length_batch = max(1, batch * config.seq_len // length)
        test_by_length[str(length)] = evaluate_lm(model, examples("test", length), length_batch, device, dist, autocast)
        rows.append({"kind": "test", "step": 0, "seq_len": length, **test_by_length[str(length)]})
    released = read_json(Path(model_dir) / "config.json").get("released", {})
    summary = {
        "arch": model.arch,
        "objective": objective,
        "steps": 0,
        "exported_step": 0,
        "tokens_seen": 0,
        "world_size": 1,
        "estimated_memory_gib": None,
        "valid": valid,
        "test_by_length": test_by_length,
        "released": released.get("source"),
    }
    out_dir = Path(model_dir)
    write_text(out_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in rows))
    write_json(out_dir / "summary.json", summary)
    return summary


def export_model_dir(model_dir: str | os.PathLike, out_dir: str | os.PathLike, format: str) -> tuple[list[str], str]:
    """Export a pretraining output (``config.json``) or a fine-tuning run saved with ``save_model``
    (``model.json``: its fine-tuned backbone; the sequence head has no place in the released layouts).

    Returns the files written and a note for the user.
    """
    model_dir = Path(model_dir)
    if (model_dir / "model.json").is_file():
        from longdna.train.finetuned import load_finetuned

        meta = read_json(model_dir / "model.json")
        if meta.get("kind") != "classifier":
            raise ValueError(
                f"{model_dir / 'model.json'}: a {meta.get('kind')} run holds no fine-tuned backbone;"
                f" export its backbone {meta.get('backbone_dir')} instead"
            )
        classifier, meta = load_finetuned(model_dir)
        model, length = classifier.backbone, meta["train_length"]
        note = f"; the fine-tuned backbone without its {meta['num_outputs']}-output head"
    elif (model_dir / "config.json").is_file():
        model = load_pretrained(model_dir)
        length = read_json(model_dir / "config.json").get("pretrain", {}).get("config", {}).get("seq_len")
        note = ""
    else:
        raise FileNotFoundError(
            f"{model_dir}: neither a pretraining output (config.json) nor a fine-tuning run"
            " saved with save_model (model.json)"
        )
    if length is None:
        raise ValueError(f"{model_dir / 'config.json'}: no pretrain.config.seq_len (the length it was trained at)")
    return export_released(model, out_dir, format, training_length=int(length)), note
