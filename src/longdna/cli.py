"""The ``longdna`` command line: small utilities around the data stages.

* ``longdna verify SHARD_DIR [--fasta GENOME.fa.gz]``: check token shards against their manifest and, if
  given, the FASTA they came from; prints every problem and exits 1 if there is any.
* ``longdna download SOURCE OUT.fa.gz [--cache-dir DIR] [--preset primary] [--include RE] [--exclude RE]
  [--sha256 HEX | --md5 HEX] [--prefix chr]``: prepare a genome (see :mod:`longdna.data.genome`); SOURCE is
  anything ``genome.source`` accepts, or a YAML/JSON file holding a whole genome spec.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml


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
    from longdna.data.shards import verify_shards

    problems = verify_shards(args.shard_dir, args.fasta)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.shard_dir}: OK" + (f" (checked against {args.fasta})" if args.fasta else ""))
    return 1 if problems else 0


def _download(args: argparse.Namespace) -> int:
    from longdna.data.genome import prepare_genome

    written = prepare_genome(_genome_spec(args), args.out, args.cache_dir, progress=not args.quiet)
    total = sum(length for _, length in written)
    print(f"{args.out}: {len(written)} sequences, {total:,} bp")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longdna", description="Long-context DNA foundation models: data tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="check token shards against the manifest and the FASTA")
    verify.add_argument("shard_dir", type=Path)
    verify.add_argument("--fasta", type=Path, help="indexed genome FASTA the shards were made from")
    verify.set_defaults(run=_verify)

    download = commands.add_parser("download", help="fetch and normalise a genome to bgzip FASTA + indexes")
    download.add_argument("source", help="demo, UCSC name, URL, path, or a YAML/JSON genome spec file")
    download.add_argument("out", type=Path, help="output .fa.gz (written with .fai and .gzi)")
    download.add_argument("--cache-dir", type=Path, default=Path("resources/cache"),
                          help="where downloads are kept (default: %(default)s)")
    download.add_argument("--preset", choices=("all", "primary"))
    download.add_argument("--include", action="append", default=[], metavar="REGEX")
    download.add_argument("--exclude", action="append", default=[], metavar="REGEX")
    download.add_argument("--prefix")
    checksum = download.add_mutually_exclusive_group()
    checksum.add_argument("--sha256")
    checksum.add_argument("--md5")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=_download)
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
