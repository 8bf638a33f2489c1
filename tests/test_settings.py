"""The settings module: importable without torch, one truth with the schema and config/README.md."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from longdna import settings
from longdna.config import load_schema
from longdna.models.catalog import ARCHITECTURES, DEFAULT_SHAPES, POOLINGS

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
README = (REPO / "config/README.md").read_text()

#: settings class -> the schema's object for it; keys of that object that are no setting of the class
SECTIONS = {
    settings.PretrainConfig: (SCHEMA["$defs"]["pretrain_settings"], set()),
    settings.FinetuneConfig: (SCHEMA["$defs"]["finetune_settings"], set()),
    settings.VariantEffectConfig: (SCHEMA["$defs"]["variant_effect_settings"], set()),
    settings.VariantScoringConfig: (SCHEMA["$defs"]["variant_scoring_settings"], set()),
    settings.ExtrapolationConfig: (SCHEMA["properties"]["evaluate"]["properties"]["extrapolation"], {"benchmarks"}),
}


def test_settings_resources_and_model_tables_import_without_torch() -> None:
    """What the Snakefile imports (settings, job resources, the model package's tables) needs no torch or NumPy."""
    code = (
        "import sys; import longdna.settings, longdna.resources, longdna.models.catalog, longdna.config;"
        " from longdna.models import presets; presets('hyenadna');"
        " heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'pandas'});"
        " assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_default_shapes_are_the_config_defaults() -> None:
    from longdna.models import build_config

    for arch, shape in DEFAULT_SHAPES.items():
        config = build_config(arch)
        assert shape == (config.d_model, config.n_layer), arch


def test_schema_poolings_and_architectures_are_the_model_packages() -> None:
    assert SCHEMA["$defs"]["finetune_settings"]["properties"]["pooling"]["enum"] == list(POOLINGS)
    assert SCHEMA["properties"]["models"]["additionalProperties"]["properties"]["arch"]["enum"] == list(ARCHITECTURES)


@pytest.mark.parametrize("config_class", list(SECTIONS), ids=lambda c: c.__name__)
def test_schema_choices_are_exactly_what_the_settings_accept(config_class: type) -> None:
    """Every value a schema enum allows is accepted by the package without Snakemake, any other is refused --
    from a config dict and when the class is built directly (the CLI, ``dataclasses.replace``)."""
    schema, _ = SECTIONS[config_class]
    choices = {key: spec["enum"] for key, spec in schema["properties"].items() if "enum" in spec}
    assert choices, config_class
    for key, values in choices.items():
        for value in values:
            assert getattr(config_class.from_dict({key: value}), key) == value
        with pytest.raises(ValueError, match=key):
            config_class.from_dict({key: "no-such-choice"})
        with pytest.raises(ValueError, match=key):
            dataclasses.replace(config_class(), **{key: "no-such-choice"})


def test_embedding_options_are_checked() -> None:
    assert settings.EmbeddingConfig(pooling="max", precision="fp32").pooling == "max"
    for key in ("pooling", "precision"):
        with pytest.raises(ValueError, match=f"embedding options: {key} must be one of"):
            settings.EmbeddingConfig(**{key: "no-such-choice"})


def documented_keys(config_class: type) -> set[str]:
    """The keys in the first column of the table that follows the first mention of ``config_class``."""
    start = README.index(f"`longdna.settings.{config_class.__name__}`")
    lines = README[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| key |"))
    table = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        table.append(line)
    return {key for row in table for key in re.findall(r"`([a-z_0-9]+)`", row.split("|")[1])}


@pytest.mark.parametrize("config_class", list(SECTIONS), ids=lambda c: c.__name__)
def test_readme_documents_exactly_the_settings(config_class: type) -> None:
    schema, not_settings = SECTIONS[config_class]
    keys = set(schema["properties"])
    fields = {f.name for f in dataclasses.fields(config_class)}
    documented = documented_keys(config_class)
    assert documented == keys, (
        f"config/README.md: undocumented {sorted(keys - documented)},"
        f" documented but not in the schema {sorted(documented - keys)}"
    )
    assert keys - fields == not_settings
    assert fields - keys <= {"threads"}  # a rule's threads, where the schema leaves them out


def test_settings_checks_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['seq_length'\]"):
        settings.PretrainConfig.from_dict({"seq_length": 10})
    with pytest.raises(ValueError, match="seq_len_warmup"):
        settings.PretrainConfig.from_dict(
            {"seq_len": 1024, "seq_len_warmup": {"start_length": 384, "steps_per_stage": 5}}
        )
    with pytest.raises(ValueError, match="finetune settings: pooling"):
        settings.FinetuneConfig.from_dict({"pooling": "median"})
    with pytest.raises(ValueError, match="extrapolation settings: pooling"):
        settings.ExtrapolationConfig.from_dict({"pooling": "mean"})
