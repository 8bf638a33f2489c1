"""What only an accelerator can show: fast paths against references on the device, and bf16 pretraining.

    python bench/check_device.py [--length 4096] [--steps 300] [--json out.json]

1. **Numerics on the device.** For every architecture (small random models, the causal and bidirectional
   variants), at ``--length`` tokens:

   * the fast path against the model's slow reference path (``model.reference_path()``), float32, on the
     device: logits and every parameter gradient (largest absolute difference over the largest value);
   * the device's float32 fast path against the CPU's float32 reference (same weights, same input);
   * the fast path under bf16 autocast against the float32 reference: the relative error of the logits.

2. **bf16 pretraining.** The real engine (:func:`longdna.train.pretrain.pretrain`) trains HyenaDNA (d_model
   128, 4 layers, 4 kb context) on a demo genome's shards twice from the same seed, ``precision: bf16`` and
   ``precision: fp32``; reported: validation loss (bits per base), throughput, peak memory.

Exits non-zero when a float32 comparison exceeds its tolerance or bf16 training ends more than 0.05 bits per
base above float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from longdna.models import build_model

#: small models of every architecture; tolerance is for float32 (fast vs reference, relative to max |value|)
VARIANTS: dict[str, tuple[str, dict]] = {
    "hyenadna": ("hyenadna", {"d_model": 128, "n_layer": 2}),
    "mamba": ("mamba", {"d_model": 128, "n_layer": 2}),
    "caduceus-ps": ("caduceus", {"d_model": 128, "n_layer": 2, "rcps": True}),
    "caduceus-ph": ("caduceus", {"d_model": 128, "n_layer": 2, "rcps": False}),
    "hawk-causal": ("hawk", {"d_model": 128, "n_layer": 2, "num_heads": 2, "bidirectional": False}),
    "hawk-bidirectional": ("hawk", {"d_model": 128, "n_layer": 2, "num_heads": 2, "bidirectional": True}),
    "transformer": ("transformer", {"d_model": 128, "n_layer": 2, "n_heads": 4}),
}
FP32_TOLERANCE = 1e-4
BF16_TOLERANCE = 5e-2


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def logits_and_grads(model, ids: torch.Tensor, reference: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    if reference:
        with model.reference_path():
            logits = model(ids)
    else:
        logits = model(ids)
    logits.float().square().mean().backward()
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return logits.detach(), grads


def check_numerics(name: str, arch: str, config: dict, length: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    try:
        model = build_model(arch, **config).to(device).eval()  # no dropout: paths must see the same net
    except (TypeError, ValueError) as err:  # a config key this architecture does not have
        return {"model": name, "error": str(err)}
    ids = torch.randint(7, 11, (2, length), device=device)
    fast, fast_grads = logits_and_grads(model, ids, reference=False)
    ref, ref_grads = logits_and_grads(model, ids, reference=True)
    grad_error = max(relative(f, r) for f, r in zip(fast_grads, ref_grads))
    cpu_model = build_model(arch, **config).eval()
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    with torch.no_grad(), cpu_model.reference_path():
        cpu_ref = cpu_model(ids.cpu())
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        bf16 = model(ids)
    return {
        "model": name,
        "parameters": model.num_parameters(),
        "length": length,
        "fast_vs_reference": relative(fast, ref),
        "grads_fast_vs_reference": grad_error,
        "device_vs_cpu": relative(fast.cpu(), cpu_ref),
        "bf16_vs_fp32_reference": relative(bf16, ref),
    }


def bf16_training(steps: int, device: torch.device, workdir: Path) -> list[dict]:
    from longdna.data.genome.demo import DemoGenomeSpec, generate_demo_genome
    from longdna.data.tokens.shards import split_regions, tokenize_chromosome, write_manifest
    from longdna.settings import PretrainConfig
    from longdna.train.pretrain import pretrain

    spec = DemoGenomeSpec()
    generate_demo_genome(workdir / "genome.fa.gz", spec)
    shards = workdir / "shards"
    lengths = {c: tokenize_chromosome(workdir / "genome.fa.gz", c, shards)["length"] for c in spec.chromosome_names}
    names = spec.chromosome_names
    write_manifest(shards, names, split_regions(lengths, valid=[names[-2]], test=[names[-1]]))
    rows = []
    for precision in ("bf16", "fp32"):
        config = PretrainConfig(
            seq_len=4096,
            batch_size=32,
            max_steps=steps,
            lr=2e-3,
            warmup_steps=30,
            eval_every=steps,
            eval_windows=64,
            log_every=50,
            checkpoint_every=steps,
            precision=precision,
            seed=1,
            num_workers=4,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        summary = pretrain(
            "hyenadna",
            {"d_model": 128, "n_layer": 4, "l_max": 4098},
            shards,
            workdir / f"run-{precision}",
            config,
            progress=False,
        )
        seconds = time.perf_counter() - start
        rows.append(
            {
                "precision": precision,
                "steps": steps,
                "seconds": round(seconds, 1),
                "tokens_per_s": round(steps * config.tokens_per_step / seconds),
                "valid_bits_per_base": summary["valid"]["bits_per_base"],
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                if device.type == "cuda"
                else None,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps per precision (0: skip)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="write every result here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 comparisons must be float32
    torch.backends.cudnn.allow_tf32 = False
    numerics = [check_numerics(name, arch, config, args.length, device) for name, (arch, config) in VARIANTS.items()]
    failed = []
    print("| model | fast vs reference (logits) | (gradients) | device vs CPU | bf16 vs fp32 reference |")
    print("|---|---:|---:|---:|---:|")
    for row in numerics:
        if "error" in row:
            failed.append(f"{row['model']}: {row['error']}")
            continue
        print(
            f"| {row['model']} | {row['fast_vs_reference']:.1e} | {row['grads_fast_vs_reference']:.1e} |"
            f" {row['device_vs_cpu']:.1e} | {row['bf16_vs_fp32_reference']:.1e} |"
        )
        for key in ("fast_vs_reference", "grads_fast_vs_reference", "device_vs_cpu"):
            if not row[key] <= FP32_TOLERANCE:
                failed.append(f"{row['model']}: {key} {row[key]:.2e} > {FP32_TOLERANCE}")
        if not row["bf16_vs_fp32_reference"] <= BF16_TOLERANCE:
            failed.append(f"{row['model']}: bf16 {row['bf16_vs_fp32_reference']:.2e} > {BF16_TOLERANCE}")
    training = []
    if args.steps:
        with tempfile.TemporaryDirectory() as tmp:
            training = bf16_training(args.steps, device, Path(tmp))
        print(
            "\n| precision | steps | seconds | tokens/s | valid bits/base | peak GiB |\n|---|---:|---:|---:|---:|---:|"
        )
        for row in training:
            print(
                f"| {row['precision']} | {row['steps']} | {row['seconds']} | {row['tokens_per_s']:,} |"
                f" {row['valid_bits_per_base']:.3f} | {row['peak_memory_gib']} |"
            )
        bf16, fp32 = (row["valid_bits_per_base"] for row in training)
        if not bf16 <= fp32 + 0.05:
            failed.append(f"bf16 training ended at {bf16:.3f} bits/base, fp32 at {fp32:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"device": str(device), "numerics": numerics, "training": training}, indent=1))
    for line in failed:
        print("FAILED:", line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
