"""The ``longdna`` command line: small utilities around the data stages.

* ``longdna verify SHARD_DIR [--fasta GENOME.fa.gz]``: check token shards against their manifest (``.npy``
  structure and size, sha256, token range) and, if given, the FASTA they came from; prints every problem, each
  naming its file, and exits 1 if there is any (a damaged shard is reported, never a crash).
* ``longdna download SOURCE OUT.fa.gz [--cache-dir DIR] [--preset primary] [--include RE] [--exclude RE]
  [--sha256 HEX | --md5 HEX] [--prefix chr]``: prepare a genome (see :mod:`longdna.data.genome.prepare`); SOURCE is
  anything ``genome.source`` accepts, or a YAML/JSON file holding a whole genome spec.
* ``longdna score-variants --model MODEL_DIR --fasta GENOME --vcf IN.vcf[.gz] --out OUT.vcf.gz``: every record
  of the VCF with the model's zero-shot LLR and embedding distance per ALT (:mod:`longdna.eval.variant_scoring`).
* ``longdna embed --model MODEL_DIR --fasta IN.fa --out OUT.parquet|OUT.npy``: one pooled vector per FASTA
  record (:mod:`longdna.eval.embeddings`).
* ``longdna export MODEL_DIR OUT_DIR --format hyenadna|caduceus``: a pretrained or fine-tuned model in the
  released checkpoints' layout, for the public HyenaDNA / Caduceus code (:mod:`longdna.models.released`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from longdna.models.catalog import POOLINGS
from longdna.settings import ON_REF_MISMATCH, PRECISIONS, EmbeddingConfig, VariantScoringConfig


def _genome_spec(args: argparse.Namespace) -> dict[str, Any]:
    source = Path(args.source)
    if source.suffix in (".yaml", ".yml", ".json") and source.is_file():
        spec = yaml.safe_load(source.read_text())  # YAML is a superset of JSON
        if not isinstance(spec, dict):
            raise SystemExit(f"{source}: expected a mapping of genome spec keys")
    else:
        spec = {"source": args.source}
    for key in ("preset", "sha256", "md5", "prefix"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    for key in ("include", "exclude"):
        if getattr(args, key):
            spec[key] = list(spec.get(key) or []) + getattr(args, key)
    return spec


def _verify(args: argparse.Namespace) -> int:
    from longdna.data.tokens.shards import verify_shards

    problems = verify_shards(args.shard_dir, args.fasta)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.shard_dir}: OK" + (f" (checked against {args.fasta})" if args.fasta else ""))
    return 1 if problems else 0


def _download(args: argparse.Namespace) -> int:
    from longdna.data.genome.prepare import prepare_genome

    written = prepare_genome(_genome_spec(args), args.out, args.cache_dir, progress=not args.quiet)
    total = sum(length for _, length in written)
    print(f"{args.out}: {len(written)} sequences, {total:,} bp")
    return 0


def _score_variants(args: argparse.Namespace) -> int:
    from longdna.eval.variant_scoring import describe, score_vcf

    config = VariantScoringConfig(
        **_given(
            args, "window", "embedding_window", "batch_size", "on_ref_mismatch", "chunk_size", "precision", "threads"
        )
    )
    counts = score_vcf(args.model, args.fasta, args.vcf, args.out, config, progress=not args.quiet)
    print(describe(args.out, counts))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from longdna.eval.embeddings import embed_fasta

    config = EmbeddingConfig(
        **_given(args, "pooling", "rc_conjoin", "max_length", "tokens_per_batch", "precision", "threads")
    )
    count = embed_fasta(args.model, args.fasta, args.out, config, progress=not args.quiet)
    print(f"{args.out}: {count:,} records embedded")
    return 0


def _export(args: argparse.Namespace) -> int:
    from longdna.pretrained import export_model_dir

    written, note = export_model_dir(args.model_dir, args.out_dir, args.format)
    print(f"{args.out_dir}: {', '.join(written)} ({args.format} layout){note}")
    return 0


def _given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options the user gave; the others keep the settings dataclass's defaults (one place for them)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text}")
    return value


def _inference_options(command: argparse.ArgumentParser, default_precision: str) -> None:
    command.add_argument(
        "--precision",
        choices=PRECISIONS,
        help=f"auto: bf16 autocast on CUDA, fp32 on CPU (default: {default_precision})",
    )
    command.add_argument("--threads", type=_positive, help="CPU threads for torch (default: torch's)")
    command.add_argument("--quiet", action="store_true", help="no progress bar")


class _CommandListFormatter(argparse.HelpFormatter):
    """Aligns the commands' help past the longest command name, so that each command's help stays on its line
    (argparse leaves the subcommands' extra indentation out of that width and wraps long names)."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            longest = max(len(name) for name in action.choices) + self._current_indent + self._indent_increment
            self._action_max_length = max(self._action_max_length, longest)


def build_parser() -> argparse.ArgumentParser:
    from longdna import __version__

    parser = argparse.ArgumentParser(
        prog="longdna",
        description="Long-context DNA foundation models: command-line tools.",
        formatter_class=_CommandListFormatter,
    )
    parser.add_argument("--version", action="version", version=f"longdna {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    verify = commands.add_parser("verify", help="check token shards against the manifest and the FASTA")
    verify.add_argument("shard_dir", type=Path)
    verify.add_argument("--fasta", type=Path, help="indexed genome FASTA the shards were made from")
    verify.set_defaults(run=_verify)

    download = commands.add_parser("download", help="fetch and normalise a genome to bgzip FASTA + indexes")
    download.add_argument("source", help="demo, UCSC name, URL, path, or a YAML/JSON genome spec file")
    download.add_argument("out", type=Path, help="output .fa.gz (written with .fai and .gzi)")
    download.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("resources/cache"),
        help="where downloads are kept (default: %(default)s)",
    )
    download.add_argument("--preset", choices=("all", "primary"))
    download.add_argument("--include", action="append", default=[], metavar="REGEX")
    download.add_argument("--exclude", action="append", default=[], metavar="REGEX")
    download.add_argument("--prefix")
    checksum = download.add_mutually_exclusive_group()
    checksum.add_argument("--sha256")
    checksum.add_argument("--md5")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=_download)

    score = commands.add_parser(
        "score-variants",
        help="score VCF variants: zero-shot LLR, embedding distance",
        description="Every record of the VCF, in order, with INFO LDNA_LLR and LDNA_EMB per"
        " ALT (definitions: docs/formats.md, longdna.eval.variant_scoring).",
    )
    score.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="MODEL_DIR",
        help="pretraining output directory (results/pretrain/M)",
    )
    score.add_argument("--fasta", type=Path, required=True, help="indexed genome FASTA (plain, or bgzip + .fai/.gzi)")
    score.add_argument("--vcf", type=Path, required=True, help="input VCF, bgzip VCF or BCF")
    score.add_argument("--out", type=Path, required=True, help="output VCF (.vcf.gz: bgzip; .vcf: plain)")
    score.add_argument("--window", type=_positive, help="bp per window (default: the model's pretraining seq_len)")
    score.add_argument(
        "--embedding-window",
        type=_positive,
        help="bp centred on the variant averaged into LDNA_EMB (default: the whole window)",
    )
    score.add_argument("--batch-size", type=_positive, help="ALT alleles per batch (default: 16)")
    score.add_argument(
        "--on-ref-mismatch",
        choices=ON_REF_MISMATCH,
        help="a REF that disagrees with the genome: stop, or flag the record (default: error)",
    )
    score.add_argument("--chunk-size", type=_positive, help="run recurrent models in chunks of this many positions")
    _inference_options(score, "fp32")
    score.set_defaults(run=_score_variants)

    embed = commands.add_parser(
        "embed",
        help="one pooled embedding per FASTA record (.parquet or .npy)",
        description="One pooled vector per FASTA record, as a fine-tuned head reads it.",
    )
    embed.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="MODEL_DIR",
        help="pretraining output directory, or a fine-tuning run saved with save_model",
    )
    embed.add_argument("--fasta", type=Path, required=True, help="FASTA, plain or gzip")
    embed.add_argument("--out", type=Path, required=True, help="OUT.parquet (name, length, embedding) or OUT.npy")
    embed.add_argument(
        "--pooling",
        choices=POOLINGS,
        help="pooling over positions (default: the fine-tuned run's, else mean)",
    )
    embed.add_argument(
        "--rc-conjoin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the reverse complement's vector (default: the fine-tuned run's, else no)",
    )
    embed.add_argument("--max-length", type=_positive, help="crop longer records to their centre")
    embed.add_argument(
        "--tokens-per-batch", type=_positive, help="tokens per forward pass, at least one record (default: 65536)"
    )
    _inference_options(embed, "auto")
    embed.set_defaults(run=_embed)

    export = commands.add_parser(
        "export",
        help="write a model in the released HyenaDNA or Caduceus layout",
        description="A pretraining output (results/pretrain/M) or a fine-tuning run saved"
        " with save_model, as the public code reads it: --format hyenadna writes config.json"
        " + weights.ckpt (original HyenaDNA), --format caduceus config.json +"
        " model.safetensors + tokenizer_config.json (CaduceusForMaskedLM).",
    )
    export.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    export.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    export.add_argument("--format", choices=("hyenadna", "caduceus"), required=True)
    export.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, RuntimeError) as exc:  # data errors already name the file; no traceback
        print(f"longdna {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
