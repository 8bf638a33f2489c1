"""Token shards: a genome as per-chromosome uint8 arrays, memory-mapped for reading.

Layout of a shard directory (the tokenize stage's output, see ``docs/formats.md``)::

    {chrom}.npy          uint8 token ids (longdna.vocab), one per base
    {chrom}.mask.npy     optional soft-mask track, np.packbits of (base was lower case), big-endian bit order
    {chrom}.json         per-chromosome statistics written by tokenize_chromosome
    manifest.parquet     chrom, length, offset, n_fraction, softmasked_fraction, split, sha256, file
    regions.parquet      chrom, start, end, split: the territory of each split

``.npy`` was chosen over Arrow IPC because a one-dimensional uint8 array needs no schema, ``np.load(...,
mmap_mode="r")`` maps it with zero copies in every DataLoader worker, and a window is a plain slice.

The tokenize stage is one :func:`tokenize_chromosome` call per sequence, then one :func:`write_manifest`. A
chromosome is read straight from the ``.fai``/``.gzi`` offsets and encoded with ``bytes.translate`` through
``vocab.ENCODE_TABLE``: upper and lower case get the same id, the other IUPAC codes become ``N``, ``U`` becomes
``T``, anything else is an error naming the position.

Reading checks first: :class:`GenomeShards` verifies every shard against the manifest when it opens a
directory (the ``.npy`` structure and size, the sha256 of the tokens, every token a base) and raises
:class:`ShardError` naming each damaged file and what is wrong with it. It reads each shard once (sha256 and
token range in one pass), the files spread over one thread per CPU core: 1.1 CPU-seconds per GB of shards in
the page cache (``bench/bench_verify.py``; hg38's 3.1 GB: about 3.5 s on one core), against minutes to days of
training on them. :func:`verify_shards` (``longdna verify``) reports the same problems, plus any disagreement
with the FASTA, without raising.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from longdna import vocab
from longdna.data.genome.fasta import fetch_sequence, read_fai
from longdna.io import atomic_path, read_json, remove_temporaries, write_json

MANIFEST = "manifest.parquet"
REGIONS = "regions.parquet"
SPLITS = ("train", "valid", "test")
MANIFEST_COLUMNS = (
    "chrom",
    "length",
    "offset",
    "n_fraction",
    "softmasked_fraction",
    "split",
    "sha256",
    "file",
    "mask_file",
)
PACKED = "packed bytes"  # what a soft-mask file holds
#: bytes of a shard checked at a time (hash and token range in one pass while the block is in cache)
CHECK_BLOCK = 1 << 22


class ShardError(ValueError):
    """A token shard or its manifest is missing, damaged or inconsistent; the message names the file."""


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
    for name in (f"{chrom}.npy", f"{chrom}.mask.npy", f"{chrom}.json"):
        remove_temporaries(out_dir / name)  # of a job killed earlier
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
                raise ValueError(
                    f"{path}:{lineno}: {chrom}:{end_i} is past the end of {chrom} ({chrom_lengths[chrom]})"
                )
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
    for name in (MANIFEST, REGIONS):
        remove_temporaries(shard_dir / name)  # of a job killed earlier
    stats = [read_json(shard_dir / f"{c}.json") for c in chroms]
    manifest = pd.DataFrame(stats)
    manifest["offset"] = np.concatenate([[0], np.cumsum(manifest["length"].to_numpy())[:-1]]).astype(np.int64)
    splits_on = regions.groupby("chrom")["split"].agg(lambda s: ",".join(sorted(set(s))))
    manifest["split"] = manifest["chrom"].map(splits_on).fillna("none")
    manifest = manifest[list(MANIFEST_COLUMNS)]
    for name, frame in ((MANIFEST, manifest), (REGIONS, regions)):
        with atomic_path(shard_dir / name, suffix=".parquet") as tmp:
            table = frame.reset_index(drop=True)
            table.attrs = {k: str(v) for k, v in metadata.items()}
            table.to_parquet(tmp, index=False)


def read_npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(data offset, shape, dtype) from a ``.npy`` header; :class:`ShardError` if ``path`` is not one."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            return fh.tell(), shape, dtype
    except FileNotFoundError:
        raise ShardError(f"{path}: missing") from None
    except (ValueError, EOFError, SyntaxError) as err:
        raise ShardError(f"{path}: not a NumPy .npy file (foreign bytes where its header should be: {err})") from None


def open_npy(path: Path, count: int, what: str = "uint8 tokens") -> np.memmap:
    """Memory map of the ``count`` uint8 values of a 1-D ``.npy`` file, after checking its header and size."""
    offset, shape, dtype = read_npy_layout(path)
    if dtype != np.uint8 or shape != (count,):
        raise ShardError(f"{path}: expected {count} {what}, found a {dtype} array of shape {shape}")
    size, expected = path.stat().st_size, offset + count
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise ShardError(
            f"{path}: {state}: {size:,} bytes on disk, its header and the manifest make {expected:,}"
            f" ({count:,} values after a {offset}-byte header)"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(count,))


def _shard_problems(directory: Path, row: Any) -> list[str]:
    """Everything wrong with one manifest row's files: structure, size, sha256, token range, soft-mask size."""
    problems = []
    path = directory / row.file
    try:
        tokens = open_npy(path, int(row.length))
        digest, first_bad = hashlib.sha256(), None
        for start in range(0, tokens.size, CHECK_BLOCK):
            block = tokens[start : start + CHECK_BLOCK]
            digest.update(memoryview(block))
            if first_bad is None and (block.min() < vocab.A or block.max() > vocab.N):
                first_bad = start + int(np.flatnonzero((block < vocab.A) | (block > vocab.N))[0])
        if digest.hexdigest() != row.sha256:
            problems.append(
                f"{path}: sha256 differs from {directory / MANIFEST} (the file changed after"
                f" tokenization: {digest.hexdigest()[:16]}... instead of {row.sha256[:16]}...)"
            )
        if first_bad is not None:
            problems.append(
                f"{path}: token id {tokens[first_bad]} at {row.chrom}:{first_bad + 1} is not a base"
                f" (a shard holds only A C G T N, ids {vocab.A}-{vocab.N}): foreign bytes in the file"
            )
    except ShardError as err:
        problems.append(str(err))
    except OSError as err:
        problems.append(f"{path}: unreadable: {err}")
    if isinstance(row.mask_file, str):
        try:
            open_npy(directory / row.mask_file, -(-int(row.length) // 8), PACKED)
        except ShardError as err:
            problems.append(str(err))
        except OSError as err:
            problems.append(f"{directory / row.mask_file}: unreadable: {err}")
    return problems


def _workers(jobs: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(jobs, cores))


class GenomeShards:
    """Read access to a shard directory, verified against its manifest when opened (``verify``); arrays are
    memory-mapped lazily, per process."""

    def __init__(self, directory: str | os.PathLike, verify: bool = True) -> None:
        self.directory = Path(directory)
        if not (self.directory / MANIFEST).exists():
            raise FileNotFoundError(f"{self.directory / MANIFEST}: no shard manifest (run the tokenize stage)")
        self.manifest = _read_table(self.directory / MANIFEST, MANIFEST_COLUMNS)
        self.regions_table = _read_table(self.directory / REGIONS, ("chrom", "start", "end", "split"))
        self._arrays: dict[str, np.ndarray] = {}
        if verify:
            problems = self.problems()
            if problems:
                raise ShardError(
                    f"{self.directory}: the token shards do not match their manifest:\n  "
                    + "\n  ".join(problems)
                    + "\nDelete the files named (or the whole directory) and rerun the workflow: it tokenizes them"
                    f" again. `longdna verify {self.directory}` lists the problems."
                )

    def __getstate__(self) -> dict[str, Any]:  # memmaps are reopened in each DataLoader worker
        return {**self.__dict__, "_arrays": {}}

    @property
    def chroms(self) -> list[str]:
        return self.manifest["chrom"].tolist()

    def problems(self) -> list[str]:
        """Every disagreement between the shard files and the manifest (each naming its file), in manifest order."""
        problems = []
        offsets = np.concatenate([[0], np.cumsum(self.manifest["length"].to_numpy())[:-1]])
        if not np.array_equal(offsets, self.manifest["offset"].to_numpy()):
            problems.append(f"{self.directory / MANIFEST}: offsets are not the running sum of the lengths")
        rows = list(self.manifest.itertuples())
        with ThreadPoolExecutor(_workers(len(rows))) as pool:  # hashlib and NumPy release the GIL
            for found in pool.map(lambda row: _shard_problems(self.directory, row), rows):
                problems += found
        return problems

    def identity(self) -> dict[str, Any]:
        """What the shards hold, for run fingerprints: each sequence's name, length and sha256, and each split
        region."""
        return {
            "sequences": [
                [str(c), int(n), str(h)]
                for c, n, h in self.manifest[["chrom", "length", "sha256"]].itertuples(index=False)
            ],
            "regions": [
                [str(c), int(a), int(b), str(s)]
                for c, a, b, s in self.regions_table[["chrom", "start", "end", "split"]].itertuples(index=False)
            ],
        }

    def _row(self, chrom: str) -> Any:
        row = self.manifest.loc[self.manifest["chrom"] == chrom]
        if row.empty:
            raise KeyError(f"{chrom!r} is not in {self.directory / MANIFEST}")
        return row.iloc[0]

    def tokens(self, chrom: str) -> np.ndarray:
        if chrom not in self._arrays:
            row = self._row(chrom)
            self._arrays[chrom] = open_npy(self.directory / row["file"], int(row["length"]))
        return self._arrays[chrom]

    def soft_mask(self, chrom: str) -> np.ndarray:
        row = self._row(chrom)
        if row["mask_file"] is None:
            raise ValueError(f"{self.directory}: shards were written without the soft-mask track")
        packed = open_npy(self.directory / row["mask_file"], -(-int(row["length"]) // 8), PACKED)
        return np.unpackbits(packed, count=int(row["length"])).astype(bool)

    def regions(self, split: str) -> pd.DataFrame:
        """Intervals (chrom, start, end) of ``split``; :class:`ShardError` if the split has none."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        table = self.regions_table.loc[self.regions_table["split"] == split, ["chrom", "start", "end"]]
        if table.empty:
            raise ShardError(
                f"{self.directory / REGIONS}: the genome has no {split} split: pretraining needs train, valid and"
                f" test territory. Give the genome's splits.{split} (chromosomes) in the config, or {split}"
                " intervals in its splits BED; the workflow then writes the regions again."
            )
        return table.reset_index(drop=True)


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise ShardError(f"{path}: missing (run the tokenize stage)") from None
    except Exception as err:  # pyarrow's errors for foreign or truncated bytes share no useful base class
        raise ShardError(f"{path}: unreadable as Parquet ({type(err).__name__}: {err})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ShardError(f"{path}: columns {missing} missing (found {list(table.columns)})")
    return table


def verify_shards(directory: str | os.PathLike, fasta: str | os.PathLike | None = None) -> list[str]:
    """Check shards against the manifest (files, sizes, offsets, checksums, token range) and, if given, the
    FASTA (tokens and soft mask); returns every problem, each naming its file. Raises only when the manifest
    itself is missing or unreadable (:class:`FileNotFoundError`, :class:`ShardError`)."""
    shards = GenomeShards(directory, verify=False)
    problems = shards.problems()
    if fasta is None:
        return problems

    def readable(path: Path, count: int, what: str) -> np.ndarray | None:  # None: reported broken above
        try:
            return open_npy(path, count, what)
        except (ShardError, OSError):
            return None

    try:
        index = read_fai(fasta)
    except (OSError, ValueError) as err:
        return [*problems, str(err)]
    for row in shards.manifest.itertuples():
        path = shards.directory / row.file
        tokens = readable(path, int(row.length), "uint8 tokens")
        if tokens is None:
            continue
        if row.chrom not in index:
            problems.append(f"{path}: {row.chrom} is not in {fasta}")
            continue
        try:
            sequence = fetch_sequence(fasta, row.chrom, index=index)
            expected = encode_bases(sequence, where=f"{fasta}:{row.chrom}")
        except (OSError, ValueError) as err:
            problems.append(str(err))
            continue
        if expected.size != tokens.size:
            problems.append(f"{path}: {tokens.size} tokens but {row.chrom} has {expected.size} bases in {fasta}")
            continue
        differ = np.flatnonzero(expected != tokens)
        if differ.size:
            problems.append(
                f"{path}: tokens differ from {fasta} at {differ.size} positions (first at {row.chrom}:{differ[0] + 1})"
            )
        if isinstance(row.mask_file, str):
            mask = readable(mask_path := shards.directory / row.mask_file, -(-int(row.length) // 8), PACKED)
            if mask is not None and not np.array_equal(np.packbits(vocab.soft_mask(sequence)), mask):
                problems.append(f"{mask_path}: soft mask differs from {fasta}")
    return problems
