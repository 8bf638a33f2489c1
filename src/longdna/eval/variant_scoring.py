"""Scoring the variants of a VCF with a pretrained model: ``longdna score-variants`` and the rule ``score_variants``.

Every input record comes out, in input order, with two INFO fields holding one value per ALT allele
(``Number=A``), both computed by :func:`longdna.eval.variant_effect.variant_scores`, the scoring of the
variant benchmarks:

``LDNA_LLR``
    zero-shot log-likelihood ratio of the ALT against the REF window, averaged over both strands (below).
``LDNA_EMB``
    Euclidean norm of the difference between the ALT and the REF window's mean-pooled embeddings (over the
    ``embedding_window`` positions centred on the variant, by default the whole window), averaged over both
    strands: the feature of the variant benchmarks' probe, reduced to a distance.

**Windows.** An ALT is first reduced to the bases that differ from REF: the shared prefix, then the shared suffix
is removed (``REF=ATG ALT=ACG`` is the SNV ``T>C`` one base on; ``REF=AT ALT=A`` the deletion of ``T``; in a
repeat, an indel lands on its last copy). With ``p`` its first base and ``W`` the window (default: the model's
pretraining ``seq_len``, from its ``config.json``), the REF window is the genome's ``[p - W//2, p - W//2 + W)``;
the ALT window is the same left flank, then the ALT bases, then the genome from the end of the REF bases on, cut
at ``W``. Both windows are thus aligned at the variant and have the same length; positions outside the contig
read ``N``.

**LLR, causal models**: ``sum_t log p(x_t | x_<t)`` over the ALT window minus the same over the REF window (the
first token of each is not scored). For an SNV the windows differ at the variant only. For an indel of ``k``
bases they also differ after it, the ALT window reaching ``k`` bases further (a deletion) or less far (an
insertion) into the genome: both sums run over the same ``W`` tokens, so the score is how likely the model finds
each haplotype over the same span, with no fixed cost per inserted or deleted base.
**LLR, masked models**: the masked marginal over the ``m = max(|REF|, |ALT|)`` positions from ``p`` (after
trimming; at most the window's right half): they are masked in both windows and the score is the summed
log-probability of the ALT window's tokens there minus that of the REF window's. For an SNV this is the usual
``log p(alt) - log p(ref)`` at the masked variant.

**Records that are not scored** keep a missing value (``.``), never disappear:

* a contig absent from the genome: the record is flagged ``LDNA_NO_CONTIG``;
* a REF that disagrees with the genome (bases equal after encoding, ``N`` and IUPAC ambiguity codes matching
  anything; a REF past the contig's end disagrees): an error naming the record, or with ``on_ref_mismatch:
  flag`` the flag ``LDNA_REF_MISMATCH``;
* an ALT that is not a base sequence (symbolic ``<DEL>``, breakends, ``*``): a missing value for that ALT.

The input is streamed (pysam ``VariantFile``: VCF, bgzip VCF or BCF) and the output written as bgzip (``.gz``)
or plain VCF text through a temporary file renamed at the end: memory holds at most one batch of windows,
whatever the number of records. Existing ``LDNA_*`` values of a re-scored VCF are replaced.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pysam
import torch
from pysam.libcbgzf import BGZFile
from tqdm import tqdm

from longdna import __version__, vocab
from longdna.eval.inference import autocast, inference_device
from longdna.eval.variant_effect import variant_scores
from longdna.io import atomic_path, read_json
from longdna.models import DNALanguageModel, load_pretrained
from longdna.settings import VariantScoringConfig

LLR, EMB = "LDNA_LLR", "LDNA_EMB"
NO_CONTIG, REF_MISMATCH = "LDNA_NO_CONTIG", "LDNA_REF_MISMATCH"
#: the INFO fields this module writes: (id, number, type, description)
INFO_FIELDS = (
    (
        LLR,
        "A",
        "Float",
        (
            "longdna zero-shot log-likelihood ratio of the ALT vs the REF window centred on the"
            " variant, both strands averaged (causal models: whole windows; masked models: masked"
            " marginal)"
        ),
    ),
    (EMB, "A", "Float", "longdna distance between the ALT and REF windows' mean embeddings, both strands averaged"),
    (NO_CONTIG, 0, "Flag", "longdna: the contig is not in the genome, the record is not scored"),
    (REF_MISMATCH, 0, "Flag", "longdna: REF disagrees with the genome, the record is not scored"),
)
#: records held before a flush even when few of them are scored (a run of flagged records stays bounded too)
MAX_PENDING = 4096


# -- the model -----------------------------------------------------------------------------------------------
def load_language_model(model_dir: str | os.PathLike) -> DNALanguageModel:
    """The pretrained model of a pretraining output directory (``config.json`` + ``model.safetensors``)."""
    directory = Path(model_dir)
    if (directory / "config.json").is_file():
        return load_pretrained(directory)
    if (directory / "model.json").is_file():
        raise ValueError(
            f"{directory}: a fine-tuned run; its LM head no longer scores sequences (the backbone was"
            " trained for the task): score variants with the pretrained model it started from"
        )
    raise FileNotFoundError(
        f"{directory}/config.json: not found; --model takes a pretraining output directory (results/pretrain/MODEL)"
    )


def training_context(model_dir: str | os.PathLike) -> int:
    """The model's pretraining context length (``pretrain.config.seq_len`` of its ``config.json``)."""
    path = Path(model_dir) / "config.json"
    seq_len = read_json(path).get("pretrain", {}).get("config", {}).get("seq_len")
    if not isinstance(seq_len, int):
        raise ValueError(f"{path}: no training context recorded (pretrain.config.seq_len); give the window explicitly")
    return seq_len


# -- windows -------------------------------------------------------------------------------------------------
class ReferenceGenome:
    """Bases of an indexed plain or bgzip FASTA (``pysam.FastaFile``); positions outside a contig read ``N``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.fasta = pysam.FastaFile(str(path))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{path}: not an indexed FASTA (plain, or bgzip with .fai and .gzi: `longdna download`"
                f" or `samtools faidx` makes one): {exc}"
            ) from None
        self.lengths = dict(zip(self.fasta.references, self.fasta.lengths))

    def __contains__(self, contig: str) -> bool:
        return contig in self.lengths

    def bases(self, contig: str, start: int, end: int) -> bytes:
        """Bases ``[start, end)`` (0-based) of ``contig``, ``N`` wherever that is outside it."""
        length = self.lengths[contig]
        first, last = min(max(start, 0), length), max(min(end, length), 0)
        inside = self.fasta.fetch(contig, first, last).encode() if last > first else b""
        return b"N" * (first - start) + inside + b"N" * (end - start - (first - start) - len(inside))

    def close(self) -> None:
        self.fasta.close()


def trim_alleles(ref: str, alt: str) -> tuple[int, str, str]:
    """(offset of the first differing base, REF bases, ALT bases) after removing the shared prefix, then the
    shared suffix: ``("ATG", "ACG") -> (1, "T", "C")``, ``("AT", "A") -> (1, "T", "")``."""
    prefix = 0
    while prefix < min(len(ref), len(alt)) and ref[prefix] == alt[prefix]:
        prefix += 1
    ref, alt = ref[prefix:], alt[prefix:]
    suffix = 0
    while suffix < min(len(ref), len(alt)) and ref[-1 - suffix] == alt[-1 - suffix]:
        suffix += 1
    return prefix, ref[: len(ref) - suffix], alt[: len(alt) - suffix]


@dataclass(frozen=True)
class WindowPair:
    """One ALT allele as two equal-length token windows; the variant starts at ``width // 2``."""

    ref: np.ndarray  # (width,) uint8 token ids
    alt: np.ndarray
    span: int  # positions from the variant compared by the masked marginal: max(|REF|, |ALT|), clipped


def window_pair(genome: ReferenceGenome, contig: str, start: int, ref: str, alt: str, width: int) -> WindowPair:
    """The REF and ALT windows of the variant ``ref>alt`` at 0-based ``start`` of ``contig`` (module docstring)."""
    offset, ref_bases, alt_bases = trim_alleles(ref.upper(), alt.upper())
    position = start + offset
    first = position - width // 2
    after_ref = position + len(ref_bases)
    region = genome.bases(contig, first, after_ref + width)  # both windows lie in it
    alt_window = (region[: width // 2] + alt_bases.encode() + region[after_ref - first :])[:width]
    tokens = vocab.encode(region[:width] + alt_window, where=f"{genome.path}: {contig}:{first + 1}-{first + width}")
    span = min(max(len(ref_bases), len(alt_bases)), width - width // 2)
    return WindowPair(tokens[:width], tokens[width:], span)


#: an allele made of IUPAC nucleotide codes, the characters the vocabulary encodes
_BASE_SEQUENCE = re.compile(b"[" + re.escape(bytes(np.flatnonzero(vocab.ENCODE_TABLE != vocab.INVALID))) + b"]+")


def is_base_sequence(allele: str) -> bool:
    """True for an allele of IUPAC nucleotide codes (not ``<DEL>``, a breakend, ``*`` or ``.``)."""
    return _BASE_SEQUENCE.fullmatch(allele.encode("ascii", errors="replace")) is not None


def ref_disagreement(genome: ReferenceGenome, contig: str, start: int, ref: str) -> str | None:
    """Why REF disagrees with the genome at 0-based ``start``, or None when it agrees (N matches anything)."""
    end = start + len(ref)
    if end > genome.lengths[contig]:
        return f"REF {ref!r} ends past the end of {contig} ({genome.lengths[contig]:,} bp)"
    found = genome.bases(contig, start, end)
    if found.upper() == ref.upper().encode("ascii", errors="replace"):  # the usual case: no token comparison
        return None
    if not is_base_sequence(ref):
        return f"REF {ref!r} is not a nucleotide sequence"
    expected, seen = vocab.encode(found), vocab.encode(ref)
    if np.any((expected != seen) & (expected != vocab.N) & (seen != vocab.N)):
        where = f"{contig}:{start + 1}" + (f"-{end}" if end > start + 1 else "")
        return f"REF {ref!r} disagrees with the genome's {found.decode()!r} at {where}"
    return None


# -- scoring -------------------------------------------------------------------------------------------------
def score_windows(
    model: DNALanguageModel,
    pairs: list[WindowPair],
    embedding_window: int,
    config: VariantScoringConfig,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """(LLR, embedding distance) of each window pair, in batches of ``config.batch_size``: (N,) and (N,)."""
    llrs, distances = [], []
    for begin in range(0, len(pairs), config.batch_size):
        batch = pairs[begin : begin + config.batch_size]
        ref = torch.from_numpy(np.stack([p.ref for p in batch]).astype(np.int64)).to(device)
        alt = torch.from_numpy(np.stack([p.alt for p in batch]).astype(np.int64)).to(device)
        positions = torch.full((len(batch),), ref.shape[1] // 2, device=device)
        spans = torch.tensor([p.span for p in batch], device=device)
        with autocast(config.precision, device):
            difference, llr = variant_scores(
                model, ref, alt, positions, embedding_window, config.chunk_size, zero_shot=True, spans=spans
            )
        llrs.append(llr.double().cpu().numpy())
        distances.append(difference.double().norm(dim=-1).cpu().numpy())
    return np.concatenate(llrs), np.concatenate(distances)


@dataclass
class _Pending:
    """A record waiting for its batch: per ALT the row of its window pair, or None when not scored."""

    record: pysam.VariantRecord
    rows: list[int | None]
    flag: str | None = None


@contextmanager
def _vcf_text_writer(path: Path, compressed: bool) -> Iterator[IO[bytes]]:
    with BGZFile(str(path), "wb") if compressed else open(path, "wb") as out:  # type: ignore[call-arg]
        yield out


def _open_vcf(path: Path) -> pysam.VariantFile:
    quiet = pysam.set_verbosity(0)  # htslib reports a missing tabix index as an error; streaming needs none
    try:
        return pysam.VariantFile(str(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as VCF or BCF: {exc}") from None
    finally:
        pysam.set_verbosity(quiet)


def score_vcf(
    model_dir: str | os.PathLike,
    fasta: str | os.PathLike,
    vcf: str | os.PathLike,
    out: str | os.PathLike,
    config: VariantScoringConfig,
    progress: bool = True,
) -> dict[str, int]:
    """Score every ALT of ``vcf`` against ``fasta`` with the model of ``model_dir``; write ``out`` (module
    docstring). Returns counts: ``records, scored, not_scored`` (ALT alleles), ``no_contig, ref_mismatch``."""
    vcf, out = Path(vcf), Path(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    width = config.window or training_context(model_dir)
    # a mask twice the window's width covers all of it from the centre of either strand
    embedding_window = config.embedding_window or 2 * width
    genome = ReferenceGenome(fasta)
    reader = _open_vcf(vcf)
    counts = dict.fromkeys(("records", "scored", "not_scored", "no_contig", "ref_mismatch"), 0)
    pending: list[_Pending] = []
    pairs: list[WindowPair] = []

    def flush(writer: IO[bytes]) -> None:
        llr, distance = score_windows(model, pairs, embedding_window, config, device) if pairs else ((), ())
        for item in pending:
            info = item.record.info
            for key, *_ in INFO_FIELDS:
                info.pop(key, None)
            if item.flag is not None:
                info[item.flag] = True
            elif item.rows:
                info[LLR] = tuple(None if row is None else float(llr[row]) for row in item.rows)
                info[EMB] = tuple(None if row is None else float(distance[row]) for row in item.rows)
            writer.write(str(item.record).encode())
        pending.clear()
        pairs.clear()

    try:
        device = inference_device()
        model = load_language_model(model_dir).to(device).eval()
        header = reader.header
        for key, number, kind, description in INFO_FIELDS:
            if key not in header.info:
                header.info.add(key, number, kind, description)
        header.add_meta(
            "LDNA_scoring",
            items=[
                ("model", str(model_dir)),
                ("arch", model.arch),
                ("window", str(width)),
                ("embedding_window", str(config.embedding_window or "all")),
                ("version", __version__),
            ],
        )
        compressed = out.suffix in (".gz", ".bgz")
        with atomic_path(out, suffix="".join(out.suffixes[-2:])) as tmp, _vcf_text_writer(tmp, compressed) as writer:
            writer.write(str(header).encode())
            records = tqdm(
                reader,
                desc=f"scoring {vcf.name}",
                unit=" records",
                disable=not progress,
                mininterval=0.1 if sys.stderr.isatty() else 60,
            )  # a log file gets a line a minute
            for number, record in enumerate(records, start=1):
                item = _Pending(record, [])
                if record.chrom not in genome:
                    item.flag = NO_CONTIG
                elif (problem := ref_disagreement(genome, record.chrom, record.start, record.ref)) is not None:
                    if config.on_ref_mismatch == "error":
                        raise ValueError(
                            f"{vcf}: record {number} ({record.chrom}:{record.pos}"
                            f"{'' if record.id is None else ' ' + record.id}): {problem} in {fasta}"
                            " (--on-ref-mismatch flag, or on_ref_mismatch: flag in the config, flags"
                            " such records and scores the others)"
                        )
                    item.flag = REF_MISMATCH
                else:
                    for alt in record.alts or ():
                        scorable = is_base_sequence(alt)
                        item.rows.append(len(pairs) if scorable else None)
                        if scorable:
                            pairs.append(window_pair(genome, record.chrom, record.start, record.ref, alt, width))
                scored = sum(row is not None for row in item.rows)
                counts["records"] += 1
                counts["scored"] += scored
                counts["not_scored"] += len(record.alts or ()) - scored
                counts["no_contig"] += item.flag == NO_CONTIG
                counts["ref_mismatch"] += item.flag == REF_MISMATCH
                pending.append(item)
                if len(pairs) >= config.batch_size or len(pending) >= MAX_PENDING:
                    flush(writer)
            flush(writer)
    finally:
        reader.close()
        genome.close()
    return counts


def describe(out: str | os.PathLike, counts: dict[str, int]) -> str:
    """One line on what :func:`score_vcf` did."""
    return (
        f"{out}: {counts['records']:,} records, {counts['scored']:,} ALT alleles scored, {counts['not_scored']:,}"
        f" not scored ({counts['no_contig']:,} records on contigs missing from the genome,"
        f" {counts['ref_mismatch']:,} with a REF mismatch)"
    )
