"""The pretraining engine on a tiny demo genome: learning, outputs, exact resume, DDP, guard rails, launch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import demo_shards
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from longdna.data.genome.demo import DemoGenomeSpec
from longdna.models import build_model, load_pretrained
from longdna.settings import PretrainConfig
from longdna.train import pretrain as engine
from longdna.train.checkpoints import CheckpointStore
from longdna.train.distributed import Distributed
from longdna.train.launch import first_host, launch_command, run_command
from longdna.train.memory import MemoryBudgetError, estimate_training_memory, malloc_bytes_in_use, worst_stage_memory
from longdna.train.metrics_log import MetricsLog
from longdna.train.objectives import token_loss_sum
from longdna.train.preemption import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER
from longdna.train.pretrain import TrainingDiverged, pretrain
from longdna.train.schedule import StepBatches, length_schedule, seen_before

TINY = {"d_model": 24, "n_layer": 2, "d_inner": 64, "filter_order": 16, "embed_dropout": 0.0}
FAST = {"seq_len": 128, "batch_size": 8, "lr": 3e-3, "warmup_steps": 3, "eval_windows": 4, "log_every": 1, "threads": 1}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 700 kb demo genome tokenized into shards: chr1 train, chr2 valid, chr3 test."""
    root = tmp_path_factory.mktemp("genome")
    spec = DemoGenomeSpec(
        chromosome_lengths=(300_000, 200_000, 200_000),
        telomere_gap=1_000,
        centromere_gap=2_000,
        short_gaps=1,
        isochore_mean_length=50_000,
    )
    return demo_shards(root, spec)


def config(**overrides: Any) -> PretrainConfig:
    return PretrainConfig.from_dict({**FAST, **overrides})


def rows(out: Path, kind: str) -> list[dict[str, Any]]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def cli(shards: Path, out: Path, arch_config: dict, pretrain_config: dict) -> list[str]:
    return [
        "--arch",
        "hyenadna",
        "--arch-config",
        json.dumps(arch_config),
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--config",
        json.dumps({**FAST, **pretrain_config}),
        "--no-progress",
    ]


# -- schedule and sampling ------------------------------------------------------------------------------------
def test_length_warmup_doubles_with_constant_tokens_per_step() -> None:
    warmup = {"start_length": 128, "steps_per_stage": 5}
    cfg = config(seq_len=1024, batch_size=8, micro_batch_size=2, seq_len_warmup=warmup)
    stages = length_schedule(cfg)
    assert [s.length for s in stages] == [128, 256, 512, 1024]
    assert [s.first_step for s in stages] == [0, 5, 10, 15]
    assert {s.batch_size * s.length for s in stages} == {cfg.tokens_per_step}
    assert {s.micro_batch_size * s.length for s in stages} == {2 * 1024}
    samples, tokens = seen_before(stages, 17)
    assert tokens == 17 * cfg.tokens_per_step
    assert samples == 5 * 64 + 5 * 32 + 5 * 16 + 2 * 8
    for bad in (
        {"start_length": 384, "steps_per_stage": 5},
        {"start_length": 100, "steps_per_stage": 5},
        {"start_length": 128, "steps_per_stage": 0},
        {"start_length": 128},
    ):
        with pytest.raises(ValueError, match="seq_len_warmup"):
            config(seq_len=1024, seq_len_warmup=bad)


def test_ranks_see_disjoint_slices_of_the_global_batch() -> None:
    stage = length_schedule(config(batch_size=12, micro_batch_size=2))[0]
    single = list(StepBatches(stage, 4, 7, 100, Distributed()))
    assert [i for micro in single for i in micro] == list(range(100, 136))
    for world in (2, 3):
        samplers = [StepBatches(stage, 4, 7, 100, Distributed(rank=r, world_size=world)) for r in range(world)]
        batches = [list(sampler) for sampler in samplers]
        for step in range(3):
            per_rank = []
            for sampler, rank_batches in zip(samplers, batches):
                first = step * sampler.accumulation
                per_rank.append([i for micro in rank_batches[first : first + sampler.accumulation] for i in micro])
            flat = [i for part in per_rank for i in part]
            assert len(flat) == len(set(flat)) == 12  # disjoint, and together the whole global batch
            assert sorted(flat) == list(range(100 + 12 * step, 112 + 12 * step))
    with pytest.raises(ValueError, match="not divisible"):
        StepBatches(stage, 0, 1, 0, Distributed(rank=0, world_size=5))


def test_checkpoint_store_keeps_the_last_k_and_the_best(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    (tmp_path / ".step-00000009.abc").mkdir(parents=True)  # left by a process killed mid-save
    for step, loss in zip(range(1, 6), [3.0, 1.0, 2.0, None, 4.0]):
        store.save(step, {"step": step}, valid_loss=loss)
    assert store.steps() == [2, 4, 5]
    assert store.best() == {"step": 2, "valid_loss": 1.0}
    assert store.load(store.latest())["step"] == 5
    assert not list(tmp_path.glob(".step-*"))


# -- training -------------------------------------------------------------------------------------------------
def test_loss_decreases_and_outputs_are_complete(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = pretrain(
        "hyenadna",
        TINY,
        shards,
        out,
        config(
            seq_len=256,
            max_steps=60,
            lr=5e-3,
            eval_every=15,
            checkpoint_every=15,
            keep_checkpoints=1,
            export="best",
            eval_lengths=[128, 512],
        ),
        progress=False,
    )

    train, valid = rows(out, "train"), rows(out, "valid")
    assert [r["step"] for r in train] == list(range(1, 61))
    first, last = sum(r["loss"] for r in train[:5]) / 5, sum(r["loss"] for r in train[-5:]) / 5
    assert last < first - 0.8, (first, last)
    assert valid[-1]["bits_per_base"] < valid[0]["bits_per_base"] - 0.05
    assert valid[-1]["bits_per_base"] < 2.0  # better than a base-composition-blind model
    for row in train:
        assert {"step", "tokens_seen", "lr", "loss", "grad_norm", "tokens_per_s", "memory_mb"} <= set(row)
    assert train[-1]["tokens_seen"] == 60 * 8 * 256

    best = CheckpointStore(out / "checkpoints").best()
    assert best["valid_loss"] == min(r["loss"] for r in valid)
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == sorted(
        {f"step-{best['step']:08d}", "step-00000060"}
    )
    meta = json.loads((out / "config.json").read_text())
    assert meta["arch"] == "hyenadna" and meta["pretrain"]["exported_step"] == best["step"]
    exported = load_pretrained(out)
    best_state = CheckpointStore(out / "checkpoints").load(CheckpointStore(out / "checkpoints").path(best["step"]))
    assert all(torch.equal(v, best_state["model"][k]) for k, v in exported.state_dict().items())
    assert json.loads((out / "tokenizer.json").read_text())["vocab_size"] == 12
    assert (out / "curve.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert set(summary["test_by_length"]) == {"128", "512"}
    assert summary["valid"]["loss"] == pytest.approx(best["valid_loss"], rel=1e-6)
    assert [r["seq_len"] for r in rows(out, "test")] == [128, 512]


def test_masked_objective_trains(shards: Path, tmp_path: Path) -> None:
    summary = pretrain("hyenadna", TINY, shards, tmp_path, config(objective="masked", max_steps=3), progress=False)
    assert summary["objective"] == "masked"
    losses = [r["loss"] for r in rows(tmp_path, "train")]
    assert len(losses) == 3 and all(0 < loss < 5 for loss in losses)


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def poisoned(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, count = token_loss_sum(logits, targets)
        if torch.is_grad_enabled():  # training forwards only: one per step without accumulation
            calls["n"] += 1
            if calls["n"] == 6:
                loss = loss * float("nan")
        return loss, count

    monkeypatch.setattr(engine, "token_loss_sum", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 6\b.*step-00000004"):
        pretrain(
            "hyenadna", TINY, shards, tmp_path, config(max_steps=10, checkpoint_every=2, eval_every=2), progress=False
        )
    store = CheckpointStore(tmp_path / "checkpoints")
    assert store.steps() == [2, 4]
    state = store.load(store.latest())
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    build_model("hyenadna", **TINY).load_state_dict(state["model"])
    assert max(r["step"] for r in rows(tmp_path, "train")) == 5


def test_a_changed_batch_schedule_trains_afresh(shards: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    pretrain("hyenadna", TINY, shards, tmp_path, config(max_steps=2, checkpoint_every=1), progress=False)
    pretrain("hyenadna", TINY, shards, tmp_path, config(max_steps=4, batch_size=4), progress=False)
    assert "(changed: settings)" in capfd.readouterr().err
    assert [r["step"] for r in rows(tmp_path, "train")] == [1, 2, 3, 4]
    assert [r["batch_size"] for r in rows(tmp_path, "train")] == [4] * 4
    (stale,) = tmp_path.glob("checkpoints.stale-*")
    assert CheckpointStore(stale).steps() == [1, 2]


def test_resume_after_sigterm_is_bitwise_exact(shards: Path, tmp_path: Path) -> None:
    """A real SIGTERM mid-run: exit 75 with a checkpoint; the rerun then matches an uninterrupted run exactly
    (losses, gradient norms, validation, final weights), across a sequence-length stage boundary, with dropout,
    reverse-complement augmentation and gradient accumulation on."""
    model = {**TINY, "embed_dropout": 0.1, "resid_dropout": 0.1}
    settings = {
        "seq_len": 256,
        "batch_size": 8,
        "micro_batch_size": 4,
        "max_steps": 24,
        "eval_every": 5,
        "checkpoint_every": 5,
        "rc_probability": 0.5,
        "seq_len_warmup": {"start_length": 64, "steps_per_stage": 6},
    }
    command = [sys.executable, "-m", "longdna.train.pretrain"]
    reference = subprocess.Popen([*command, *cli(shards, tmp_path / "reference", model, settings)])
    interrupted = subprocess.Popen([*command, *cli(shards, tmp_path / "resumed", model, settings)])
    metrics = tmp_path / "resumed" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and interrupted.poll() is None:
        if metrics.exists() and any(json.loads(line)["step"] >= 8 for line in metrics.read_text().splitlines()):
            interrupted.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    assert interrupted.wait(timeout=120) == PREEMPTED_EXIT_CODE
    stopped = json.loads((tmp_path / "resumed" / PREEMPTED_MARKER).read_text())["step"]
    assert 8 <= stopped < 24
    assert CheckpointStore(tmp_path / "resumed" / "checkpoints").steps()[-1] == stopped
    assert subprocess.run([*command, *cli(shards, tmp_path / "resumed", model, settings)], timeout=180).returncode == 0
    assert reference.wait(timeout=180) == 0

    def trajectory(out: Path) -> list[tuple]:
        return [
            (r["kind"], r["step"], r["loss"], r.get("grad_norm"), r.get("lr"))
            for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        ]

    assert trajectory(tmp_path / "resumed") == trajectory(tmp_path / "reference")
    train = rows(tmp_path / "reference", "train")
    assert [r["seq_len"] for r in train] == [64] * 6 + [128] * 6 + [256] * 12  # the warm-up as configured
    assert {r["seq_len"] * r["batch_size"] for r in train} == {256 * 8}
    final = load_file(tmp_path / "resumed" / "model.safetensors")
    expected = load_file(tmp_path / "reference" / "model.safetensors")
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


def test_resume_restores_the_metrics_history_from_the_checkpoint(shards: Path, tmp_path: Path) -> None:
    """Snakemake deletes a failed job's outputs, metrics.jsonl among them: a preempted workflow job resumes
    with the history kept in its checkpoint, so the log still covers every step."""
    settings = {"max_steps": 6, "checkpoint_every": 3, "eval_every": 3}
    pretrain("hyenadna", TINY, shards, tmp_path / "reference", config(**settings), progress=False)
    out = tmp_path / "resumed"
    pretrain("hyenadna", TINY, shards, out, config(**settings), progress=False)
    store = CheckpointStore(out / "checkpoints")
    assert (store.path(3) / "metrics.jsonl").exists()
    shutil.rmtree(store.path(6))  # as if preempted after step 3's checkpoint ...
    (out / "metrics.jsonl").unlink()  # ... and the outputs deleted by Snakemake
    pretrain("hyenadna", TINY, shards, out, config(**settings), progress=False)
    assert [r["step"] for r in rows(out, "train")] == list(range(1, 7))

    def losses(run: Path) -> list[tuple]:
        return [(r["kind"], r["step"], r["loss"]) for r in rows(run, "train") + rows(run, "valid")]

    assert losses(out) == losses(tmp_path / "reference")  # the resumed run continues the same trajectory
    assert [r["step"] for r in rows(out, "valid")] == [3, 6]


def test_metrics_survive_their_file_being_deleted_during_the_run(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SLURM the job's outer Snakemake deletes the outputs of a cancelled job while its run is still writing
    the preemption checkpoint: the checkpoint's copy and the final file come from memory, not from the file."""
    write = MetricsLog.write

    def write_then_delete(self: MetricsLog, row: dict) -> None:
        write(self, row)
        if row["kind"] == "train" and row["step"] == 2:
            self.path.unlink()

    monkeypatch.setattr(MetricsLog, "write", write_then_delete)
    pretrain("hyenadna", TINY, shards, tmp_path, config(max_steps=4, checkpoint_every=3, eval_every=3), progress=False)
    copy = (CheckpointStore(tmp_path / "checkpoints").path(3) / "metrics.jsonl").read_text().splitlines()
    assert [(r["kind"], r["step"]) for r in map(json.loads, copy)] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("valid", 3),
    ]
    assert [r["step"] for r in rows(tmp_path, "train")] == [1, 2, 3, 4]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(shards: Path, tmp_path: Path) -> None:
    settings = {
        "max_steps": 8,
        "micro_batch_size": 4,
        "eval_every": 4,
        "checkpoint_every": 4,
        "seq_len_warmup": {"start_length": 64, "steps_per_stage": 3},
    }
    single = tmp_path / "single"
    pretrain("hyenadna", TINY, shards, single, config(**settings), progress=False)
    double = tmp_path / "ddp"
    status = run_command(launch_command(2, 1, cli(shards, double, TINY, settings)), double)
    assert status == 0
    for kind in ("train", "valid"):
        one, two = rows(single, kind), rows(double, kind)
        assert [r["step"] for r in one] == [r["step"] for r in two]
        for a, b in zip(one, two):
            assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7), (kind, a["step"])
            if kind == "train":
                assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
                assert b["tokens_seen"] == a["tokens_seen"]
    weights_one, weights_two = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    assert all(torch.allclose(weights_one[k], weights_two[k], rtol=1e-4, atol=1e-6) for k in weights_one)


@pytest.mark.slow
def test_sigterm_to_the_launcher_of_two_processes_exits_75_and_resumes(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = cli(shards, out, TINY, {"max_steps": 40, "checkpoint_every": 10, "eval_every": 10})
    launcher = [sys.executable, "-m", "longdna.train.launch", "2", "1", "--", *args]
    process = subprocess.Popen(launcher)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if (out / "metrics.jsonl").exists() and len((out / "metrics.jsonl").read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    assert process.wait(timeout=180) == PREEMPTED_EXIT_CODE
    assert CheckpointStore(out / "checkpoints").latest() is not None
    assert subprocess.run(launcher, timeout=300).returncode == 0
    assert [r["step"] for r in rows(out, "train")] == list(range(1, 41))


@pytest.mark.slow
def test_torch_compile_trains(shards: Path, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    counters.clear()
    model = {**TINY, "n_layer": 1}
    pretrain("hyenadna", model, shards, tmp_path, config(seq_len=64, max_steps=2, compile=True), progress=False)
    assert counters["stats"]["unique_graphs"] > 0  # compiled, not silently run eagerly
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows(tmp_path, "train"))


# -- memory ---------------------------------------------------------------------------------------------------
class MallocPeak(TorchDispatchMode):
    """Peak bytes malloc'd by this process (glibc ``mallinfo2``), polled after every tensor operation."""

    def __init__(self) -> None:
        super().__init__()
        self.base = self.peak = malloc_bytes_in_use()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, malloc_bytes_in_use())
        return out


@pytest.mark.skipif(malloc_bytes_in_use() is None, reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("arch", ["hyenadna", "mamba", "caduceus", "hawk", "transformer"])
def test_memory_estimate_matches_the_real_peak_of_a_step(arch: str, checkpointing: bool) -> None:
    """Fake-tensor estimate vs the real peak of live bytes of forward + backward on CPU (allocator
    retention excluded), plus parameters, gradients and AdamW moments."""
    arch_config, batch, length = {"d_model": 32, "n_layer": 2}, 2, 512
    estimate = estimate_training_memory(
        lambda: build_model(arch, **arch_config),
        batch,
        length,
        device=torch.device("cpu"),
        activation_checkpointing=checkpointing,
    )
    model = build_model(arch, **arch_config)
    model.gradient_checkpointing = checkpointing
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # steady state: gradients exist from the previous step
    inputs = torch.randint(7, 11, (batch, length))
    with MallocPeak() as peak:
        token_loss_sum(model(inputs), inputs)[0].backward()
    real = peak.peak - peak.base + 16 * model.num_parameters()
    assert 0.7 < estimate.total / real < 1.5, (estimate.describe(), real)
    assert estimate.weights == 16 * model.num_parameters()


def test_memory_check_fails_fast_with_suggestions(shards: Path, tmp_path: Path) -> None:
    settings = {"seq_len": 2048, "batch_size": 8, "max_steps": 2}
    model = {"d_model": 32, "n_layer": 3}
    cpu = torch.device("cpu")
    too_big = worst_stage_memory("hyenadna", model, config(**settings), 1, cpu)[0].total
    fits = worst_stage_memory(
        "hyenadna", model, config(**settings, micro_batch_size=1, activation_checkpointing=True), 1, cpu
    )[0].total
    assert fits < too_big / 4
    budget_gib = 2 * fits / 0.9 / 2**30
    with pytest.raises(MemoryBudgetError, match="more than 90% of the") as err:
        pretrain("hyenadna", model, shards, tmp_path, config(**settings, gpu_memory_gb=budget_gib), progress=False)
    message = str(err.value)
    assert "micro_batch_size: " in message and "activation_checkpointing: true" in message
    assert "gradient accumulation keeps the global batch of 8 sequences" in message
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(MemoryBudgetError, match="does not fit"):
        pretrain(
            "hyenadna", model, shards, tmp_path, config(**settings, gpu_memory_gb=fits / 8 / 2**30), progress=False
        )


# -- launching ------------------------------------------------------------------------------------------------
def test_launch_commands() -> None:
    assert launch_command(1, 1, ["--out", "x"])[1:] == ["-m", "longdna.train.pretrain", "--out", "x"]
    one_node = launch_command(4, 1, ["--out", "x"])
    assert one_node[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in one_node
    assert one_node[one_node.index("--nproc-per-node") + 1] == "4"
    assert one_node[-4:] == ["-m", "longdna.train.pretrain", "--out", "x"]
    env = {"SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "123", "SLURM_NODEID": "1"}
    nodes = launch_command(8, 2, [], env=env)
    assert "--standalone" not in nodes
    assert nodes[nodes.index("--rdzv-endpoint") + 1] == "gpu03:29500"
    assert nodes[nodes.index("--rdzv-id") + 1] == "123" and nodes[nodes.index("--node-rank") + 1] == "1"
    assert first_host("node7,node8") == "node7" and first_host("a-b[10-12,20]") == "a-b10"
    with pytest.raises(ValueError):
        launch_command(2, 2, [], env={})


@pytest.mark.parametrize(
    ("script", "marker", "expected"),
    [
        ("raise SystemExit(0)", None, 0),
        ("raise SystemExit(75)", None, PREEMPTED_EXIT_CODE),
        ("raise SystemExit(1)", None, 1),
        ("raise SystemExit(1)", "fresh", PREEMPTED_EXIT_CODE),  # torchrun's status after a preempted worker
        ("raise SystemExit(1)", "stale", 1),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", None, 128 + 9),
    ],
)
def test_run_command_maps_exit_statuses(tmp_path: Path, script: str, marker: str | None, expected: int) -> None:
    if marker is not None:
        write = f"open({str(tmp_path / PREEMPTED_MARKER)!r}, 'w').write('{{}}'); "
        if marker == "stale":
            (tmp_path / PREEMPTED_MARKER).write_text("{}")
            os.utime(tmp_path / PREEMPTED_MARKER, (time.time() - 3600, time.time() - 3600))
            write = ""
        script = write + script
    assert run_command([sys.executable, "-c", script], tmp_path) == expected


def test_cli_reads_json_files_and_strings(shards: Path, tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text(json.dumps(TINY))
    status = engine.main(
        [
            "--arch",
            "hyenadna",
            "--arch-config",
            str(tmp_path / "model.json"),
            "--shards",
            str(shards),
            "--out",
            str(tmp_path / "out"),
            "--config",
            json.dumps({**FAST, "max_steps": 1}),
            "--no-progress",
        ]
    )
    assert status == 0 and (tmp_path / "out" / "model.safetensors").exists()
    # a rerun of a finished run trains again (--forcerun), its checkpoints set aside
    assert (
        engine.main(
            [
                "--arch",
                "hyenadna",
                "--arch-config",
                json.dumps(TINY),
                "--shards",
                str(shards),
                "--out",
                str(tmp_path / "out"),
                "--config",
                json.dumps({**FAST, "max_steps": 1}),
                "--no-progress",
            ]
        )
        == 0
    )
    assert [r["step"] for r in rows(tmp_path / "out", "train")] == [1]
    assert len(rows(tmp_path / "out", "test")) == 1
    assert len(list((tmp_path / "out").glob("checkpoints.stale-*"))) == 1
    with pytest.raises(SystemExit):
        engine.main(["--arch", "hyenadna", "--shards", "s", "--out", "o", "--config", "[1, 2]"])
