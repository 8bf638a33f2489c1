"""The pretraining metrics log: ``metrics.jsonl``, TensorBoard events and the training curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longdna.io import atomic_path, reporting_disk_full, write_text

#: the metrics log in the output directory; every checkpoint keeps a copy of it as of its step
METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """``metrics.jsonl`` (one JSON object per row; ``kind`` train, valid or test) and TensorBoard events,
    written by the main process only. On resume, rows after the checkpoint's step and the end-of-run test
    rows are dropped: they are about to be recomputed.

    Snakemake deletes the outputs of a failed job -- on SLURM even while a preempted run is still writing its
    checkpoint -- so ``metrics.jsonl`` can vanish under a run. The rows are therefore also kept in memory:
    every checkpoint stores a copy of them (``history``: a resumed run takes its rows from there, from the
    file only for checkpoints without a copy), and :meth:`finish` rewrites the file whole."""

    def __init__(self, path: Path, enabled: bool, resume_step: int, history: Path | None = None) -> None:
        self.path, self.enabled, self.writer = path, enabled, None
        self.lines: list[str] = []
        if not enabled:
            return
        source = history if history is not None and history.exists() else path  # the copy is complete
        if resume_step > 0 and source.exists():
            self.lines = [
                line
                for line in source.read_text().splitlines()
                if (row := json.loads(line))["step"] <= resume_step and row["kind"] != "test"
            ]
        write_text(path, self.text())
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional at run time
            return
        self.writer = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.lines.append(json.dumps(row))
        with reporting_disk_full(self.path), open(self.path, "a") as fh:
            fh.write(self.lines[-1] + "\n")
        if self.writer is not None:
            tag = row["kind"] if row["kind"] != "test" else f"test_length_{row['seq_len']}"
            for key, value in row.items():
                if key not in ("step", "kind") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{tag}/{key}", value, row["step"])

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def finish(self) -> None:
        """Rewrite the file from memory (complete even if it was deleted or truncated during the run)."""
        if self.enabled:
            write_text(self.path, self.text())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_training_curve(metrics: Path, out: Path, title: str) -> None:
    """Training and validation loss (bits per base) against tokens seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    valid = [r for r in rows if r["kind"] == "valid"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["tokens_seen"] for r in train], [r["bits_per_base"] for r in train], label="train", lw=1)
    ax.plot([r["tokens_seen"] for r in valid], [r["bits_per_base"] for r in valid], "o-", label="valid", ms=3)
    ax.axhline(2.0, color="grey", ls=":", lw=1, label="uniform over ACGT")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("loss (bits per base)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
