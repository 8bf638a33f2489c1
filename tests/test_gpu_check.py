"""bench/gpu_check.py's dry run: the GPU script's own code on the CPU at tiny sizes, every kind of row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def test_dry_run_prints_every_row_of_the_table(tmp_path: Path) -> None:
    # Triton's interpreter would take minutes here; the Triton kernels have their own tests (test_triton_kernels.py)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--backends", "torch,numba", "--json", str(tmp_path / "rows.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())
    numerics = {(r["model"], r["backend"]): r for r in rows if r["kind"] == "numerics"}
    recurrent = ["mamba", "caduceus-ps", "caduceus-ph", "hawk-causal", "hawk-bidirectional"]
    assert set(numerics) == {(m, b) for m in recurrent for b in ("torch", "numba")} | {
        ("hyenadna", "-"),
        ("transformer", "-"),
    }
    assert all(r["ok"] and r["error"] < 1e-4 for r in numerics.values())
    forward = [r for r in rows if r["kind"] == "forward"]
    assert [r["model"] for r in forward] == ["hawk", "caduceus"] and all(r["ok"] and r["seconds"] > 0 for r in forward)
    train = [(r["model"], r["backend"], r["tokens"]) for r in rows if r["kind"] == "train" and r["tokens_per_s"]]
    for arch in ("hyenadna", "transformer", "mamba", "caduceus", "hawk"):
        backends = ["-"] if arch in ("hyenadna", "transformer") else ["torch", "numba"]
        assert [(b, n) for a, b, n in train if a == arch] == [(b, n) for n in (32, 32, 32) for b in backends]
    table = result.stdout.split("\n\n")[-1].splitlines()
    assert table[0] == "| kind | model | backend | tokens | error | ok | seconds | tokens/s | peak GiB | MFU | note |"
    assert len(table) == 2 + len(rows)
