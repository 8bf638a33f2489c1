"""One pooled embedding per FASTA record: ``longdna embed``.

The vector of a record is what a fine-tuned head reads: :meth:`SequenceClassifier.strand_features` of the
record's tokens -- the backbone's hidden states pooled (``mean``, ``max``, ``last`` or ``first``) by
``pooled_features``, and with ``rc_conjoin`` also those of the reverse complement -- averaged over the strand
views. The model is a pretraining output directory (``config.json``; pooling ``mean`` unless given) or a
fine-tuning run saved with ``save_model`` (``model.json``; its fine-tuned backbone, pooling and ``rc_conjoin``
unless given).

Records are read one at a time (:func:`longdna.data.genome.fasta.read_fasta`: plain or gzip, validated) and written
as they are embedded, so memory holds one batch whatever the file's size. A batch is a run of consecutive
records of the same length (at most ``tokens_per_batch`` tokens, at least one record): nothing is padded, so
a record's vector never depends on the records around it. ``max_length`` crops longer records to their
centre (as fine-tuning's ``keep: center``).

Output, by the suffix of ``out``:

``.parquet``
    one row per record in file order: ``name`` (str, the header's first word), ``length`` (int64, the record's
    bases), ``embedding`` (fixed-size list of float32, the feature width);
``.npy``
    a float32 array (records, feature width), rows in file order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from longdna import vocab
from longdna.data.genome.fasta import read_fasta
from longdna.eval.inference import autocast, inference_device
from longdna.io import atomic_path, read_json
from longdna.models import SequenceClassifier, load_pretrained
from longdna.settings import EmbeddingConfig
from longdna.train.finetuned import MODEL_INFO_FILE, crop, load_finetuned

FORMATS = (".parquet", ".npy")
#: records per parquet row group
ROW_GROUP = 4096


def load_feature_model(
    model_dir: str | os.PathLike, pooling: str | None = None, rc_conjoin: bool | None = None
) -> SequenceClassifier:
    """The classifier whose features are the embeddings (eval mode): a fine-tuned run's own, or a pretrained
    backbone's with pooling ``mean`` and no conjoining unless given (its linear head is never applied)."""
    directory = Path(model_dir)
    if (directory / MODEL_INFO_FILE).is_file():
        meta = read_json(directory / MODEL_INFO_FILE)
        if meta.get("kind") != "classifier":
            raise ValueError(
                f"{directory / MODEL_INFO_FILE}: kind {meta.get('kind')!r}, not a fine-tuned classifier"
                " (embed with the pretrained backbone's directory)"
            )
        model, _ = load_finetuned(directory)
        model.pooling = pooling or model.pooling
        model.rc_conjoin = model.rc_conjoin if rc_conjoin is None else rc_conjoin
        return model
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"{directory}: neither config.json (a pretraining output directory) nor"
            f" {MODEL_INFO_FILE} (a fine-tuning run saved with save_model)"
        )
    return SequenceClassifier(
        load_pretrained(directory), num_outputs=1, pooling=pooling or "mean", rc_conjoin=bool(rc_conjoin)
    ).eval()


def equal_length_batches(
    records: Iterator[tuple[str, bytes]], max_length: int | None, tokens_per_batch: int
) -> Iterator[list[tuple[str, int, np.ndarray]]]:
    """Runs of consecutive records whose (cropped) token arrays have the same length: ``(name, record length,
    tokens)``, at most ``tokens_per_batch`` tokens each (at least one record)."""
    batch: list[tuple[str, int, np.ndarray]] = []
    for name, sequence in records:
        tokens = crop(vocab.encode(sequence, where=name), max_length, "center")
        if batch and (tokens.size != batch[0][2].size or (len(batch) + 1) * tokens.size > tokens_per_batch):
            yield batch
            batch = []
        batch.append((name, len(sequence), tokens))
    if batch:
        yield batch


class _ParquetSink:
    def __init__(self, path: Path, width: int) -> None:
        self.schema = pa.schema(
            [("name", pa.string()), ("length", pa.int64()), ("embedding", pa.list_(pa.float32(), width))]
        )
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.rows: list[tuple[str, int, np.ndarray]] = []

    def add(self, names: list[str], lengths: list[int], vectors: np.ndarray) -> None:
        self.rows += zip(names, lengths, vectors)
        if len(self.rows) >= ROW_GROUP:
            self._write()

    def _write(self) -> None:
        names, lengths, vectors = zip(*self.rows)
        flat = pa.array(np.stack(vectors).reshape(-1), type=pa.float32())
        embedding = pa.FixedSizeListArray.from_arrays(flat, self.schema.field("embedding").type.list_size)
        self.writer.write_table(
            pa.table([pa.array(names, pa.string()), pa.array(lengths, pa.int64()), embedding], schema=self.schema)
        )
        self.rows = []

    def finish(self) -> None:
        if self.rows:
            self._write()

    def close(self) -> None:
        self.writer.close()


class _NpySink:
    """Rows go to an unnamed temporary file, copied behind the ``.npy`` header once their number is known."""

    def __init__(self, path: Path, width: int) -> None:
        self.path, self.width, self.rows = path, width, 0
        self.raw = tempfile.TemporaryFile(dir=path.parent)

    def add(self, names: list[str], lengths: list[int], vectors: np.ndarray) -> None:
        self.raw.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        self.rows += len(vectors)

    def finish(self) -> None:
        self.raw.seek(0)
        with open(self.path, "wb") as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.width)}
            )
            shutil.copyfileobj(self.raw, out, length=1 << 24)

    def close(self) -> None:
        self.raw.close()


def embed_fasta(
    model_dir: str | os.PathLike,
    fasta: str | os.PathLike,
    out: str | os.PathLike,
    config: EmbeddingConfig,
    progress: bool = True,
) -> int:
    """Write one pooled vector per record of ``fasta`` into ``out`` (``.parquet`` or ``.npy``); returns the
    number of records."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ValueError(f"{out}: the output must end in {' or '.join(FORMATS)}")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = inference_device()
    model = load_feature_model(model_dir, config.pooling, config.rc_conjoin).to(device)
    count = 0
    with atomic_path(out, suffix=out.suffix) as tmp:
        sink = (_ParquetSink if out.suffix == ".parquet" else _NpySink)(tmp, model.feature_size)
        try:
            with tqdm(desc=f"embedding {Path(fasta).name}", unit=" records", disable=not progress) as bar:
                for batch in equal_length_batches(read_fasta(fasta), config.max_length, config.tokens_per_batch):
                    ids = torch.from_numpy(np.stack([tokens for *_, tokens in batch]).astype(np.int64)).to(device)
                    with torch.no_grad(), autocast(config.precision, device):
                        vectors = model.strand_features(ids).mean(0)
                    sink.add(
                        [name for name, *_ in batch], [length for _, length, _ in batch], vectors.float().cpu().numpy()
                    )
                    count += len(batch)
                    bar.update(len(batch))
            sink.finish()
        finally:
            sink.close()
    return count
