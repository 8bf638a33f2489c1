"""The genome stage: acquire a reference genome and normalise it to bgzipped FASTA + ``.fai`` + ``.gzi``.

A genome is described by a plain dict (the workflow config's ``genome`` section). Keys:

``source`` (str)
    One of:

    * ``"demo"``: the synthetic genome of :mod:`longdna.data.genome.demo`, built from the ``demo`` key;
    * a UCSC assembly name (``hg38``, ``hg19``, ``hs1``, ``mm39``, ``mm10``, ``dm6``, ``ce11``, ``danRer11``,
      ...: lower-case letters, optional further letters, then digits), resolved to
      ``{base_url}/{name}/bigZips/{name}.fa.gz`` (default ``base_url``
      ``https://hgdownload.soe.ucsc.edu/goldenPath``) and verified against ``md5sum.txt`` of that folder;
    * an ``http://``, ``https://``, ``ftp://`` URL (downloaded into the cache) or a ``file://`` URL;
    * a local path (read in place). A path that exists wins over a UCSC name; ``demo`` is reserved.

    Plain, gzip and bgzip FASTA are accepted, whatever the file name.
``ensembl`` (dict, instead of ``source``)
    ``species`` (``homo_sapiens``), ``release`` (``110``), optional ``assembly`` (``GRCh38``; default: the one
    the release has), ``type`` (``dna_sm``, soft-masked, default; ``dna``; ``dna_rm``) and ``base_url``
    (default ``https://ftp.ensembl.org/pub``; Ensembl Genomes divisions such as
    ``https://ftp.ensemblgenomes.ebi.ac.uk/pub/plants`` share the layout). The folder
    ``{base_url}/release-{release}/fasta/{species}/dna/`` is listed and
    ``{Species}.{assembly}.{type}.primary_assembly.fa.gz`` is taken, or ``{...}.{type}.toplevel.fa.gz`` where
    the species has no primary assembly (``primary_assembly`` leaves out haplotypes and patches). The file is
    verified against the folder's ``CHECKSUMS`` (BSD ``sum``).
``sha256`` / ``md5`` (hex str)
    Expected checksum of the downloaded or local file; replaces the published listing.
``checksum_listing`` (URL)
    A ``md5sum``/``sha256sum``/``CHECKSUMS`` listing naming the file, for URL sources that publish one.
``base_url`` (URL)
    UCSC mirror for assembly names (see ``source``).
``preset`` (``"all"``, default, or ``"primary"``)
    ``primary`` adds :data:`PRIMARY_EXCLUDE` to ``exclude``: alternate haplotypes (``_alt``, ``_hap1``), fix
    patches (``_fix``), unlocalised and unplaced contigs (``_random``, ``chrUn``, Ensembl's ``KI270728.1``-like
    accessions), mitochondria (``chrM``, ``MT``) and ``chrEBV``.
``include`` / ``exclude`` (lists of regular expressions)
    A sequence is kept if its name (the header up to the first space) matches some ``include`` pattern (all
    are kept without ``include``) and no ``exclude`` pattern; patterns use ``re.search``, so anchor them
    (``^chr[0-9XY]+$``) to match whole names.
``prefix`` (str)
    Prepended to every kept name, e.g. ``chr`` to give an Ensembl genome the UCSC-style names that
    GenomicBenchmarks' interval files use.
``demo`` (dict)
    :class:`~longdna.data.genome.demo.DemoGenomeSpec` fields (``seed``, ``chromosome_lengths``, ...).

Example::

    genome: {source: hg38, preset: primary}
    genome: {ensembl: {species: mus_musculus, release: 110}, preset: primary, prefix: chr}
    genome: {source: https://storage.googleapis.com/basenji_barnyard2/hg38.ml.fa.gz}
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from longdna.data.download import (
    Checksum,
    download,
    download_and_read,
    fetch_text,
    url_filename,
    verify_checksum,
)
from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
from longdna.data.genome.fasta import FastaFormatError, read_fasta, write_bgzip_fasta
from longdna.data.tokens.shards import read_split_bed

UCSC_BASE_URL = "https://hgdownload.soe.ucsc.edu/goldenPath"
ENSEMBL_BASE_URL = "https://ftp.ensembl.org/pub"
UCSC_NAME = re.compile(r"[a-z][A-Za-z]*[0-9]+")
ENSEMBL_TYPES = ("dna_sm", "dna", "dna_rm")
PRIMARY_EXCLUDE: tuple[str, ...] = (
    r"_alt$",
    r"_fix$",
    r"_hap\d+$",
    r"_random$",
    r"^chrUn",
    r"^(chrM|chrMT|MT|M)$",
    r"^chrEBV$",
    r"^[A-Z]{1,6}_?\d+\.\d+$",  # unplaced scaffolds under their INSDC accession (Ensembl: KI270728.1)
)
PRESETS: dict[str, tuple[str, ...]] = {"all": (), "primary": PRIMARY_EXCLUDE}
SPEC_KEYS = frozenset(
    {
        "source",
        "ensembl",
        "sha256",
        "md5",
        "checksum_listing",
        "base_url",
        "preset",
        "include",
        "exclude",
        "prefix",
        "demo",
    }
)
ENSEMBL_KEYS = frozenset({"species", "release", "assembly", "type", "base_url"})


@dataclass(frozen=True)
class GenomeSource:
    """Where a genome comes from: ``kind`` is ``demo``, ``url`` (to download) or ``path`` (read in place)."""

    kind: str
    location: str  # URL, path, or "" for demo
    checksum: Checksum | None = None
    checksum_listing: str | None = None


def _checksum_from_spec(spec: dict[str, Any]) -> Checksum | None:
    given = [key for key in ("sha256", "md5") if spec.get(key)]
    if len(given) > 1:
        raise ValueError("genome: give one of sha256 and md5, not both")
    return Checksum(given[0], str(spec[given[0]]).strip(), f"genome.{given[0]}") if given else None


def _check_keys(spec: dict[str, Any]) -> None:
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"genome: unknown key(s) {sorted(unknown)} (known: {sorted(SPEC_KEYS)})")
    if ("source" in spec) == ("ensembl" in spec):
        raise ValueError("genome: give exactly one of 'source' and 'ensembl'")


def resolve_genome_source(spec: dict[str, Any]) -> GenomeSource:
    """Turn a genome spec into a concrete location and the checksum to verify it with.

    Only an Ensembl spec touches the network (to list the release's folder).
    """
    _check_keys(spec)
    checksum = _checksum_from_spec(spec)
    listing = spec.get("checksum_listing")
    if "ensembl" in spec:
        url, ensembl_listing = _resolve_ensembl(spec["ensembl"])
        return GenomeSource("url", url, checksum, listing or ensembl_listing)
    source = str(spec["source"])
    if source == "demo":
        return GenomeSource("demo", "")
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme == "file":
        return GenomeSource("path", urllib.request.url2pathname(urllib.parse.urlsplit(source).path), checksum)
    if scheme in ("http", "https", "ftp"):
        return GenomeSource("url", source, checksum, listing)
    if Path(source).exists():
        return GenomeSource("path", source, checksum)
    if UCSC_NAME.fullmatch(source):
        folder = f"{str(spec.get('base_url', UCSC_BASE_URL)).rstrip('/')}/{source}/bigZips"
        return GenomeSource("url", f"{folder}/{source}.fa.gz", checksum, listing or f"{folder}/md5sum.txt")
    raise ValueError(
        f"genome.source {source!r}: not 'demo', a URL, an existing file or a UCSC assembly name (like hg38)"
    )


def _resolve_ensembl(ensembl: dict[str, Any]) -> tuple[str, str]:
    unknown = set(ensembl) - ENSEMBL_KEYS
    if unknown:
        raise ValueError(f"genome.ensembl: unknown key(s) {sorted(unknown)} (known: {sorted(ENSEMBL_KEYS)})")
    missing = {"species", "release"} - set(ensembl)
    if missing:
        raise ValueError(f"genome.ensembl: missing {sorted(missing)}")
    species = str(ensembl["species"]).lower()
    kind = str(ensembl.get("type", "dna_sm"))
    if kind not in ENSEMBL_TYPES:
        raise ValueError(f"genome.ensembl.type must be one of {ENSEMBL_TYPES}, not {kind!r}")
    base = str(ensembl.get("base_url", ENSEMBL_BASE_URL)).rstrip("/")
    folder = f"{base}/release-{int(ensembl['release'])}/fasta/{species}/dna/"
    listing = fetch_text(folder)
    assembly = re.escape(str(ensembl["assembly"])) if ensembl.get("assembly") else r"[^\s\"'<>/]+?"
    for level in ("primary_assembly", "toplevel"):
        pattern = rf"{re.escape(species.capitalize())}\.{assembly}\.{kind}\.{level}\.fa\.gz"
        names = sorted(set(re.findall(pattern, listing)))
        if names:
            return folder + names[0], folder + "CHECKSUMS"
    raise ValueError(
        f"genome.ensembl: {folder} has no {kind} primary_assembly or toplevel FASTA"
        + (f" for assembly {ensembl['assembly']}" if ensembl.get("assembly") else "")
    )


def _cache_path(cache_dir: Path, url: str) -> Path:
    """Mirror of the URL's host and path under the cache, so distinct sources never share a file."""
    parts = urllib.parse.urlsplit(url)
    folder = [p for p in urllib.parse.unquote(parts.path).split("/")[:-1] if p not in ("", ".", "..")]
    return cache_dir.joinpath(parts.netloc.replace(":", "_") or "local", *folder, url_filename(url))


def acquire_genome(spec: dict[str, Any], cache_dir: str | os.PathLike, progress: bool = True) -> Path:
    """The genome FASTA file as given by the source (downloaded and verified, or generated), unfiltered."""
    return _acquire(resolve_genome_source(spec), spec, Path(cache_dir), progress)


def _acquire(source: GenomeSource, spec: dict[str, Any], cache_dir: Path, progress: bool) -> Path:
    if source.kind == "demo":
        try:
            demo = DemoGenomeSpec.from_config(spec.get("demo") or {})
        except TypeError as exc:  # an unknown field name
            raise ValueError(f"genome.demo: {exc}") from None
        key = hashlib.sha256(json.dumps(demo.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
        path = cache_dir / f"demo-{key}.fa.gz"
        if not path.exists():
            generate_demo_genome(path, demo)
        return path
    if source.kind == "url":
        return download(
            source.location,
            _cache_path(cache_dir, source.location),
            source.checksum,
            checksum_listing=source.checksum_listing,
            progress=progress,
        )
    path = Path(source.location)
    if not path.is_file():
        raise FileNotFoundError(f"genome.source: {path} does not exist")
    if source.checksum is not None:
        verify_checksum(path, source.checksum, str(path))
    return path


def known_sequence_lengths(spec: dict[str, Any]) -> dict[str, int] | None:
    """Name -> length of the sequences :func:`prepare_genome` writes, where the spec alone determines them (the
    demo genome); None for other sources (their ``.fai`` tells, once prepared)."""
    if spec.get("source") != "demo":
        return None
    demo = DemoGenomeSpec.from_config(spec.get("demo") or {})
    keep, prefix = sequence_selector(spec), str(spec.get("prefix", ""))
    return {prefix + name: length for name, length in zip(demo.chromosome_names, demo.chromosome_lengths) if keep(name)}


def _compile(spec: dict[str, Any], key: str) -> list[re.Pattern[str]]:
    patterns = spec.get(key) or []
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled = []
    for i, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(str(pattern)))
        except re.error as exc:
            raise ValueError(f"genome.{key}[{i}]: invalid regular expression {pattern!r}: {exc}") from None
    return compiled


def sequence_selector(spec: dict[str, Any]) -> Callable[[str], bool]:
    """Predicate on sequence names from the spec's ``preset``/``include``/``exclude``."""
    preset = str(spec.get("preset", "all"))
    if preset not in PRESETS:
        raise ValueError(f"genome.preset must be one of {sorted(PRESETS)}, not {preset!r}")
    include = _compile(spec, "include")
    exclude = [re.compile(p) for p in PRESETS[preset]] + _compile(spec, "exclude")

    def keep(name: str) -> bool:
        return (not include or any(p.search(name) for p in include)) and not any(p.search(name) for p in exclude)

    return keep


def prepare_genome(
    spec: dict[str, Any], out_path: str | os.PathLike, cache_dir: str | os.PathLike, progress: bool = True
) -> list[tuple[str, int]]:
    """Acquire the genome, keep the selected sequences and write them as bgzip FASTA (+ ``.fai``, ``.gzi``)
    to ``out_path``; returns ``[(name, length), ...]``. Nothing is written if any record is invalid or no
    sequence is selected. A cached download that is not valid FASTA is downloaded again, once
    (:func:`~longdna.data.download.download_and_read`)."""
    _check_keys(spec)
    keep = sequence_selector(spec)
    prefix = str(spec.get("prefix", ""))

    def normalise(source: Path) -> list[tuple[str, int]]:
        dropped: list[str] = []

        def selected() -> Iterator[tuple[str, bytes]]:
            kept = 0
            for name, sequence in read_fasta(source):
                if keep(name):
                    kept += 1
                    yield prefix + name, sequence
                else:
                    dropped.append(name)
            if not kept:
                raise ValueError(
                    f"{source}: no sequence passes the genome's include/exclude/preset selection"
                    f" ({len(dropped)} sequences, e.g. {dropped[:5]})"
                )

        written = write_bgzip_fasta(selected(), out_path)
        if dropped:
            shown = ", ".join(dropped[:10]) + (", ..." if len(dropped) > 10 else "")
            print(f"{out_path}: kept {len(written)} sequences, dropped {len(dropped)} ({shown})", file=sys.stderr)
        return written

    source = resolve_genome_source(spec)
    if source.kind == "url":
        return download_and_read(
            source.location,
            _cache_path(Path(cache_dir), source.location),
            normalise,
            "reading it as FASTA",
            (FastaFormatError,),
            source.checksum,
            checksum_listing=source.checksum_listing,
            progress=progress,
        )
    return normalise(_acquire(source, spec, Path(cache_dir), progress))


def fetch_split_bed(
    url_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    checksum: Checksum | None = None,
    progress: bool = True,
) -> Path:
    """A splits BED (chrom, start, end, split; e.g. Basenji's ``sequences_human.bed`` that HyenaDNA uses):
    downloaded into the cache if a URL, checked for existence if a path."""
    text = str(url_or_path)
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme in ("http", "https", "ftp"):
        return download(text, _cache_path(Path(cache_dir), text), checksum, progress=progress)
    path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(text).path) if scheme == "file" else text)
    if not path.is_file():
        raise FileNotFoundError(f"splits BED {path} does not exist")
    if checksum is not None:
        verify_checksum(path, checksum, str(path))
    return path


def split_bed_regions(
    url_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike,
    chrom_lengths: dict[str, int],
    progress: bool = True,
) -> pd.DataFrame:
    """The split regions of a splits BED (:func:`longdna.data.tokens.shards.read_split_bed`), downloaded into the
    cache if a URL (a cached copy that does not read as a splits BED is downloaded again, once)."""
    text = str(url_or_path)
    if urllib.parse.urlsplit(text).scheme.lower() in ("http", "https", "ftp"):
        return download_and_read(
            text,
            _cache_path(Path(cache_dir), text),
            lambda path: read_split_bed(path, chrom_lengths),
            "reading it as a splits BED",
            progress=progress,
        )
    return read_split_bed(fetch_split_bed(url_or_path, cache_dir, progress=progress), chrom_lengths)
