"""The fault suite: what a changed configuration, damaged data, a bad download, a full disk or a damaged
checkpoint does to a run. Each case behaves as docs/reruns.md and docs/formats.md state, with an error that
names the file and the cause."""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import demo_shards
from http_server import LocalHTTPServer
from safetensors.torch import load_file, save_file

from longdna import cli, fingerprint, io, vocab
from longdna.data import download as download_module
from longdna.data.benchmarks.format import BenchmarkInfo, write_benchmark
from longdna.data.download import InvalidDownloadError, download
from longdna.data.genome.demo import DemoGenomeSpec
from longdna.data.genome.prepare import prepare_genome, split_bed_regions
from longdna.data.tokens.shards import GenomeShards, ShardError, split_regions, tokenize_chromosome, write_manifest
from longdna.io import DiskFullError, atomic_path, sort_safetensors_metadata
from longdna.settings import FinetuneConfig, PretrainConfig
from longdna.train import pretrain as engine
from longdna.train.checkpoints import CheckpointStore
from longdna.train.finetune import finetune
from longdna.train.preemption import Preempted
from longdna.train.pretrain import pretrain

TINY = {"d_model": 16, "n_layer": 1, "d_inner": 32, "filter_order": 8, "embed_dropout": 0.0}
SETTINGS = {
    "seq_len": 64,
    "batch_size": 4,
    "max_steps": 6,
    "lr": 3e-3,
    "warmup_steps": 1,
    "eval_every": 2,
    "eval_windows": 2,
    "log_every": 1,
    "checkpoint_every": 2,
    "keep_checkpoints": 3,
    "threads": 1,
}
#: metrics.jsonl columns that measure the machine, not the model (docs/formats.md "Reproducibility")
MEASURED = ("tokens_per_s", "memory_mb")


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    spec = DemoGenomeSpec(
        chromosome_lengths=(60_000, 20_000, 20_000),
        telomere_gap=500,
        centromere_gap=1_000,
        short_gaps=0,
        isochore_mean_length=10_000,
    )
    return demo_shards(root, spec)


def lengths_of(shard_dir: Path) -> dict[str, int]:
    manifest = GenomeShards(shard_dir, verify=False).manifest
    return dict(zip(manifest["chrom"], manifest["length"].astype(int)))


def settings(**overrides: Any) -> PretrainConfig:
    return PretrainConfig.from_dict({**SETTINGS, **overrides})


def train(shards: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    return pretrain("hyenadna", TINY, shards, out, settings(**overrides), progress=False)


@contextmanager
def preempted_at(step: int):
    """SIGTERM to this process after training ``step``: the engine checkpoints and raises Preempted."""
    original = engine.Trainer.train_step

    def train_step(self: engine.Trainer, *args: Any) -> Any:
        result = original(self, *args)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    engine.Trainer.train_step = train_step
    try:
        with pytest.raises(Preempted):
            yield
    finally:
        engine.Trainer.train_step = original


def trajectory(out: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without the columns that measure the machine."""
    rows = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in row.items() if k not in MEASURED} for row in rows]


def same_bytes(a: Path, b: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


PRETRAIN_FILES = ("model.safetensors", "config.json", "tokenizer.json", "summary.json")


# -- fingerprint: resume only the same run --------------------------------------------------------------------
def test_changed_settings_train_afresh_as_a_fresh_run_would(
    shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """pretrain.lr changed after a preemption: the checkpoints are set aside (named in the log), and the run
    equals a fresh run with the new lr, byte for byte."""
    out = tmp_path / "run"
    with preempted_at(4):
        train(shards, out)
    capfd.readouterr()
    train(shards, out, lr=1e-3)
    log = capfd.readouterr().err
    assert "step-00000004 belongs to another run (changed: settings; settings lr 0.003 -> 0.001)" in log
    (stale,) = tmp_path.glob("run/checkpoints.stale-*")
    assert f"moved to {stale}" in log and "training starts from step 0" in log
    assert CheckpointStore(stale).steps() == [2, 4]  # kept, not deleted
    old = json.loads((stale / "best.json").read_text())
    assert stale.name.startswith("checkpoints.stale-") and old["step"] in (2, 4)
    train(shards, tmp_path / "fresh", lr=1e-3)
    assert trajectory(out) == trajectory(tmp_path / "fresh")
    same_bytes(out, tmp_path / "fresh", PRETRAIN_FILES)


def test_rerun_of_a_finished_run_trains_again(shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """Lowering max_steps after a finished run (the issue's 240 -> 20) and a forced rerun of an unchanged one
    (--forcerun pretrain_model) both train from step 0; the latter reproduces the same bytes."""
    out = tmp_path / "run"
    train(shards, out)
    first = {name: (out / name).read_bytes() for name in PRETRAIN_FILES}
    capfd.readouterr()
    train(shards, out)  # what --forcerun does: the same job again
    assert "holds a finished run of 6 steps (same fingerprint: a rerun trains again)" in capfd.readouterr().err
    assert {name: (out / name).read_bytes() for name in PRETRAIN_FILES} == first
    summary = train(shards, out, max_steps=3)
    assert "holds a finished run of 6 steps (changed: settings)" in capfd.readouterr().err
    assert summary["steps"] == summary["exported_step"] == 3
    assert [r["step"] for r in trajectory(out) if r["kind"] == "train"] == [1, 2, 3]
    train(shards, tmp_path / "fresh", max_steps=3)
    same_bytes(out, tmp_path / "fresh", PRETRAIN_FILES)
    assert len(list(tmp_path.glob("run/checkpoints.stale-*"))) == 2


@pytest.mark.parametrize("change", ["code", "data"])
def test_changed_code_or_shards_train_afresh(
    shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    out = tmp_path / "run"
    with preempted_at(2):
        train(shards, out, max_steps=4)
    used = shards
    if change == "code":
        monkeypatch.setattr(fingerprint, "code_identity", lambda: {"version": "0.1.0", "source": "edited"})
    else:  # the genome tokenized again with other split chromosomes
        used = tmp_path / "retokenized"
        shutil.copytree(shards, used)
        lengths = lengths_of(used)
        write_manifest(used, list(lengths), split_regions(lengths, valid=["chr3"], test=["chr2"]))
    capfd.readouterr()
    train(used, out, max_steps=4)
    assert f"belongs to another run (changed: {change})" in capfd.readouterr().err
    assert [r["step"] for r in trajectory(out) if r["kind"] == "train"] == [1, 2, 3, 4]


def test_preemption_resumes_the_same_run(shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    with preempted_at(3):
        train(shards, out)
    capfd.readouterr()
    train(shards, out)
    assert f"resuming from {out / 'checkpoints' / 'step-00000003'} (step 3" in capfd.readouterr().err
    assert not list(tmp_path.glob("run/checkpoints.stale-*"))
    train(shards, tmp_path / "uninterrupted")
    assert trajectory(out) == trajectory(tmp_path / "uninterrupted")
    same_bytes(out, tmp_path / "uninterrupted", PRETRAIN_FILES)
    stored = json.loads((out / "config.json").read_text())["fingerprint"]
    assert stored == json.loads((out / "summary.json").read_text())["fingerprint"]
    assert set(stored["parts"]) == {"settings", "model", "data", "code"} and len(stored["sha256"]) == 64


def test_unreadable_latest_checkpoint_falls_back_to_the_one_before(
    shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    with preempted_at(5):
        train(shards, out)
    store = CheckpointStore(out / "checkpoints")
    assert store.steps() == [2, 4, 5]
    state = store.path(5) / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])  # cut short, like a full disk
    capfd.readouterr()
    with pytest.warns(RuntimeWarning, match=r"step-00000005/state\.pt cannot be read .*falling back"):
        train(shards, out)
    assert f"resuming from {store.path(4)}" in capfd.readouterr().err
    assert (out / "checkpoints" / "unreadable-step-00000005" / "state.pt").exists()  # kept for inspection
    train(shards, tmp_path / "uninterrupted")
    same_bytes(out, tmp_path / "uninterrupted", PRETRAIN_FILES)


# -- byte-reproducible outputs --------------------------------------------------------------------------------
def test_identical_runs_write_identical_files(shards: Path, tmp_path: Path) -> None:
    for run in ("a", "b"):
        train(shards, tmp_path / run, max_steps=2, eval_lengths=[64, 128])
    same_bytes(tmp_path / "a", tmp_path / "b", (*PRETRAIN_FILES, "curve.png"))
    assert trajectory(tmp_path / "a") == trajectory(tmp_path / "b")

    rng = np.random.default_rng(0)
    rows = [("".join(rng.choice(list("ACGT"), 40)), int(i % 2), "test" if i >= 48 else "train") for i in range(64)]
    write_benchmark(
        tmp_path / "bench",
        pd.DataFrame(rows, columns=["sequence", "label", "split"]),
        BenchmarkInfo("toy", "classification", 2, "accuracy"),
    )
    config = FinetuneConfig(epochs=1, batch_size=16, save_model=True, threads=1)
    for run in ("a", "b"):
        finetune(
            tmp_path / "bench", tmp_path / f"ft-{run}", config, seed=1, backbone_dir=tmp_path / "a", progress=False
        )
    same_bytes(
        tmp_path / "ft-a", tmp_path / "ft-b", ("metrics.json", "predictions.parquet", "model.safetensors", "model.json")
    )
    metrics = json.loads((tmp_path / "ft-a" / "metrics.json").read_text())
    assert metrics["fingerprint"] == json.loads((tmp_path / "ft-a" / "model.json").read_text())["fingerprint"]
    assert set(metrics["fingerprint"]["parts"]) == {"settings", "seed", "model", "backbone", "data", "code"}
    finetune(tmp_path / "bench", tmp_path / "ft-c", config, seed=2, backbone_dir=tmp_path / "a", progress=False)
    other = json.loads((tmp_path / "ft-c" / "metrics.json").read_text())["fingerprint"]
    assert fingerprint.Fingerprint(other["parts"]).changed_parts(metrics["fingerprint"]) == ["seed"]


def test_safetensors_metadata_order_is_canonical(tmp_path: Path) -> None:
    """safetensors writes its metadata from a Rust HashMap (another order in every process): sorting the
    header makes identical tensors identical bytes, and the file stays loadable."""
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    metadata = {f"key{i}": f"value{i}" for i in range(8)}
    files = []
    for i in range(2):
        path = tmp_path / f"{i}.safetensors"
        save_file(tensors, path, metadata=metadata)
        data = bytearray(path.read_bytes())
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        order = sorted(header["__metadata__"], reverse=i == 1)  # two different orders, as two processes write
        header["__metadata__"] = {k: header["__metadata__"][k] for k in order}
        data[8 : 8 + size] = json.dumps(header, separators=(",", ":")).encode().ljust(size)
        path.write_bytes(bytes(data))
        files.append(path)
    assert files[0].read_bytes() != files[1].read_bytes()
    for path in files:
        sort_safetensors_metadata(path)
    assert files[0].read_bytes() == files[1].read_bytes()
    assert all(torch.equal(load_file(files[0])[k], v) for k, v in tensors.items())


# -- damaged shards -------------------------------------------------------------------------------------------
def damage(path: Path, kind: str) -> str:
    """Damage a shard the way the issue's fault suite did; returns the message expected for it."""
    data = bytearray(path.read_bytes())
    if kind == "changed":  # 10 kb overwritten with valid bases
        data[-12_000:-2_000] = bytes([vocab.A]) * 10_000
        path.write_bytes(bytes(data))
        return "sha256 differs from"
    if kind == "out_of_vocabulary":
        data[-5_000] = 200
        path.write_bytes(bytes(data))
        return r"token id 200 at chr1:\d+ is not a base"
    if kind == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
        return r"truncated: 30,\d+ bytes on disk, its header and the manifest make 60,\d+"
    if kind == "foreign":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
        return "not a NumPy .npy file"
    path.unlink()
    return "missing"


@pytest.mark.parametrize("kind", ["changed", "out_of_vocabulary", "truncated", "foreign", "missing"])
def test_damaged_shard_is_named(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    message = damage(copy / "chr1.npy", kind)
    with pytest.raises(ShardError, match=rf"{re.escape(str(copy / 'chr1.npy'))}: {message}"):
        GenomeShards(copy)
    assert cli.main(["verify", str(copy)]) == 1  # reports, never crashes
    out = capsys.readouterr().out
    assert str(copy / "chr1.npy") in out and len(out.splitlines()) == 1 + (kind == "out_of_vocabulary")
    assert cli.main(["verify", str(copy), "--fasta", str(shards.parent / "genome.fa.gz")]) == 1
    compared = capsys.readouterr().out  # a readable shard is compared with the genome too
    assert compared.startswith(out)
    assert ("tokens differ from" in compared) == (kind in ("changed", "out_of_vocabulary"))


def test_pretraining_refuses_damaged_shards_before_training(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    damage(copy / "chr2.npy", "changed")
    damage(copy / "chr3.mask.npy", "truncated")
    with pytest.raises(ShardError) as err:
        train(copy, tmp_path / "run")
    assert f"{copy / 'chr2.npy'}: sha256 differs" in str(err.value)
    assert f"{copy / 'chr3.mask.npy'}: truncated" in str(err.value)  # every problem, not the first
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert (
        engine.main(
            [
                "--arch",
                "hyenadna",
                "--arch-config",
                json.dumps(TINY),
                "--shards",
                str(copy),
                "--out",
                str(tmp_path / "run"),
                "--config",
                json.dumps(SETTINGS),
                "--no-progress",
            ]
        )
        == 1
    )


def test_verify_reports_a_damaged_manifest(shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    (copy / "manifest.parquet").write_bytes(b"PAR1 not really")
    assert cli.main(["verify", str(copy)]) == 1
    assert f"{copy / 'manifest.parquet'}: unreadable as Parquet" in capsys.readouterr().err


def test_genome_without_a_validation_split_is_named(shards: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    lengths = lengths_of(copy)
    write_manifest(copy, list(lengths), split_regions(lengths, test=["chr3"]))
    with pytest.raises(ShardError, match=r"regions\.parquet: the genome has no valid split: .*splits\.valid"):
        train(copy, tmp_path / "run")


def test_temporary_files_of_a_killed_tokenizer_are_removed(
    shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    leftovers = [
        copy / ".chr2.npy.k1ll3d_x.tmp.npy",
        copy / ".chr2.mask.npy.abcdefgh.tmp.npy",
        copy / ".manifest.parquet.12345678.tmp.parquet",
    ]
    for path in leftovers:
        path.write_bytes(b"partial")
    keep = copy / ".chr22.npy.abcdefgh.tmp.npy"  # another sequence's
    keep.write_bytes(b"partial")
    tokenize_chromosome(shards.parent / "genome.fa.gz", "chr2", copy)
    lengths = lengths_of(copy)
    write_manifest(copy, list(lengths), split_regions(lengths, valid=["chr2"], test=["chr3"]))
    assert not any(path.exists() for path in leftovers) and keep.exists()
    err = capfd.readouterr().err
    assert all(f"removed {path}, left by an interrupted writer" in err for path in leftovers)


# -- downloads ------------------------------------------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    with LocalHTTPServer(root) as srv:
        yield srv


def test_damaged_cached_download_is_fetched_again(
    server: LocalHTTPServer, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    bases = np.random.default_rng(0).choice(list(b"ACGT"), 20_000).astype(np.uint8).tobytes()
    (server.root / "g.fa.gz").write_bytes(gzip.compress(b">chr1\n" + bases + b"\n>chr2\nGGCC\n"))
    spec = {"source": server.url("g.fa.gz")}  # no checksum: only reading it can tell a bad file
    assert prepare_genome(spec, tmp_path / "a.fa.gz", tmp_path / "cache", progress=False) == [
        ("chr1", 20_000),
        ("chr2", 4),
    ]
    (cached,) = [p for p in (tmp_path / "cache").rglob("g.fa.gz")]
    cached.write_bytes(cached.read_bytes()[:200])  # cut short
    capfd.readouterr()
    assert prepare_genome(spec, tmp_path / "b.fa.gz", tmp_path / "cache", progress=False)[0] == ("chr1", 20_000)
    err = capfd.readouterr().err
    assert f"{cached}: the cached download of {spec['source']} fails reading it as FASTA" in err
    assert "truncated gzip file" in err and "downloading it again" in err
    assert len(server.requests) == 2


def test_bad_source_names_the_url_the_file_and_the_check(server: LocalHTTPServer, tmp_path: Path) -> None:
    (server.root / "g.fa.gz").write_bytes(b"<html>404 page served with status 200</html>")
    url = server.url("g.fa.gz")
    cached = tmp_path / "cache" / url.split("//")[1].replace(":", "_")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stale")  # a bad cached copy: downloaded once more, then the error
    with pytest.raises(InvalidDownloadError) as err:
        prepare_genome({"source": url}, tmp_path / "g.fa.gz", tmp_path / "cache", progress=False)
    message = str(err.value)
    assert message.startswith(f"{url}: the download {cached} fails reading it as FASTA: ")
    assert "not FASTA" in message and "kept for inspection" in message
    assert len(server.requests) == 1 and cached.read_bytes().startswith(b"<html>")
    assert not (tmp_path / "g.fa.gz").exists()


def test_damaged_cached_splits_bed_is_fetched_again(server: LocalHTTPServer, tmp_path: Path) -> None:
    (server.root / "splits.bed").write_text("chr1\t0\t100\ttrain\nchr2\t0\t50\tvalid\n")
    lengths = {"chr1": 100, "chr2": 50}
    assert len(split_bed_regions(server.url("splits.bed"), tmp_path / "cache", lengths, progress=False)) == 2
    (cached,) = (tmp_path / "cache").rglob("splits.bed")
    cached.write_text("chr1\t0\n")
    assert split_bed_regions(server.url("splits.bed"), tmp_path / "cache", lengths, progress=False)[
        "split"
    ].tolist() == ["train", "valid"]


# -- a full disk ----------------------------------------------------------------------------------------------
def test_disk_full_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "chr1.npy"
    with pytest.raises(DiskFullError, match=rf"{target}: cannot write it: the disk is full") as err:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
    assert err.value.errno == errno.ENOSPC and not list(target.parent.iterdir())
    numpy_short_write = OSError("3000000 requested and 1372032 written")  # NumPy: no errno
    with pytest.raises(OSError, match="requested and") as err:  # space left: the writer's error, unchanged
        with atomic_path(target):
            raise numpy_short_write
    assert not isinstance(err.value, DiskFullError)
    monkeypatch.setattr(io, "_free_bytes", lambda directory: 0)
    with pytest.raises(DiskFullError, match=r"0 bytes free; the writer said: 3000000 requested and 1372032 written"):
        with atomic_path(target):
            raise numpy_short_write
    with pytest.raises(ValueError, match="bad row"):  # not an I/O error: never taken for a full disk
        with atomic_path(target):
            raise ValueError("bad row")


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path / "checkpoints")
    store.save(1, {"step": 1})

    def torch_save_on_a_full_disk(obj: Any, path: Any) -> None:
        Path(path).write_bytes(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(io, "_free_bytes", lambda directory: 4096)
    with pytest.raises(DiskFullError, match=rf"{store.path(2) / 'state.pt'}: cannot write it: the disk is full"):
        store.save(2, {"step": 2})
    assert store.steps() == [1] and not list(store.directory.glob(".step-*"))


def test_disk_full_stops_a_download_at_once(
    server: LocalHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (server.root / "big.bin").write_bytes(bytes(3 << 20))
    real_open = open

    class FullDisk:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        return FullDisk(fh) if str(file).endswith(".part") else fh

    monkeypatch.setattr(download_module, "open", full_open, raising=False)  # the download module's open only
    dest = tmp_path / "big.bin"
    with pytest.raises(DiskFullError, match=rf"{dest}\.part: cannot write it: the disk is full"):
        download(server.url("big.bin"), dest, backoff=0.01, progress=False)
    assert len(server.requests) == 1  # not retried as a network error


@pytest.fixture(scope="module")
def tiny_tmpfs() -> list[str]:
    """A command prefix running a command with a 512 kB tmpfs at /mnt (a user and mount namespace: no root
    needed where unprivileged user namespaces are allowed)."""
    unshare = shutil.which("unshare")
    command = [
        unshare or "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        'mount -t tmpfs -o size=512k tmpfs /mnt && exec "$@"',
        "sh",
    ]
    if unshare is None or subprocess.run([*command, "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (no unprivileged user namespaces)")
    return command


FULL_DISK_SCRIPT = """
from pathlib import Path
import numpy as np, torch
from longdna.data.genome.fasta import write_bgzip_fasta
from longdna.data.tokens.shards import save_npy
from longdna.io import DiskFullError
from longdna.models import build_model
from longdna.train.checkpoints import CheckpointStore
from longdna.train.pretrain import export_pretrained

def report(what, write):
    try:
        write()
        print(what, "written")
    except DiskFullError as err:
        print(what, "|", err)

report("npy", lambda: save_npy("/mnt/tokens/chr1.npy", np.zeros(1_000_000, np.uint8)))
store = CheckpointStore("/mnt/checkpoints")
store.save(1, {"x": torch.zeros(10)})
report("checkpoint", lambda: store.save(2, {"x": torch.zeros(1_000_000)}))
print("kept", store.steps())
report("weights", lambda: export_pretrained(build_model("hyenadna", d_model=128, n_layer=4), Path("/mnt")))
bases = np.random.default_rng(0).choice(list(b"ACGT"), 4_000_000).astype(np.uint8).tobytes()
report("fasta", lambda: write_bgzip_fasta([("chr1", bases)], "/mnt/genome.fa.gz"))
"""


def test_a_real_full_disk_is_named_by_every_writer(tiny_tmpfs: list[str]) -> None:
    """NumPy, torch, safetensors and htslib each fail differently on a full file system: every one is reported
    as a full disk naming the file."""
    result = subprocess.run(
        [*tiny_tmpfs, sys.executable, "-c", FULL_DISK_SCRIPT], capture_output=True, text=True, timeout=120
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert result.returncode == 0, result.stderr
    for what, path in [
        ("npy", "/mnt/tokens/chr1.npy"),
        ("checkpoint", "/mnt/checkpoints/step-00000002/state.pt"),
        ("weights", "/mnt/model.safetensors"),
        ("fasta", "/mnt/genome.fa.gz"),
    ]:
        assert lines[what].startswith(f"| {path}: cannot write it"), (what, lines[what])
        assert "the disk is full" in lines[what]
    assert lines["kept"] == "[1]"


# -- the workflow ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_workflow_reruns_pretraining_on_a_changed_shard_and_names_it(ci_workflow: Path, tmp_path: Path) -> None:
    """Shards are inputs of pretrain_model: Snakemake sees a changed one, and the job stops naming it."""
    from conftest import snakemake

    work = tmp_path / "work"
    shutil.copytree(ci_workflow, work, symlinks=True)
    damage(work / "results/tokens/demo/chr1.npy", "changed")
    dry = snakemake(work, "-n", "pretrain", configfile=work / "config.yaml").stdout
    reason = r"rule pretrain_model:(.|\n)*reason: Updated input files: [^\n]*results/tokens/demo/chr1\.npy"
    assert re.search(reason, dry)
    result = snakemake(work, "pretrain", configfile=work / "config.yaml", check=False)
    assert result.returncode != 0
    log = (work / "logs/pretrain/hyena.log").read_text()
    assert "results/tokens/demo/chr1.npy: sha256 differs from results/tokens/demo/manifest.parquet" in log
    assert not (work / "results/pretrain/hyena/model.safetensors").exists()
