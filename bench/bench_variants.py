"""VCF variant scoring (``longdna score-variants``): variants per second, and peak memory against the record count.

    python bench/bench_variants.py throughput                       # the demo's HyenaDNA at its 1,024 bp
    python bench/bench_variants.py throughput --arch caduceus --config '{"d_model": 128, "n_layer": 4, "rcps": true}'
    python bench/bench_variants.py memory --records 2000 20000 1000000

Both write a random genome (bgzip FASTA, ``--genome-mbp``) and VCFs of SNVs (90 %) and 1-6 bp indels (10 %)
at random sorted positions into ``--workdir``, and save a randomly initialised model there (speed and memory do
not depend on the weights). Each run is :func:`longdna.eval.variant_scoring.score_vcf` end to end -- VCF
parsing, REF checks, genome reads, both strands of both windows through the model, bgzip VCF output -- in its
own subprocess.

``throughput``
    ALT alleles scored per second of wall time (model loading excluded: the rate is that of the streaming loop
    after a first batch), and per CPU second of the process (all its threads: on a shared machine the wall-time
    rate depends on the other jobs), on CUDA when a GPU is present (``--precision bf16`` for bf16 autocast; the
    scorer's default is fp32), else on the CPU with ``--threads``. The model is ``--arch`` with
    ``--preset``/``--config`` (default: ``config/config.yaml``'s HyenaDNA, d_model 64 x 2 layers) at
    ``--window`` bp (default 1,024: its pretraining context).
``memory``
    peak resident memory (``ru_maxrss`` of the child) of scoring each of ``--records`` with a tiny HyenaDNA at a
    16 bp window (``--batch-size`` alleles per batch), and its ratio to the first: the target is flat memory
    (the issue's bound: 1.15x for 10x the records); a 16 bp window keeps a million records to an hour on two
    shared cores.

Prints Markdown table rows (``--json``: one JSON object per line).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

DEMO_HYENADNA = {
    "d_model": 64,
    "n_layer": 2,
    "d_inner": 256,
    "l_max": 1026,
    "embed_dropout": 0.0,
    "short_filter_order": 7,
}
TINY_HYENADNA = {"d_model": 8, "n_layer": 1, "l_max": 18}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    from longdna.eval import variant_scoring
    from longdna.eval.inference import inference_device
    model, genome, vcf, out, settings, threads = sys.argv[1:7]
    torch.set_num_threads(int(threads))
    config = variant_scoring.VariantScoringConfig(**json.loads(settings))
    starts = []
    original = variant_scoring.score_windows
    def timed(*args, **kwargs):  # the clocks start when the first batch is ready: model loading excluded
        starts.append((time.perf_counter(), time.process_time()))
        return original(*args, **kwargs)
    variant_scoring.score_windows = timed
    counts = variant_scoring.score_vcf(model, genome, vcf, out, config, progress=False)
    seconds = time.perf_counter() - starts[0][0]  # the scores reached the CPU: nothing is left running on a GPU
    cpu_seconds = time.process_time() - starts[0][1]
    cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(json.dumps({"counts": counts, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "device": str(inference_device()), "cuda_peak_mb": cuda_peak_mb,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def write_genome(workdir: Path, mbp: float, seed: int = 0) -> tuple[Path, np.ndarray]:
    from longdna.data.genome.fasta import write_bgzip_fasta

    sequence = np.random.default_rng(seed).choice(np.frombuffer(b"ACGT", np.uint8), int(mbp * 1e6))
    path = workdir / f"genome-{mbp:g}mbp.fa.gz"
    if not Path(f"{path}.gzi").exists():
        write_bgzip_fasta([("chr1", sequence.tobytes())], path)
    return path, sequence


def write_vcf(path: Path, sequence: np.ndarray, records: int, seed: int = 1) -> Path:
    """``records`` variants at sorted random positions: 90 % SNVs, 5 % deletions, 5 % insertions of 1-6 bp."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)
    with open(path, "w") as out:
        out.write(
            f"##fileformat=VCFv4.2\n##contig=<ID=chr1,length={sequence.size}>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        )
        for begin in range(0, records, 100_000):
            n = min(100_000, records - begin)
            positions = np.sort(rng.integers(10, sequence.size - 10, n))
            kinds = rng.random(n)
            sizes = rng.integers(1, 7, n)
            lines = []
            for position, kind, size in zip(positions.tolist(), kinds.tolist(), sizes.tolist()):
                ref = chr(sequence[position])
                if kind < 0.9:
                    alt = chr(bases[(bases.tolist().index(sequence[position]) + 1 + int(size) % 3) % 4])
                elif kind < 0.95:
                    ref = sequence[position : position + 1 + size].tobytes().decode()
                    alt = ref[0]
                else:
                    alt = ref + rng.choice(bases, size).tobytes().decode()
                lines.append(f"chr1\t{position + 1}\t.\t{ref}\t{alt}\t.\t.\t.\n")
            out.write("".join(lines))
    return path


def save_model(workdir: Path, arch: str, preset: str | None, config: dict, window: int) -> Path:
    import torch

    from longdna.models import build_model, save_pretrained

    directory = workdir / f"model-{arch}"
    torch.manual_seed(0)
    save_pretrained(build_model(arch, preset, **config), directory, pretrain={"config": {"seq_len": window}})
    return directory


def run(model: Path, genome: Path, vcf: Path, settings: dict, threads: int) -> dict:
    out = vcf.with_suffix(".scored.vcf.gz")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(genome), str(vcf), str(out), json.dumps(settings), str(threads)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(result.stderr[-4000:])
    out.unlink(missing_ok=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("throughput", "memory"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_variants"))
    parser.add_argument("--genome-mbp", type=float, default=10.0)
    parser.add_argument("--records", type=int, nargs="+", help="throughput: one count (2,000); memory: several")
    parser.add_argument("--arch", default="hyenadna")
    parser.add_argument("--preset")
    parser.add_argument("--config", type=json.loads, help="architecture settings (JSON); default: the demo's HyenaDNA")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", help="fp32 (the scorer's default), bf16 or auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    genome, sequence = write_genome(args.workdir, args.genome_mbp)
    print(f"# {platform.machine()}, {platform.python_version()}; threads {args.threads}", file=sys.stderr)

    if args.mode == "throughput":
        records = (args.records or [2000])[0]
        config = args.config if args.config is not None else ({} if args.preset else DEMO_HYENADNA)
        model = save_model(args.workdir, args.arch, args.preset, config, args.window)
        vcf = write_vcf(genome.with_name(f"{genome.name[:-6]}-{records}.vcf"), sequence, records)
        settings = {"batch_size": args.batch_size, **({"precision": args.precision} if args.precision else {})}
        result = run(model, genome, vcf, settings, args.threads)
        alleles = result["counts"]["scored"]
        row = {
            "arch": args.arch,
            "preset": args.preset,
            "config": config,
            "window": args.window,
            "batch_size": args.batch_size,
            "device": result["device"],
            "alleles": alleles,
            "seconds": round(result["seconds"], 2),
            "alleles_per_s": round(alleles / result["seconds"], 1),
            "alleles_per_cpu_s": round(alleles / result["cpu_seconds"], 2),
            "peak_rss_mb": round(result["peak_rss_mb"]),
            "cuda_peak_mb": result["cuda_peak_mb"],
        }
        print(
            json.dumps(row)
            if args.json
            else f"| {args.arch} {args.preset or json.dumps(config)} | {args.window} | {args.batch_size}"
            f" | {row['device']}"
            f" | {alleles:,} | {row['seconds']} | **{row['alleles_per_s']:,}** | {row['alleles_per_cpu_s']} |"
            f" {row['peak_rss_mb']} |"
        )
        return

    model = save_model(args.workdir, "hyenadna", None, TINY_HYENADNA, 16)
    first = None
    for records in args.records or [2000, 20000]:
        vcf = write_vcf(genome.with_name(f"{genome.name[:-6]}-{records}.vcf"), sequence, records)
        result = run(model, genome, vcf, {"batch_size": args.batch_size}, args.threads)
        first = first or result["peak_rss_mb"]
        row = {
            "records": records,
            "alleles": result["counts"]["scored"],
            "seconds": round(result["seconds"], 1),
            "peak_rss_mb": round(result["peak_rss_mb"], 1),
            "ratio": round(result["peak_rss_mb"] / first, 3),
        }
        print(
            json.dumps(row)
            if args.json
            else f"| {records:,} | {row['alleles']:,} | {row['seconds']} | {row['peak_rss_mb']} | {row['ratio']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
