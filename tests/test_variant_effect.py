"""Variant effect prediction: strand handling, the zero-shot LLR against its definition, the probe against
scikit-learn, an end-to-end run on a toy, and the workflow's choice of rule for variant benchmarks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import CI_CONFIG, snakemake

from longdna import vocab
from longdna.data.benchmarks.format import BenchmarkInfo, write_benchmark
from longdna.eval.variant_effect import fit_probe, variant_effect, variant_scores
from longdna.models import build_model, save_pretrained
from longdna.settings import FinetuneConfig, VariantEffectConfig
from longdna.train.finetune import finetune

TINY = {
    "caduceus-ps": ("caduceus", dict(d_model=16, n_layer=2, rcps=True, scan_chunk_size=8)),
    "hawk-bi": ("hawk", dict(d_model=16, n_layer=2, num_heads=2, bidirectional=True, scan_chunk_size=8)),
    "mamba": ("mamba", dict(d_model=16, n_layer=2, scan_chunk_size=8)),
    "transformer": ("transformer", dict(d_model=16, n_layer=2, n_heads=2, causal=False)),
    "transformer-causal": ("transformer", dict(d_model=16, n_layer=2, n_heads=2, causal=True)),
}


def tiny(name: str):
    arch, config = TINY[name]
    torch.manual_seed(0)
    return build_model(arch, **config).double().eval()


def variant_pair(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random base sequences and a copy with a different base at a random position per row."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(vocab.A, vocab.T + 1, (batch, length), generator=g)
    positions = torch.randint(0, length, (batch,), generator=g)
    alt = ref.clone()
    rows = torch.arange(batch)
    alt[rows, positions] = vocab.A + (ref[rows, positions] - vocab.A + torch.randint(1, 4, (batch,), generator=g)) % 4
    return ref, alt, positions


def test_rc_equivariant_model_scores_both_strands_alike() -> None:
    """Caduceus-PS is RC-equivariant: a variant and its reverse complement (position mirrored) get the same
    feature and LLR, which checks that the reverse strand's window follows the variant."""
    model = tiny("caduceus-ps")
    ref, alt, positions = variant_pair(3, 40)
    forward = variant_scores(model, ref, alt, positions, window=9)
    rc = vocab.reverse_complement
    mirrored = variant_scores(model, rc(ref), rc(alt), 39 - positions, window=9)
    for a, b in zip(forward, mirrored):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["mamba", "transformer-causal"])
def test_causal_llr_is_the_log_likelihood_ratio_of_both_strands(name: str) -> None:
    model = tiny(name)
    ref, alt, positions = variant_pair(2, 30)

    def log_likelihood(ids: torch.Tensor) -> torch.Tensor:
        log_probs = model(ids).log_softmax(-1)
        return sum(log_probs[:, t - 1].gather(-1, ids[:, t, None]).squeeze(-1) for t in range(1, ids.shape[1]))

    rc = vocab.reverse_complement
    expected = (log_likelihood(alt) - log_likelihood(ref) + log_likelihood(rc(alt)) - log_likelihood(rc(ref))) / 2
    torch.testing.assert_close(variant_scores(model, ref, alt, positions, window=5)[1], expected)


@pytest.mark.parametrize("name", ["hawk-bi", "transformer"])
def test_masked_llr_is_the_masked_marginal(name: str) -> None:
    model = tiny(name)
    ref, alt, positions = variant_pair(2, 30)
    expected = torch.zeros(2, dtype=torch.float64)
    for row in range(2):
        for ids_ref, ids_alt, p in (
            (ref[row], alt[row], positions[row]),
            (vocab.reverse_complement(ref[row]), vocab.reverse_complement(alt[row]), 29 - positions[row]),
        ):
            masked = ids_ref.clone()
            masked[p] = vocab.MASK
            log_probs = model(masked[None])[0, p].log_softmax(-1)
            expected[row] += (log_probs[ids_alt[p]] - log_probs[ids_ref[p]]) / 2
    torch.testing.assert_close(variant_scores(model, ref, alt, positions, window=5)[1], expected)


def test_chunked_scoring_equals_unchunked() -> None:
    model = tiny("hawk-bi")
    ref, alt, positions = variant_pair(2, 37)
    for a, b in zip(
        variant_scores(model, ref, alt, positions, 11, chunk_size=8), variant_scores(model, ref, alt, positions, 11)
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_probe_matches_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 0.5, 1] + [0, 1, 0, 0, -1]
    y = (x @ [1.0, -0.5, 0.2, 0.0, 0.3] + rng.normal(size=200) > 0).astype(int)
    l2 = 0.05
    probe, _ = fit_probe(x, y, l2)
    z = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=1 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(probe.probabilities(x)[:, 1], reference.predict_proba(z)[:, 1], atol=1e-5)


def write_toy_variants(directory: Path, n: int = 240, length: int = 64) -> None:
    """Label 1 when the variant raises GC content (A/T -> C/G): visible in the alt - ref embedding."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        ref = rng.choice(list("ACGT"), length)
        position = int(rng.integers(length // 4, 3 * length // 4))
        alt = ref.copy()
        alt[position] = rng.choice([b for b in "ACGT" if b != ref[position]])
        label = int(ref[position] in "AT" and alt[position] in "CG")
        rows.append(("".join(ref), "".join(alt), position, label, "test" if i % 4 == 0 else "train"))
    frame = pd.DataFrame(rows, columns=["sequence", "alt_sequence", "variant_position", "label", "split"])
    write_benchmark(directory, frame, BenchmarkInfo("toy_vep", "classification", 2, "auroc"))


def test_variant_effect_run_learns_a_toy_and_writes_a_run(tmp_path: Path) -> None:
    write_toy_variants(tmp_path / "bench")
    torch.manual_seed(0)
    save_pretrained(build_model("hawk", d_model=16, n_layer=1, num_heads=2, bidirectional=True), tmp_path / "backbone")
    config = VariantEffectConfig(window=16, batch_size=32, l2_grid=[1e-3, 1e-1])
    summary = variant_effect(
        tmp_path / "bench",
        tmp_path / "run",
        tmp_path / "backbone",
        config,
        seed=1,
        run_name={"benchmark": "toy_vep", "model": "hawk"},
        progress=False,
    )
    test = summary["metrics"]["test"]
    assert test["auroc"] > 0.9 and {"zero_shot_auroc", "zero_shot_auprc"} <= set(test)
    saved = json.loads((tmp_path / "run/metrics.json").read_text())
    assert saved["metrics"] == summary["metrics"] and saved["benchmark"] == "toy_vep" and saved["l2"] in config.l2_grid
    predictions = pd.read_parquet(tmp_path / "run/predictions.parquet")
    assert list(predictions.columns) == ["split", "row", "label", "prediction", "scores", "zero_shot_score"]
    assert sorted(predictions.loc[predictions["split"] == "test", "row"]) == list(range(0, 240, 4))
    assert len(pd.read_csv(tmp_path / "run/history.csv")) == 2
    model_info = json.loads((tmp_path / "run/model.json").read_text())
    assert model_info["kind"] == "variant_effect" and model_info["fingerprint"] == saved["fingerprint"]
    assert len(saved["fingerprint"]["sha256"]) == 64  # the run's inputs, settings and code (longdna.fingerprint)
    with pytest.raises(ValueError, match="variant-effect benchmark"):
        finetune(
            tmp_path / "bench",
            tmp_path / "ft",
            FinetuneConfig(epochs=1),
            seed=1,
            backbone_dir=tmp_path / "backbone",
            progress=False,
        )


def test_workflow_scores_variant_benchmarks_with_the_variant_effect_rule(tmp_path: Path) -> None:
    """A dry run: the LRB's variant tasks go to `variant_effect` (no `save_model` needed for their
    extrapolation), every other benchmark to `finetune_model`."""
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["benchmarks"]["eqtl"] = {"suite": "long_range", "task": "variant_effect_causal_eqtl", "length": 512}
    config["finetune"]["settings"]["save_model"] = True
    config["evaluate"]["extrapolation"] = {"multiples": [1, 2], "benchmarks": ["eqtl", "motif"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=path).stdout
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.MULTILINE)}
    seeds = len(config["finetune"]["seeds"])
    assert counts["variant_effect"] == seeds  # eqtl x hyena (hyena_scratch only runs motif)
    assert counts["finetune_model"] == seeds * 3  # motif, long_range x hyena; motif x hyena_scratch
    assert counts["extrapolate_model"] == seeds * 3  # eqtl and motif x hyena, motif x hyena_scratch
