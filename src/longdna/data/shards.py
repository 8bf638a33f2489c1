"""Token shards: a genome as per-chromosome uint8 arrays, memory-mapped for reading.

Layout of a shard directory (the tokenize stage's output, see ``docs/formats.md``)::

    {chrom}.npy          uint8 token ids (longdna.vocab), one per base
    {chrom}.mask.npy     optional soft-mask track, np.packbits of (base was lower case), big-endian bit order
    {chrom}.json         per-chromosome statistics written by tokenize_chromosome
    manifest.parquet     chrom, length, offset, n_fraction, softmasked_fraction, split, sha256, file
    regions.parquet      chrom, start, end, split: the territory of each split

``.npy`` was chosen over Arrow IPC because a one-dimensional uint8 array needs no schema, ``np.load(...,
mmap_mode="r")`` maps it with zero copies in every DataLoader worker, and a window is a plain slice.

The tokenize stage is one :func:`tokenize_chromosome` call per sequence (group them with
:func:`scatter_chromosomes` for assemblies with many contigs), then one :func:`write_manifest`. A chromosome is
read straight from the ``.fai``/``.gzi`` offsets and encoded with ``bytes.translate`` through
``vocab.ENCODE_TABLE``: upper and lower case get the same id, the other IUPAC codes become ``N``, ``U`` becomes
``T``, anything else is an error naming the position.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna import vocab
from longdna.data.fasta import fetch_sequence, read_fai
from longdna.io import atomic_path, read_json, write_json

MANIFEST = "manifest.parquet"
REGIONS = "regions.parquet"
SPLITS = ("train", "valid", "test")


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(array))).hexdigest()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


#: the vocabulary's lookup table as bytes, for ``bytes.translate`` (one C pass, no intermediate index array)
_ENCODE_BYTES = vocab.ENCODE_TABLE.tobytes()


def encode_bases(sequence: bytes, where: str) -> np.ndarray:
    """Token ids (uint8, read-only) of a newline-free sequence; raises naming ``where`` on a non-IUPAC byte."""
    tokens = np.frombuffer(sequence.translate(_ENCODE_BYTES), dtype=np.uint8)
    if np.any(tokens == vocab.INVALID):
        vocab.encode(sequence, where=where)  # raises with the position of the first bad character
    return tokens


def tokenize_chromosome(
    fasta: str | os.PathLike, chrom: str, out_dir: str | os.PathLike, soft_mask: bool = True
) -> dict[str, Any]:
    """Tokenize one sequence of an indexed FASTA into ``out_dir/{chrom}.npy`` (+ mask, + stats JSON)."""
    out_dir = Path(out_dir)
    sequence = fetch_sequence(fasta, chrom)
    tokens = encode_bases(sequence, where=f"{fasta}:{chrom}")
    save_npy(out_dir / f"{chrom}.npy", tokens)
    stats: dict[str, Any] = {
        "chrom": chrom,
        "length": int(tokens.size),
        "n_fraction": float(np.count_nonzero(tokens == vocab.N) / max(tokens.size, 1)),
        "sha256": sha256_of(tokens),
        "file": f"{chrom}.npy",
        "mask_file": None,
        "softmasked_fraction": None,
    }
    if soft_mask:
        mask = vocab.soft_mask(np.frombuffer(sequence, dtype=np.uint8))
        save_npy(out_dir / f"{chrom}.mask.npy", np.packbits(mask))
        stats["mask_file"] = f"{chrom}.mask.npy"
        stats["softmasked_fraction"] = float(np.count_nonzero(mask) / max(mask.size, 1))
    write_json(out_dir / f"{chrom}.json", stats)
    return stats


def scatter_chromosomes(chrom_lengths: dict[str, int], groups: int) -> list[list[str]]:
    """Partition sequences into at most ``groups`` lists of similar total length (longest first, each to the
    lightest group), so that an assembly with thousands of small contigs still tokenizes in a few jobs."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    buckets: list[list[str]] = [[] for _ in range(min(groups, len(chrom_lengths)))]
    load = np.zeros(len(buckets), dtype=np.int64)
    for chrom in sorted(chrom_lengths, key=lambda c: (-chrom_lengths[c], c)):
        lightest = int(np.argmin(load))
        buckets[lightest].append(chrom)
        load[lightest] += chrom_lengths[chrom]
    order = {c: i for i, c in enumerate(chrom_lengths)}  # keep genome order inside each group
    return [sorted(b, key=order.__getitem__) for b in buckets]


def read_split_bed(path: str | os.PathLike, chrom_lengths: dict[str, int]) -> pd.DataFrame:
    """Intervals BED with a split column (chrom, start, end, split), as HyenaDNA uses for hg38."""
    rows = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 4:
                raise ValueError(f"{path}:{lineno}: expected 4 tab-separated columns (chrom start end split)")
            chrom, start, end, split = fields[0], fields[1], fields[2], fields[3]
            try:
                start_i, end_i = int(start), int(end)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: start/end must be integers, got {start!r} {end!r}") from None
            if split not in SPLITS:
                raise ValueError(f"{path}:{lineno}: split must be one of {SPLITS}, got {split!r}")
            if not 0 <= start_i < end_i:
                raise ValueError(f"{path}:{lineno}: need 0 <= start < end, got {start_i} {end_i}")
            if chrom not in chrom_lengths:
                continue  # intervals on sequences the genome stage dropped (e.g. excluded contigs)
            if end_i > chrom_lengths[chrom]:
                raise ValueError(f"{path}:{lineno}: {chrom}:{end_i} is past the end of {chrom} ({chrom_lengths[chrom]})")
            rows.append((chrom, start_i, end_i, split))
    if not rows:
        raise ValueError(f"{path}: no interval falls on the genome's sequences")
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "split"])


def split_regions(
    chrom_lengths: dict[str, int],
    valid: list[str] | None = None,
    test: list[str] | None = None,
    bed: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Territory of each split: whole chromosomes (``valid``/``test`` lists, the rest train) or a BED."""
    if bed is not None:
        return read_split_bed(bed, chrom_lengths)
    valid, test = list(valid or []), list(test or [])
    for name, chroms in (("valid", valid), ("test", test)):
        unknown = [c for c in chroms if c not in chrom_lengths]
        if unknown:
            raise ValueError(f"splits.{name}: {unknown} not in the genome (it has {sorted(chrom_lengths)})")
    both = set(valid) & set(test)
    if both:
        raise ValueError(f"splits: {sorted(both)} listed as both valid and test")
    split_of = {c: "valid" for c in valid} | {c: "test" for c in test}
    rows = [(c, 0, n, split_of.get(c, "train")) for c, n in chrom_lengths.items()]
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "split"])


def write_manifest(shard_dir: str | os.PathLike, chroms: list[str], regions: pd.DataFrame, **metadata: Any) -> None:
    """Gather per-chromosome stats into ``manifest.parquet`` and write ``regions.parquet``."""
    shard_dir = Path(shard_dir)
    stats = [read_json(shard_dir / f"{c}.json") for c in chroms]
    manifest = pd.DataFrame(stats)
    manifest["offset"] = np.concatenate([[0], np.cumsum(manifest["length"].to_numpy())[:-1]]).astype(np.int64)
    splits_on = regions.groupby("chrom")["split"].agg(lambda s: ",".join(sorted(set(s))))
    manifest["split"] = manifest["chrom"].map(splits_on).fillna("none")
    manifest = manifest[
        ["chrom", "length", "offset", "n_fraction", "softmasked_fraction", "split", "sha256", "file", "mask_file"]
    ]
    for name, frame in ((MANIFEST, manifest), (REGIONS, regions)):
        with atomic_path(shard_dir / name, suffix=".parquet") as tmp:
            table = frame.reset_index(drop=True)
            table.attrs = {k: str(v) for k, v in metadata.items()}
            table.to_parquet(tmp, index=False)


class GenomeShards:
    """Read access to a shard directory; arrays are memory-mapped lazily, per process."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not (self.directory / MANIFEST).exists():
            raise FileNotFoundError(f"{self.directory / MANIFEST}: no shard manifest (run the tokenize stage)")
        self.manifest = pd.read_parquet(self.directory / MANIFEST)
        self.regions_table = pd.read_parquet(self.directory / REGIONS)
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened in each DataLoader worker
        return {**self.__dict__, "_arrays": {}}

    @property
    def chroms(self) -> list[str]:
        return self.manifest["chrom"].tolist()

    def tokens(self, chrom: str) -> np.ndarray:
        if chrom not in self._arrays:
            row = self.manifest.loc[self.manifest["chrom"] == chrom]
            if row.empty:
                raise KeyError(f"{chrom!r} is not in {self.directory / MANIFEST}")
            self._arrays[chrom] = np.load(self.directory / row["file"].iloc[0], mmap_mode="r")
        return self._arrays[chrom]

    def soft_mask(self, chrom: str) -> np.ndarray:
        row = self.manifest.loc[self.manifest["chrom"] == chrom].iloc[0]
        if row["mask_file"] is None:
            raise ValueError(f"{self.directory}: shards were written without the soft-mask track")
        packed = np.load(self.directory / row["mask_file"], mmap_mode="r")
        return np.unpackbits(packed, count=int(row["length"])).astype(bool)

    def regions(self, split: str) -> pd.DataFrame:
        """Intervals (chrom, start, end) of ``split``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        return self.regions_table.loc[self.regions_table["split"] == split, ["chrom", "start", "end"]].reset_index(
            drop=True
        )


def verify_shards(directory: str | os.PathLike, fasta: str | os.PathLike | None = None) -> list[str]:
    """Check shards against the manifest (files, lengths, offsets, checksums) and, if given, the FASTA
    (tokens and soft mask); returns the problems, each naming the file."""
    shards = GenomeShards(directory)
    manifest_path = shards.directory / MANIFEST
    problems = []
    offsets = np.concatenate([[0], np.cumsum(shards.manifest["length"].to_numpy())[:-1]])
    if not np.array_equal(offsets, shards.manifest["offset"].to_numpy()):
        problems.append(f"{manifest_path}: offsets are not the running sum of the lengths")
    index = read_fai(fasta) if fasta is not None else None
    for row in shards.manifest.itertuples():
        path = shards.directory / row.file
        if not path.exists():
            problems.append(f"{path}: missing")
            continue
        tokens = np.load(path, mmap_mode="r")
        if tokens.dtype != np.uint8 or tokens.ndim != 1 or tokens.size != row.length:
            problems.append(f"{path}: expected {row.length} uint8 tokens, found {tokens.size} {tokens.dtype}")
            continue
        if sha256_of(tokens) != row.sha256:
            problems.append(f"{path}: sha256 differs from {manifest_path}")
        mask = None
        if isinstance(row.mask_file, str):
            mask_path = shards.directory / row.mask_file
            if not mask_path.exists():
                problems.append(f"{mask_path}: missing")
            else:
                mask = np.load(mask_path, mmap_mode="r")
                if mask.dtype != np.uint8 or mask.size != -(-row.length // 8):
                    problems.append(f"{mask_path}: expected {-(-row.length // 8)} packed bytes, found {mask.size}")
                    mask = None
        if index is None:
            continue
        if row.chrom not in index:
            problems.append(f"{path}: {row.chrom} is not in {fasta}")
            continue
        sequence = fetch_sequence(fasta, row.chrom, index=index)  # type: ignore[arg-type]
        try:
            expected = encode_bases(sequence, where=f"{fasta}:{row.chrom}")
        except vocab.InvalidSequenceError as exc:
            problems.append(str(exc))
            continue
        if expected.size != tokens.size:
            problems.append(f"{path}: {tokens.size} tokens but {row.chrom} has {expected.size} bases in {fasta}")
            continue
        differ = np.flatnonzero(expected != tokens)
        if differ.size:
            problems.append(
                f"{path}: tokens differ from {fasta} at {differ.size} positions (first at {row.chrom}:{differ[0] + 1})"
            )
        if mask is not None and not np.array_equal(np.packbits(vocab.soft_mask(sequence)), mask):
            problems.append(f"{shards.directory / row.mask_file}: soft mask differs from {fasta}")
    return problems
