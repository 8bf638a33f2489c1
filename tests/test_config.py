"""Configuration: schema validation messages, settings layering, and schema/dataclass agreement."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from longdna.config import (
    ConfigError,
    architecture,
    finetune_runs,
    finetune_settings,
    load_schema,
    pretrain_settings,
    validate_config,
)
from longdna.settings import FinetuneConfig, PretrainConfig

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")
CONFIGS = sorted((REPO / "config").glob("*.yaml")) + [REPO / "tests/data/ci_config.yaml"]


@pytest.fixture
def demo() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    validate_config(yaml.safe_load(path.read_text()), SCHEMA)


def test_unknown_key_is_named(demo: dict) -> None:
    demo["finetune"]["settings"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"finetune\.settings\.epoch: unknown key \(allowed: .*epochs"):
        validate_config(demo, SCHEMA)


def test_wrong_type_is_named(demo: dict) -> None:
    demo["pretrain"]["max_steps"] = "many"
    with pytest.raises(ConfigError, match=r"config error at pretrain\.max_steps: 'many' is not of type 'integer'"):
        validate_config(demo, SCHEMA)


def test_dangling_reference_is_named(demo: dict) -> None:
    demo["tokenize"]["genome"] = "hg99"
    with pytest.raises(ConfigError, match=r"tokenize\.genome: 'hg99' is not a key of genomes"):
        validate_config(demo, SCHEMA)


@pytest.mark.parametrize(
    ("definition", "config_class"), [("pretrain_settings", PretrainConfig), ("finetune_settings", FinetuneConfig)]
)
def test_schema_lists_exactly_the_settings_fields(definition: str, config_class: type) -> None:
    fields = {f.name for f in dataclasses.fields(config_class)}
    assert set(SCHEMA["$defs"][definition]["properties"]) == fields


def test_settings_layering(demo: dict) -> None:
    demo["models"]["hyenadna"]["pretrain"] = {"max_steps": 7}
    assert pretrain_settings(demo, "hyenadna")["max_steps"] == 7
    assert pretrain_settings(demo, "hyenadna")["seq_len"] == demo["pretrain"]["seq_len"]
    window = finetune_settings(demo, "demo_long_range", "hyenadna_window1k")
    assert window["max_length"] == 1024  # model settings win over benchmark settings over defaults
    assert window["batch_size"] == demo["benchmarks"]["demo_long_range"]["finetune"]["batch_size"]
    assert architecture(demo, "hyenadna")[0] == "hyenadna"


def test_run_table(demo: dict) -> None:
    demo["finetune"]["seeds"] = [1, 2, 3]
    demo["benchmarks"]["demo_long_range"]["seeds"] = [7]  # a benchmark's own seeds win over finetune.seeds
    validate_config(demo, SCHEMA)
    runs = finetune_runs(demo)
    others = len(demo["benchmarks"]) - 1
    assert len(runs) == 3 * others + 2  # demo_long_range: hyenadna and hyenadna_window1k, one seed each
    assert {s for b, _, s in runs if b == "demo_long_range"} == {7}
    assert {s for b, _, s in runs if b != "demo_long_range"} == {1, 2, 3}
    assert not any(b == "demo_motif" and m == "hyenadna_window1k" for b, m, _ in runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["models"]["hyenadna"].setdefault("config", {}).update(d_modle=64),
            r"models\.hyenadna\.config: hyenadna config: unknown config key\(s\) \['d_modle'\]",
        ),
        (lambda c: c["pretrain"].update(micro_batch_size=1000), r"pretrain: pretrain\.micro_batch_size must be in"),
        (
            lambda c: c["finetune"]["settings"].update(backbone_overrides={"dropout": 0.1}),
            r"finetune\.settings\.backbone_overrides: hyenadna config: unknown config key\(s\) \['dropout'\]",
        ),
        (
            lambda c: c["genomes"]["demo"]["splits"].update(valid=["chr9"]),
            r"genomes\.demo\.splits\.valid: \['chr9'\] not in the genome",
        ),
        (
            lambda c: c["genomes"]["demo"]["splits"].pop("valid"),
            r"genomes\.demo\.splits: no valid chromosomes: pretraining needs a valid and a test split",
        ),
    ],
)
def test_settings_checked_before_any_job(demo: dict, change, message: str) -> None:
    """What only the package's config classes can check is still checked at start-up (``snakemake -n``)."""
    change(demo)
    with pytest.raises(ConfigError, match=rf"config error at {message}"):
        validate_config(demo, SCHEMA)
