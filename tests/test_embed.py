"""FASTA embeddings (longdna.eval.embeddings, `longdna embed`): every architecture's vectors against the pooled
features of each record computed alone, both output formats, a fine-tuned run's pooling, cropping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from longdna import vocab
from longdna.cli import main
from longdna.data.benchmarks.format import BenchmarkInfo
from longdna.eval.embeddings import embed_fasta
from longdna.models import SequenceClassifier, build_model, load_pretrained, save_pretrained
from longdna.settings import EmbeddingConfig, FinetuneConfig
from longdna.train.finetuned import save_finetuned

TINY = {
    "hyenadna": {"d_model": 8, "n_layer": 1, "l_max": 66},
    "caduceus": {"d_model": 8, "n_layer": 2, "rcps": True, "scan_chunk_size": 8},
    "mamba": {"d_model": 8, "n_layer": 1, "scan_chunk_size": 8},
    "hawk": {"d_model": 8, "n_layer": 1, "num_heads": 2, "bidirectional": True, "scan_chunk_size": 8},
    "transformer": {"d_model": 8, "n_layer": 1, "n_heads": 2},
}
#: consecutive equal lengths share a batch; a change of length, or the token budget, starts a new one
LENGTHS = [40, 40, 40, 25, 64, 64, 7]


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(2)
    records = {f"seq{i}": "".join(rng.choice(list("ACGTacgtN"), n)) for i, n in enumerate(LENGTHS)}
    path = tmp_path_factory.mktemp("fasta") / "in.fa"
    path.write_text("".join(f">{name} description\n{seq[:30]}\n{seq[30:]}\n" for name, seq in records.items()))
    return path, records


def save_tiny(arch: str, directory: Path) -> Path:
    torch.manual_seed(0)
    save_pretrained(build_model(arch, **TINY[arch]), directory)
    return directory


def direct(backbone, sequence: str, pooling: str, rc_conjoin: bool) -> np.ndarray:
    """The record alone: pooled features of its tokens (and of their reverse complement), averaged."""
    ids = torch.as_tensor(vocab.encode(sequence).astype(np.int64))[None]
    views = [ids, vocab.reverse_complement(ids)] if rc_conjoin else [ids]
    with torch.no_grad():
        return np.mean([backbone.pooled_features(backbone.embed(x), None, pooling)[0].numpy() for x in views], axis=0)


@pytest.mark.parametrize("arch", sorted(TINY))
def test_each_record_gets_its_pooled_features(arch: str, fasta: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, records = fasta
    model_dir = save_tiny(arch, tmp_path / arch)
    config = EmbeddingConfig(pooling="mean", rc_conjoin=True, tokens_per_batch=100)  # batches of 2, 1, 1, 1, 1, 1
    assert embed_fasta(model_dir, path, tmp_path / "out.parquet", config, progress=False) == len(records)
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert list(frame["name"]) == list(records) and list(frame["length"]) == LENGTHS
    backbone = load_pretrained(model_dir)
    expected = np.stack([direct(backbone, seq, "mean", True) for seq in records.values()])
    np.testing.assert_allclose(np.stack(frame["embedding"]), expected, rtol=1e-5, atol=1e-6)
    assert np.stack(frame["embedding"]).dtype == np.float32 and expected.shape[1] == backbone.feature_size


def test_npy_output_and_options(fasta: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """.npy holds the parquet's vectors; pooling, max_length (centre crop) and the token budget apply."""
    path, records = fasta
    model_dir = save_tiny("hyenadna", tmp_path / "model")
    config = EmbeddingConfig(pooling="last", max_length=32, tokens_per_batch=1)  # one record per batch
    embed_fasta(model_dir, path, tmp_path / "out.npy", config, progress=False)
    embed_fasta(
        model_dir, path, tmp_path / "out.parquet", EmbeddingConfig(pooling="last", max_length=32), progress=False
    )
    vectors = np.load(tmp_path / "out.npy")
    assert vectors.shape == (len(records), 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(
        vectors, np.stack(pd.read_parquet(tmp_path / "out.parquet")["embedding"]), rtol=1e-5, atol=1e-6
    )
    backbone = load_pretrained(model_dir)
    for row, seq in zip(vectors, records.values()):
        start = max(0, (len(seq) - 32) // 2)
        np.testing.assert_allclose(row, direct(backbone, seq[start : start + 32], "last", False), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"out.csv: the output must end in .parquet or .npy"):
        embed_fasta(model_dir, path, tmp_path / "out.csv", config, progress=False)


def test_a_fine_tuned_run_embeds_with_its_backbone_and_pooling(
    fasta: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, records = fasta
    torch.manual_seed(1)
    classifier = SequenceClassifier(build_model("hyenadna", **TINY["hyenadna"]), 3, pooling="max", rc_conjoin=True)
    info = BenchmarkInfo("toy", "classification", 3, "accuracy")
    save_finetuned(
        classifier,
        tmp_path / "run",
        info,
        FinetuneConfig(pooling="max", rc_conjoin=True),
        train_length=40,
        target_shift=np.zeros(1),
        target_scale=np.ones(1),
    )
    embed_fasta(tmp_path / "run", path, tmp_path / "run.parquet", EmbeddingConfig(), progress=False)
    expected = np.stack([direct(classifier.backbone.eval(), seq, "max", True) for seq in records.values()])
    np.testing.assert_allclose(
        np.stack(pd.read_parquet(tmp_path / "run.parquet")["embedding"]), expected, rtol=1e-5, atol=1e-6
    )


def test_command_line(fasta: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, records = fasta
    model_dir = save_tiny("transformer", tmp_path / "model")
    out = tmp_path / "emb.parquet"
    assert (
        main(
            ["embed", "--model", str(model_dir), "--fasta", str(path), "--out", str(out), "--pooling", "max", "--quiet"]
        )
        == 0
    )
    assert f"{out}: {len(records)} records embedded" in capsys.readouterr().out
    assert len(pd.read_parquet(out)) == len(records)
    assert main(["embed", "--model", str(tmp_path / "nothing"), "--fasta", str(path), "--out", str(out)]) == 1
    assert "nothing: neither config.json" in capsys.readouterr().err
