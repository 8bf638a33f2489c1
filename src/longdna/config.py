"""Workflow configuration: validation against the JSON schema and resolution of layered settings.

Imported by the Snakefile itself, so it depends only on what Snakemake brings (``yaml``, ``jsonschema``), not
on NumPy or torch. Every error names the offending key as a dotted path, e.g.
``config error at pretrain.lr: 'fast' is not of type 'number'``.

Settings layers (later wins):

* pretraining: ``pretrain`` < ``models.<name>.pretrain``;
* fine-tuning: ``finetune.settings`` < ``benchmarks.<benchmark>.finetune`` < ``finetune.models.<model>.settings``;
* fine-tuning seeds: ``finetune.seeds`` < ``benchmarks.<benchmark>.seeds``.
"""

from __future__ import annotations

import os
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """The workflow configuration is invalid; the message names the key."""


def load_schema(path: str | os.PathLike) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` listing every schema violation with the dotted key it concerns."""
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        where = _dotted(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            for key in extra:
                messages.append(f"config error at {_dotted([*error.absolute_path, key])}: unknown key{hint}")
        else:
            messages.append(f"config error at {where}: {error.message}")
    if messages:
        raise ConfigError("\n".join(messages))
    _check_references(config)


def _check_references(config: dict[str, Any]) -> None:
    """Cross-references the schema cannot express: names that must exist elsewhere in the config."""
    genomes = config.get("genomes", {})
    models = config.get("models", {})
    benchmarks = config.get("benchmarks", {})
    problems = []
    if config["tokenize"]["genome"] not in genomes:
        problems.append(f"tokenize.genome: {config['tokenize']['genome']!r} is not a key of genomes {sorted(genomes)}")
    for name, run in config.get("finetune", {}).get("models", {}).items():
        if run["backbone"] not in models:
            problems.append(f"finetune.models.{name}.backbone: {run['backbone']!r} is not a key of models {sorted(models)}")
        for b in run.get("benchmarks", []):
            if b not in benchmarks:
                problems.append(f"finetune.models.{name}.benchmarks: {b!r} is not a key of benchmarks {sorted(benchmarks)}")
    for name, spec in benchmarks.items():
        genome = spec.get("genome")
        if genome is not None and genome not in genomes:
            problems.append(f"benchmarks.{name}.genome: {genome!r} is not a key of genomes {sorted(genomes)}")
        for role, reference in spec.get("references", {}).items():
            if reference not in genomes:
                problems.append(
                    f"benchmarks.{name}.references.{role}: {reference!r} is not a key of genomes {sorted(genomes)}"
                )
    if problems:
        raise ConfigError("\n".join(f"config error at {p}" for p in problems))


def pretrain_settings(config: dict[str, Any], model: str) -> dict[str, Any]:
    return {**config.get("pretrain", {}), **config["models"][model].get("pretrain", {})}


def architecture(config: dict[str, Any], model: str) -> tuple[str, dict[str, Any]]:
    """(arch, constructor config) of ``models.<model>``: its preset, then its explicit ``config``."""
    spec = config["models"][model]
    values = dict(spec.get("config", {}))
    if "preset" in spec:
        values = {"preset": spec["preset"], **values}
    return spec["arch"], values


def finetune_settings(config: dict[str, Any], benchmark: str, model: str) -> dict[str, Any]:
    finetune = config.get("finetune", {})
    return {
        **finetune.get("settings", {}),
        **config["benchmarks"][benchmark].get("finetune", {}),
        **finetune.get("models", {})[model].get("settings", {}),
    }


def finetune_runs(config: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (benchmark, model, seed) of the finetune stage: ``benchmarks.<benchmark>.seeds`` if given, else
    ``finetune.seeds``."""
    finetune = config.get("finetune", {})
    seeds = finetune.get("seeds", [1, 2, 3])
    runs = []
    for model, spec in finetune.get("models", {}).items():
        for benchmark in spec.get("benchmarks", list(config.get("benchmarks", {}))):
            runs += [(benchmark, model, int(seed)) for seed in config["benchmarks"][benchmark].get("seeds", seeds)]
    return runs
