"""Long-context inference of the study's ~50M recurrent models: one forward pass by exact chunked state passing.

    python bench/bench_inference.py                                   # CUDA: 1,048,576 tokens, bf16
    python bench/bench_inference.py --device cpu --length 32768       # what a CPU manages in minutes

For each model (``hawk``: the ``hawk-50m`` preset, bidirectional; ``caduceus``: Caduceus-PS 27 x 512, both as in
``config/long_range.yaml``, randomly initialised -- speed and memory do not depend on the weights):

1. ``embed_chunked`` is checked against ``embed`` at a small length (float32, several chunks): the chunked pass
   is exact, so what is timed is the model's real output;
2. one forward pass of batch 1 at ``--length`` tokens, ``embed_chunked(ids, --chunk)`` under
   ``torch.inference_mode``, is timed (after a short warm-up pass on CUDA) and its peak memory recorded:
   ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the process's peak resident set over
   the model alone (each model runs in its own subprocess, so peaks never mix).

How the bidirectional models are chunked (``longdna.models.hawk`` and ``longdna.models.mamba`` docstrings):
layer by layer; within a layer the forward recurrence runs over the chunks left to right and the reverse
recurrence right to left, each carrying its state (the last conv inputs and the recurrent state) from chunk
to chunk. Memory is O(length x width) for one layer's activations plus O(chunk) for everything inside a
recurrence; nothing is quadratic in the length.

Prints one Markdown table row per model (``--json``: one JSON object per line instead).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

MODELS = {
    "hawk": ("hawk", {"preset": "hawk-50m"}),
    "caduceus": ("caduceus", {"d_model": 512, "n_layer": 27, "rcps": True}),
}


def build(name: str, device: torch.device):
    from longdna.models import build_model

    arch, config = MODELS[name]
    torch.manual_seed(0)
    return build_model(arch, **config).to(device).eval()


def check_exact(model, device: torch.device) -> float:
    """Largest |embed_chunked - embed| at 600 tokens in chunks of 128 (float32)."""
    ids = torch.randint(7, 11, (1, 600), device=device)
    with torch.inference_mode():
        return float((model.embed_chunked(ids, 128) - model.embed(ids)).abs().max())


def measure(name: str, length: int, chunk: int, device_name: str) -> dict:
    device = torch.device(device_name)
    model = build(name, device)
    max_error = check_exact(model, device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ids = torch.randint(7, 11, (1, length), device=device)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        if device.type == "cuda":
            model.embed_chunked(ids[:, : min(length, 4 * chunk)], chunk)  # kernels loaded, allocator warm
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        hidden = model.embed_chunked(ids, chunk)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
        where = torch.cuda.get_device_name()
    else:
        peak_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) / 2**20
        where = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    return {
        "model": name,
        "parameters": model.num_parameters(),
        "length": length,
        "chunk": chunk,
        "device": where,
        "precision": str(dtype).removeprefix("torch."),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(length / seconds),
        "peak_memory_gb": round(peak_gb, 2),
        "finite": bool(torch.isfinite(hidden).all()),
        "chunked_vs_unchunked_max_abs_diff": max_error,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--length", type=int, default=None, help="tokens (default: 1,048,576 on CUDA, 32,768 on CPU)")
    parser.add_argument("--chunk", type=int, default=None, help="positions per chunk (default: 131,072 / 8,192)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one model in this process (peak memory per model)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(args.worker, args.length, args.chunk, args.device)))
        return 0
    cuda = args.device.startswith("cuda")
    length = args.length or (1_048_576 if cuda else 32_768)
    chunk = args.chunk or (131_072 if cuda else 8_192)
    if not args.json:
        print(
            "| model | parameters | tokens | chunk | device | precision | seconds | tokens/s | peak memory (GB) |"
            " chunked = unchunked (max abs diff) |"
        )
        print("|---|---:|---:|---:|---|---|---:|---:|---:|---:|")
    for name in args.models:
        command = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--length",
            str(length),
            "--chunk",
            str(chunk),
            "--device",
            args.device,
            *(["--threads", str(args.threads)] if args.threads else []),
        ]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"| {row['model']} | {row['parameters']:,} | {row['length']:,} | {row['chunk']:,} | {row['device']} |"
                f" {row['precision']} | {row['seconds']} | {row['tokens_per_s']:,} | {row['peak_memory_gb']} |"
                f" {row['chunked_vs_unchunked_max_abs_diff']:.1e} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
