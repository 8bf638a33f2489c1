"""VCF variant scoring (longdna.eval.variant_scoring): the LLR and embedding distance against a direct computation
from their definitions, SNVs, indels, multi-allelic records, records that are not scored, order, the window,
flat memory, the command line and the workflow rule."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pysam
import pytest
import torch
import yaml
from conftest import CI_CONFIG, snakemake

from longdna import vocab
from longdna.cli import main
from longdna.config import ConfigError, load_schema, validate_config
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import write_bgzip_fasta
from longdna.eval.variant_scoring import score_vcf, trim_alleles
from longdna.models import build_model, load_pretrained, save_pretrained
from longdna.settings import VariantScoringConfig

REPO = Path(__file__).resolve().parents[1]
WINDOW = 32  # the tiny models' pretraining seq_len
HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr1,length=700>
##contig=<ID=chr2,length=300>
##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">
##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1
"""
MODELS = {
    "hyenadna": ("hyenadna", {"d_model": 8, "n_layer": 1, "l_max": WINDOW + 2}),  # causal: whole-window LLR
    "transformer-mlm": ("transformer", {"d_model": 8, "n_layer": 1, "n_heads": 2, "causal": False}),  # masked
}


@pytest.fixture(scope="module")
def genome(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A random bgzip genome (chr1 700 bp with a soft-masked stretch, chr2 300 bp) and its sequences."""
    rng = np.random.default_rng(5)
    sequences = {name: "".join(rng.choice(list("ACGT"), n)) for name, n in (("chr1", 700), ("chr2", 300))}
    sequences["chr1"] = sequences["chr1"][:150] + sequences["chr1"][150:190].lower() + sequences["chr1"][190:]
    path = tmp_path_factory.mktemp("genome") / "genome.fa.gz"
    write_bgzip_fasta(((name, seq.encode()) for name, seq in sequences.items()), path)
    return path, sequences


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    arch, config = MODELS[request.param]
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp(request.param)
    save_pretrained(build_model(arch, **config), directory, pretrain={"config": {"seq_len": WINDOW}})
    return directory


def write_vcf(path: Path, rows: list[tuple]) -> Path:
    """rows: (chrom, pos, id, ref, alt[, info]) -> a VCF with one sample."""
    lines = [f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\t50\tPASS\t{r[5] if len(r) > 5 else '.'}\tGT\t0/0" for r in rows]
    path.write_text(HEADER + "".join(line + "\n" for line in lines))
    return path


def read_vcf(path: Path) -> list[pysam.VariantRecord]:
    previous = pysam.set_verbosity(0)
    try:
        with pysam.VariantFile(str(path)) as vcf:
            return list(vcf)
    finally:
        pysam.set_verbosity(previous)


def score(model_dir: Path, genome: Path, vcf: Path, out: Path, **settings) -> dict[str, int]:
    return score_vcf(model_dir, genome, vcf, out, VariantScoringConfig(**settings), progress=False)


# -- the definitions, computed directly ----------------------------------------------------------------------
def windows(sequence: str, p: int, ref: str, alt: str, width: int) -> tuple[str, str]:
    """REF and ALT windows of the trimmed variant ref>alt at 0-based p (docs/formats.md), N off the contig."""

    def base(i: int) -> str:
        return sequence[i] if 0 <= i < len(sequence) else "N"

    left = "".join(base(i) for i in range(p - width // 2, p))
    ref_window = left + "".join(base(i) for i in range(p, p - width // 2 + width))
    alt_window = (left + alt + "".join(base(i) for i in range(p + len(ref), p + len(ref) + width)))[:width]
    return ref_window, alt_window


@torch.no_grad()
def direct_scores(
    model_dir: Path, sequence: str, p: int, ref: str, alt: str, width: int = WINDOW
) -> tuple[float, float]:
    """(LLR, embedding distance) written out from the definitions, one sequence and one position at a time."""
    model = load_pretrained(model_dir).double()
    ref_window, alt_window = windows(sequence, p, ref, alt, width)
    span = max(len(ref), len(alt))
    llr, difference = 0.0, 0.0
    for strand in ("+", "-"):
        ids = [torch.as_tensor(vocab.encode(w).astype(np.int64))[None] for w in (ref_window, alt_window)]
        masked_positions = range(width // 2, width // 2 + span)
        if strand == "-":
            ids = [vocab.reverse_complement(x) for x in ids]
            masked_positions = range(width - width // 2 - span, width - width // 2)
        log_likelihood = []
        for x in ids:
            if model.causal:
                log_probs = model(x)[0].log_softmax(-1)
                log_likelihood.append(sum(float(log_probs[t - 1, x[0, t]]) for t in range(1, width)))
            else:
                masked = x.clone()
                masked[0, list(masked_positions)] = vocab.MASK
                log_probs = model(masked)[0].log_softmax(-1)
                log_likelihood.append(sum(float(log_probs[t, x[0, t]]) for t in masked_positions))
        llr += (log_likelihood[1] - log_likelihood[0]) / 2
        difference = difference + (model.embed(ids[1])[0].mean(0) - model.embed(ids[0])[0].mean(0)) / 2
    return llr, float(difference.norm())


def test_trim_alleles() -> None:
    assert trim_alleles("ATG", "ACG") == (1, "T", "C")
    assert trim_alleles("AT", "A") == (1, "T", "")
    assert trim_alleles("C", "CGGT") == (1, "", "GGT")
    assert trim_alleles("CTTT", "CTT") == (3, "T", "")  # the prefix goes first: in a repeat, its last copy
    assert trim_alleles("A", "A") == (1, "", "")


def test_scores_equal_the_direct_computation(
    model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """SNVs (one in a soft-masked stretch, one 3 bp from the contig's start), an MNV, a deletion, an insertion
    and a deletion at the contig's end, each against LLR and distance computed from their definitions."""
    path, seqs = genome
    chr1, chr2 = seqs["chr1"], seqs["chr2"]
    snv_alt = "A" if chr1[99].upper() != "A" else "C"
    mnv = "".join("ACGT"[("ACGT".index(b) + 1) % 4] for b in chr1[300:302])  # differs at both bases
    cases = [  # (chrom, 1-based pos, REF, ALT, trimmed: 0-based p, ref bases, alt bases)
        ("chr1", 100, chr1[99].upper(), snv_alt, 99, chr1[99].upper(), snv_alt),
        ("chr1", 160, chr1[159].upper(), "N", 159, chr1[159].upper(), "N"),
        ("chr2", 3, chr2[2], "T" if chr2[2] != "T" else "G", 2, chr2[2], "T" if chr2[2] != "T" else "G"),
        ("chr1", 300, chr1[299:302], chr1[299] + mnv, 300, chr1[300:302], mnv),
        ("chr1", 400, chr1[399:404], chr1[399], 400, chr1[400:404], ""),
        ("chr2", 50, chr2[49], chr2[49] + "GATTACA", 50, "", "GATTACA"),
        ("chr2", 299, chr2[298:300], chr2[298], 299, chr2[299], ""),
    ]
    vcf = write_vcf(
        tmp_path / "in.vcf", [(c, pos, f"v{i}", ref, alt) for i, (c, pos, ref, alt, *_) in enumerate(cases)]
    )
    counts = score(model_dir, path, vcf, tmp_path / "out.vcf.gz", batch_size=3)
    assert counts == {"records": 7, "scored": 7, "not_scored": 0, "no_contig": 0, "ref_mismatch": 0}
    for record, (chrom, _, _, _, p, ref, alt) in zip(read_vcf(tmp_path / "out.vcf.gz"), cases):
        llr, distance = direct_scores(model_dir, seqs[chrom].upper(), p, ref, alt)
        assert record.info["LDNA_LLR"][0] == pytest.approx(llr, rel=1e-4, abs=1e-5), record.id
        assert record.info["LDNA_EMB"][0] == pytest.approx(distance, rel=1e-4, abs=1e-6), record.id


def test_window_defaults_to_the_training_context_and_can_be_set(
    model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, seqs = genome
    ref = seqs["chr1"][199]
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 200, "v", ref, "A" if ref != "A" else "C")])
    score(model_dir, path, vcf, tmp_path / "default.vcf.gz")
    score(model_dir, path, vcf, tmp_path / "w16.vcf.gz", window=16)
    assert 'window="16"' in str(pysam.VariantFile(str(tmp_path / "w16.vcf.gz")).header)
    assert f'window="{WINDOW}"' in str(pysam.VariantFile(str(tmp_path / "default.vcf.gz")).header)
    llr, _ = direct_scores(model_dir, seqs["chr1"], 199, ref, "A" if ref != "A" else "C", width=16)
    w16, default = (read_vcf(tmp_path / f"{name}.vcf.gz")[0].info["LDNA_LLR"][0] for name in ("w16", "default"))
    assert w16 == pytest.approx(llr, rel=1e-4, abs=1e-5) and w16 != default


def test_every_record_comes_out_in_order_with_its_fields(
    model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Unsorted input, a multi-allelic record (one value per ALT; `*` and symbolic ALTs missing), a record on a
    contig the genome lacks (flagged), a record without ALT; other columns kept; each ALT of the multi-allelic
    record scores as it does alone."""
    path, seqs = genome
    ref = seqs["chr1"][249].upper()
    others = [b for b in "ACGT" if b != ref]
    rows = [
        ("chr2", 120, "b", seqs["chr2"][119], "A" if seqs["chr2"][119] != "A" else "G", "DP=7"),
        ("chr1", 250, "multi", ref, ",".join(others + ["*", "<DEL>"])),
        ("chrM", 10, "nocontig", "A", "G"),
        ("chr1", 30, "noalt", seqs["chr1"][29], "."),
        *[("chr1", 250, f"alone{b}", ref, b) for b in others],
    ]
    vcf = write_vcf(tmp_path / "in.vcf", rows)
    counts = score(model_dir, path, vcf, tmp_path / "out.vcf.gz", batch_size=2)
    assert counts == {"records": 7, "scored": 7, "not_scored": 3, "no_contig": 1, "ref_mismatch": 0}
    records = read_vcf(tmp_path / "out.vcf.gz")
    assert [(r.chrom, r.pos, r.id) for r in records] == [(r[0], r[1], r[2]) for r in rows]
    assert [r.samples["s1"]["GT"] for r in records] == [(0, 0)] * len(rows)
    assert records[0].info["DP"] == 7 and len(records[0].info["LDNA_LLR"]) == 1
    multi = records[1]
    assert len(multi.info["LDNA_LLR"]) == 5 and multi.info["LDNA_LLR"][3:] == (None, None)
    assert multi.info["LDNA_EMB"][3:] == (None, None)
    for value, alone in zip(multi.info["LDNA_LLR"][:3], records[4:]):
        assert value == pytest.approx(alone.info["LDNA_LLR"][0], rel=1e-5, abs=1e-6)
    assert "LDNA_NO_CONTIG" in records[2].info and "LDNA_LLR" not in records[2].info
    assert "LDNA_LLR" not in records[3].info and "LDNA_NO_CONTIG" not in records[3].info
    header = pysam.VariantFile(str(tmp_path / "out.vcf.gz")).header
    assert (header.info["LDNA_LLR"].number, header.info["LDNA_LLR"].type) == ("A", "Float")
    assert (header.info["LDNA_EMB"].number, header.info["LDNA_EMB"].type) == ("A", "Float")
    assert header.info["LDNA_NO_CONTIG"].type == "Flag"
    # scoring the scored file again replaces the values (the same numbers), declares the fields once
    score(model_dir, path, tmp_path / "out.vcf.gz", tmp_path / "again.vcf")
    again = read_vcf(tmp_path / "again.vcf")
    assert [r.info.get("LDNA_LLR") for r in again] == [r.info.get("LDNA_LLR") for r in records]
    assert (tmp_path / "again.vcf").read_text().count("ID=LDNA_LLR,") == 1


def test_ref_mismatch_is_an_error_naming_the_record_or_a_flag(
    model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    path, seqs = genome
    chr1 = seqs["chr1"]
    wrong = "A" if chr1[409].upper() != "A" else "C"
    rows = [
        ("chr1", 100, "ok", chr1[99], "N"),
        ("chr1", 410, "rs42", wrong, "G" if wrong != "G" else "T"),
        ("chr1", 699, "pastend", chr1[698:700] + "A", "A"),
    ]
    vcf = write_vcf(tmp_path / "in.vcf", rows)
    out = tmp_path / "out.vcf.gz"
    with pytest.raises(ValueError, match=rf"in\.vcf: record 2 \(chr1:410 rs42\): REF '{wrong}' disagrees"):
        score(model_dir, path, vcf, out)
    assert not out.exists() and not list(tmp_path.glob(".out.vcf.gz*"))  # nothing half-written
    counts = score(model_dir, path, vcf, out, on_ref_mismatch="flag")
    assert counts["ref_mismatch"] == 2 and counts["scored"] == 1
    records = read_vcf(out)
    assert ["LDNA_REF_MISMATCH" in r.info for r in records] == [False, True, True]
    assert "LDNA_LLR" in records[0].info and "LDNA_LLR" not in records[1].info


def test_bad_inputs_name_the_file(model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, _ = genome
    (tmp_path / "bad.vcf").write_text("this is not a VCF\n")
    with pytest.raises(ValueError, match="bad.vcf"):
        score(model_dir, path, tmp_path / "bad.vcf", tmp_path / "out.vcf.gz")
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 5, "v", "A", "C")])
    with gzip.open(tmp_path / "gzip.fa.gz", "wt") as fh:  # gzip, not bgzip: no random access
        fh.write(">chr1\nACGT\n")
    for fasta in ("gzip.fa.gz", "missing.fa"):
        with pytest.raises(ValueError, match=f"{fasta}: not an indexed FASTA"):
            score(model_dir, tmp_path / fasta, vcf, tmp_path / "out.vcf.gz")
    no_context = tmp_path / "no_context"
    save_pretrained(build_model(*MODELS["hyenadna"][:1], **MODELS["hyenadna"][1]), no_context)
    with pytest.raises(ValueError, match=r"no_context/config.json: no training context"):
        score(no_context, path, vcf, tmp_path / "out.vcf.gz")


def test_command_line(
    model_dir: Path, genome: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """bgzip VCF in, the CLI's summary line out; a REF mismatch exits 1 with the record named, no traceback, and
    leaves an existing output as it was."""
    path, seqs = genome
    vcf = write_vcf(tmp_path / "in.vcf", [("chr1", 100, "v", seqs["chr1"][99], "N"), ("chr9", 1, "w", "A", "C")])
    pysam.tabix_compress(str(vcf), str(tmp_path / "in.vcf.gz"))
    out = tmp_path / "out.vcf.gz"
    assert (
        main(
            [
                "score-variants",
                "--model",
                str(model_dir),
                "--fasta",
                str(path),
                "--vcf",
                str(tmp_path / "in.vcf.gz"),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "2 records, 1 ALT alleles scored, 1 not scored (1 records on contigs missing" in capsys.readouterr().out
    assert len(read_vcf(out)) == 2
    write_vcf(vcf, [("chr1", 100, "v", "A" if seqs["chr1"][99].upper() != "A" else "C", "G")])
    assert (
        main(
            [
                "score-variants",
                "--model",
                str(model_dir),
                "--fasta",
                str(path),
                "--vcf",
                str(vcf),
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 1
    )
    assert "record 1 (chr1:100 v)" in capsys.readouterr().err
    assert len(read_vcf(out)) == 2  # the earlier output is untouched


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    import torch
    from longdna.eval.variant_scoring import score_vcf
    from longdna.settings import VariantScoringConfig
    torch.set_num_threads(1)
    model, genome, vcf, out = sys.argv[1:5]
    score_vcf(model, genome, vcf, out, VariantScoringConfig(batch_size=64), progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def test_memory_is_flat_in_the_number_of_records(genome: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Peak resident memory of scoring 20,000 records is within 1.15x that of 2,000 (each in its own process),
    and grows by less than 0.5 kB per extra record: holding every record and window pair until the end adds
    about 1.3 kB per record here, well within the 1.15x of a ~320 MB process."""
    path, seqs = genome
    torch.manual_seed(0)
    save_pretrained(
        build_model("hyenadna", d_model=8, n_layer=1, l_max=18),
        tmp_path / "model",
        pretrain={"config": {"seq_len": 16}},
    )
    rng = np.random.default_rng(0)
    peaks = {}
    for n in (2_000, 20_000):
        positions = rng.integers(1, 700, n)
        refs = [seqs["chr1"][p - 1] for p in positions]
        alts = ["ACGT"[i % 4] if ref.upper() != "ACGT"[i % 4] else "N" for i, ref in enumerate(refs)]
        lines = [f"chr1\t{p}\t.\t{ref}\t{alt}\t.\t.\t.\n" for p, ref, alt in zip(positions, refs, alts)]
        vcf = tmp_path / f"{n}.vcf"
        vcf.write_text(HEADER.replace("\tFORMAT\ts1", "") + "".join(lines))
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                MEMORY_SCRIPT,
                str(tmp_path / "model"),
                str(path),
                str(vcf),
                str(tmp_path / f"{n}.out.vcf.gz"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[n] = int(result.stdout.split()[-1])
        assert len(read_vcf(tmp_path / f"{n}.out.vcf.gz")) == n
    assert peaks[20_000] <= 1.15 * peaks[2_000], peaks
    assert (peaks[20_000] - peaks[2_000]) * 1024 / 18_000 < 512, peaks  # ru_maxrss: kB on Linux


def test_example_vcf_is_of_the_demo_genome(tmp_path: Path) -> None:
    """resources/examples/demo_variants.vcf, which README scores after the demo, agrees with the demo genome."""
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["genomes"]["demo"]["demo"]
    generate_demo_genome(tmp_path / "genome.fa.gz", DemoGenomeSpec.from_config(demo))
    torch.manual_seed(0)
    save_pretrained(
        build_model("hyenadna", d_model=8, n_layer=1, l_max=66),
        tmp_path / "model",
        pretrain={"config": {"seq_len": 64}},
    )
    counts = score(
        tmp_path / "model",
        tmp_path / "genome.fa.gz",
        REPO / "resources" / "examples" / "demo_variants.vcf",
        tmp_path / "out.vcf.gz",
    )
    assert counts == {"records": 28, "scored": 30, "not_scored": 2, "no_contig": 1, "ref_mismatch": 0}


def test_variants_config_section_is_validated() -> None:
    """The schema's settings are VariantScoringConfig's fields (less threads: the rule's), and unknown keys fail."""
    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    fields = {f.name for f in dataclasses.fields(VariantScoringConfig)} - {"threads"}
    assert set(schema["$defs"]["variant_scoring_settings"]["properties"]) == fields
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["variants"] = {"vcfs": {"demo": {"path": "x.vcf.gz"}}, "settings": {"window": 64, "on_ref_mismatch": "flag"}}
    validate_config(config, schema)
    config["variants"]["settings"]["windw"] = 64
    with pytest.raises(ConfigError, match="variants.settings.windw: unknown key"):
        validate_config(config, schema)


@pytest.mark.slow
def test_workflow_rule_scores_a_vcf(ci_workflow: Path, tmp_path: Path) -> None:
    """`snakemake variants` on the CI run (copied, so its files stay as they are): a VCF of its genome scored by
    its pretrained model, with the log and benchmark records, and the same output as the command line."""
    workdir = tmp_path / "work"
    shutil.copytree(ci_workflow, workdir, symlinks=True)
    fasta = workdir / "results" / "genome" / "demo" / "genome.fa.gz"
    chr1 = pysam.FastaFile(str(fasta)).fetch("chr1", 5000, 5100).upper()
    rows = [("chr1", 5001 + i, f"v{i}", chr1[i], "A" if chr1[i] != "A" else "G") for i in range(0, 60, 3)]
    write_vcf(workdir / "variants.vcf", rows + [("chrUn", 5, "u", "A", "C")])
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["variants"] = {"vcfs": {"toy": {"path": "variants.vcf"}}, "settings": {"batch_size": 8}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "variants", configfile=workdir / "config.yaml")
    out = workdir / "results" / "variants" / "toy" / "hyena.vcf.gz"
    records = read_vcf(out)
    assert [r.id for r in records] == [r[2] for r in rows] + ["u"]
    assert all(len(r.info["LDNA_LLR"]) == 1 for r in records[:-1]) and "LDNA_NO_CONTIG" in records[-1].info
    assert (workdir / "logs" / "variants" / "toy" / "hyena.log").exists()
    assert (workdir / "benchmarks" / "variants" / "toy" / "hyena.tsv").exists()
    score(
        workdir / "results" / "pretrain" / "hyena",
        fasta,
        workdir / "variants.vcf",
        tmp_path / "cli.vcf.gz",
        batch_size=8,
    )
    assert [r.info.get("LDNA_LLR") for r in read_vcf(tmp_path / "cli.vcf.gz")] == [
        r.info.get("LDNA_LLR") for r in records
    ]
