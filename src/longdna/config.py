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

from longdna.hub import HubSource, parse_source  # standard library only, like this module
from longdna.settings import FinetuneConfig, PretrainConfig  # torch-free, like this module


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
    _check_settings(config)


def _check_references(config: dict[str, Any]) -> None:
    """Cross-references the schema cannot express: names that must exist elsewhere in the config."""
    genomes = config.get("genomes", {})
    models = config.get("models", {})
    benchmarks = config.get("benchmarks", {})
    problems = []
    if config["tokenize"]["genome"] not in genomes:
        problems.append(f"tokenize.genome: {config['tokenize']['genome']!r} is not a key of genomes {sorted(genomes)}")
    for name, spec in models.items():
        problems += _released_model_problems(name, spec)
    for name, run in config.get("finetune", {}).get("models", {}).items():
        if run["backbone"] not in models:
            problems.append(
                f"finetune.models.{name}.backbone: {run['backbone']!r} is not a key of models {sorted(models)}"
            )
        for b in run.get("benchmarks", []):
            if b not in benchmarks:
                problems.append(
                    f"finetune.models.{name}.benchmarks: {b!r} is not a key of benchmarks {sorted(benchmarks)}"
                )
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


def _released_model_problems(name: str, spec: dict[str, Any]) -> list[str]:
    """``models.<name>.pretrained``: a well-formed Hub source or an existing directory, and no ``config`` (the
    checkpoint has its own)."""
    if "pretrained" not in spec:
        return []
    where = f"models.{name}.pretrained"
    try:
        source = parse_source(spec["pretrained"])
    except ValueError as err:
        return [f"{where}: {err}"]
    problems = []
    if not isinstance(source, HubSource) and not source.is_dir():
        problems.append(f"{where}: {spec['pretrained']!r} is neither hf:OWNER/NAME[@REVISION] nor a directory")
    if "config" in spec:
        problems.append(
            f"models.{name}.config: a released model's architecture is its checkpoint's ({where}); remove config"
        )
    return problems


def released_models(config: dict[str, Any]) -> dict[str, str]:
    """Model name -> ``pretrained`` source of the models fetched instead of pretrained here."""
    return {name: spec["pretrained"] for name, spec in config["models"].items() if "pretrained" in spec}


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


def finetune_config(config: dict[str, Any], benchmark: str, model: str) -> FinetuneConfig:
    """The typed fine-tuning settings of one run: :func:`finetune_settings` over ``FinetuneConfig``'s defaults."""
    return FinetuneConfig.from_dict(finetune_settings(config, benchmark, model))


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


def _check_settings(config: dict[str, Any]) -> None:
    """What only the package's own classes can check, before any job runs (so ``snakemake -n`` reports it):
    the keys and values inside each model's ``config`` (its config dataclass), the pretraining and fine-tuning
    settings (their dataclasses' checks: the length warm-up, micro-batches, ...), fine-tuning's
    ``backbone_overrides``, and the split chromosomes of genomes whose sequence names the config determines
    (the demo genome). These need torch: where the Snakemake environment lacks it (``--use-conda`` on a login
    node), the jobs check the same when they start."""
    try:
        from longdna.data.genome.prepare import known_sequence_lengths
        from longdna.data.tokens.shards import split_regions
        from longdna.models import build_config
    except ModuleNotFoundError as err:  # a third-party module (torch) missing here; never our own
        if (err.name or "").startswith("longdna"):
            raise
        return
    problems: dict[str, None] = {}  # ordered, without repeats
    for name, spec in config["models"].items():
        if "arch" not in spec:
            continue  # a released checkpoint: its own config.json describes it
        arch, values = architecture(config, name)
        try:
            build_config(arch, **values)
        except (TypeError, ValueError) as err:
            problems[f"models.{name}.config: {err}"] = None
        try:
            PretrainConfig.from_dict(pretrain_settings(config, name))
        except (TypeError, ValueError) as err:
            problems[f"{f'models.{name}.pretrain' if 'pretrain' in spec else 'pretrain'}: {err}"] = None
    for benchmark, model, _ in finetune_runs(config):
        settings = finetune_settings(config, benchmark, model)
        where = f"finetune settings of {model} on {benchmark}"
        try:
            FinetuneConfig.from_dict(settings)
        except (TypeError, ValueError) as err:
            problems[f"{where}: {err}"] = None
        backbone = config["finetune"]["models"][model]["backbone"]
        if settings.get("backbone_overrides") and "arch" in config["models"][backbone]:
            arch, values = architecture(config, backbone)
            try:
                build_config(arch, **{**values, **settings["backbone_overrides"]})
            except (TypeError, ValueError) as err:
                layers = {
                    "finetune.settings": config["finetune"].get("settings", {}),
                    f"benchmarks.{benchmark}.finetune": config["benchmarks"][benchmark].get("finetune", {}),
                    f"finetune.models.{model}.settings": config["finetune"]["models"][model].get("settings", {}),
                }
                defined_in = [layer for layer, values in layers.items() if "backbone_overrides" in values][-1]
                problems[f"{defined_in}.backbone_overrides: {err}"] = None
    pretraining = bool(config["models"])  # released models too: test_pretrained scores them on valid and test
    for key, spec in config["genomes"].items():
        splits, lengths = spec.get("splits") or {}, known_sequence_lengths(spec)
        pretrained_on = pretraining and key == config["tokenize"]["genome"]
        missing = [s for s in ("valid", "test") if not splits.get(s)]
        if pretrained_on and "bed" not in splits and missing:
            problems[
                f"genomes.{key}.splits: no {' and no '.join(missing)} chromosomes: pretraining needs a valid"
                " and a test split (splits.valid and splits.test name chromosomes, the rest is train; or"
                " splits.bed)"
            ] = None
        if "bed" in splits or lengths is None:
            continue  # checked once the genome exists (workflow/rules/tokenize.smk) or the BED is read
        try:
            regions = split_regions(lengths, splits.get("valid"), splits.get("test"))
        except ValueError as err:
            problems[f"genomes.{key}.{err}"] = None
            continue
        if pretrained_on and "train" not in set(regions["split"]):
            problems[f"genomes.{key}.splits: every chromosome is valid or test: pretraining needs a train split"] = None
    if problems:
        raise ConfigError("\n".join(f"config error at {p}" for p in problems))
