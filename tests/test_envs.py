"""The stage conda environments (envs/*.yaml) are well formed, pinned, and complete for what their jobs import.

No conda is needed: the rules are read from workflow/rules/*.smk (which env runs which script), the scripts and
the `longdna` modules they import are followed through their `import` statements, and every third-party import
must map to a package the env lists. `longdna` itself is not installed into the envs: the Snakefile puts `src/`
on PYTHONPATH for every job (docs/install.md), which is checked here too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
STAGE_ENVS = {"data", "train", "eval"}
ALLOWED_CHANNELS = {"conda-forge", "bioconda", "nodefaults"}
#: packages that only bioconda publishes: an env listing one needs the channel, after conda-forge
BIOCONDA = {"pysam", "pyfaidx"}
#: a conda MatchSpec with a lower bound, name>=version (why no pins: envs/data.yaml)
LOWER_BOUND_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]*)>=(?P<lower>[0-9]+(\.[0-9]+)*)$")
#: conda package -> distribution name in the test environment, where they differ
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
#: import name -> conda package names that provide it (the first is the usual one)
CONDA_NAMES = {
    "yaml": ("pyyaml",),
    "sklearn": ("scikit-learn",),
    "torch": ("pytorch", "pytorch-gpu", "pytorch-cpu"),
    "Bio": ("biopython",),
    "PIL": ("pillow",),
    "matplotlib": ("matplotlib-base", "matplotlib"),
    "tensorboard": ("tensorboard",),
    "google": ("protobuf",),
    "huggingface_hub": ("huggingface_hub",),
}
#: modules that need another package at run time without importing it themselves
IMPLIED = {"torch.utils.tensorboard": "tensorboard"}
#: calls that need a package the module does not import: pandas reads and writes Parquet through pyarrow
USAGE = {re.compile(r"\b(read_parquet|to_parquet)\("): "pyarrow"}


def read_env(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def conda_dependencies(env: dict) -> dict[str, str]:
    """name -> spec of the conda (not pip) dependencies."""
    return {re.split(r"[=<>!~ ]", d, maxsplit=1)[0]: d for d in env["dependencies"] if isinstance(d, str)}


# -- which env runs which script -------------------------------------------------------------------------------
RULE_START = re.compile(r"^(?:rule|checkpoint)\s+(\w+):", re.M)


def rule_envs() -> dict[str, tuple[str, str]]:
    """rule -> (env stem, script file name), read from the `conda:` and `script:` directives of the .smk files."""
    rules = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(RULE_START.finditer(text))
        for match, following in zip(starts, starts[1:] + [None]):
            body = text[match.end() : following.start() if following else len(text)]
            body = re.split(r"^\S", body, maxsplit=1, flags=re.M)[0]  # up to the next top-level statement
            script = re.search(r"^\s+script:\s*\n\s+SCRIPTS\s*/\s*\"([^\"]+)\"", body, re.M)
            conda = re.search(r"^\s+conda:\s*\n\s+ENVS\s*/\s*\"([^\"]+)\.yaml\"", body, re.M)
            if script or conda:
                rules[match.group(1)] = (conda.group(1) if conda else None, script.group(1) if script else None)
    return rules


def script_envs() -> dict[str, str]:
    envs: dict[str, set[str]] = {}
    for env, script in rule_envs().values():
        envs.setdefault(script, set()).add(env)
    assert all(len(e) == 1 for e in envs.values()), f"a script runs in several envs: {envs}"
    return {script: next(iter(e)) for script, e in envs.items()}


# -- what a script imports ---------------------------------------------------------------------------------------
def optional_import_nodes(tree: ast.AST) -> set[int]:
    """ids of import statements inside `try: ... except ImportError` (optional at run time) or inside
    `if TYPE_CHECKING:` (for annotations only, never run)."""
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            optional |= {
                id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))
            }
        if isinstance(node, ast.Try):
            caught = set()
            for handler in node.handlers:
                types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                caught |= {t.id for t in types if isinstance(t, ast.Name)}
            if caught & {"ImportError", "ModuleNotFoundError"}:
                optional |= {
                    id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))
                }
    return optional


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def imports_of(path: Path) -> set[str]:
    """Dotted names imported by a file (every import, also inside functions, except optional ones)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    optional = optional_import_nodes(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # maybe submodules
    return names


def closure(script: Path) -> tuple[set[str], set[Path]]:
    """Third-party imports (dotted) of a script and of every longdna module it loads, and those modules."""
    third_party, seen, todo = set(), set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        source = path.read_text()
        third_party |= {package for pattern, package in USAGE.items() if pattern.search(source)}
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "longdna":
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # the package __init__s run too
                    found = module_file(".".join(parts[:i]))
                    if found is not None:
                        todo.append(found)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(name)
    return third_party, seen


def required_packages(third_party: set[str]) -> dict[str, tuple[str, ...]]:
    """Conda packages needed (import -> acceptable conda names)."""
    needed = {}
    for name in third_party:
        top = name.split(".")[0]
        needed[top] = CONDA_NAMES.get(top, (top.lower().replace("_", "-"),))
        for prefix, package in IMPLIED.items():
            if name == prefix or name.startswith(prefix + "."):
                needed[package] = (package,)
    return needed


def torch_free_scripts() -> list[str]:
    """Scripts of the stages whose env has no PyTorch (genome, tokenize, benchmark, evaluate)."""
    return sorted(
        script
        for script, env in script_envs().items()
        if not {"pytorch", "pytorch-gpu", "pytorch-cpu"}
        & set(conda_dependencies(read_env(REPO / "envs" / f"{env}.yaml")))
    )


def torch_modules_loaded_by(script: str, cwd: Path) -> list[str]:
    """The torch modules in sys.modules after running every import statement of ``script`` (as its job would,
    with src/ on PYTHONPATH), in a fresh interpreter."""
    tree = ast.parse((REPO / "scripts" / script).read_text())
    imports = [ast.unparse(node) for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    probe = "\n".join(
        [
            *imports,
            "import json, sys",
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert result.returncode == 0, f"{script}: its imports fail:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.splitlines()[-1])


# -- tests ----------------------------------------------------------------------------------------------------
def test_one_env_per_stage() -> None:
    assert {p.stem for p in ENV_FILES} == STAGE_ENVS


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_lists_the_channels_it_needs(path: Path) -> None:
    env = read_env(path)
    assert env["name"] == f"longdna-{path.stem}"
    channels = env["channels"]
    assert set(channels) <= ALLOWED_CHANNELS and channels[0] == "conda-forge" and channels[-1] == "nodefaults"
    needs_bioconda = bool(BIOCONDA & set(conda_dependencies(env)))
    assert ("bioconda" in channels) == needs_bioconda, f"{path.name}: bioconda is needed iff it lists {BIOCONDA}"
    for dep in env["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: {dep!r}: no pip section (the envs must build from channels)"
    names = list(conda_dependencies(env))
    assert len(names) == len(set(names)), f"{path.name}: duplicate packages"
    assert names[0] == "python" and conda_dependencies(env)["python"] == "python=3.11"
    assert sys.version_info[:2] == (3, 11), "the envs pin the Python the tests run on"


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_versions_admit_the_tested_ones(path: Path) -> None:
    """Every bound is within pyproject.toml's requirement (a lower one would install a release the package does
    not support) and admits the version installed here, which the tests ran on."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(r).name.lower(): Requirement(r).specifier for r in project["dependencies"]}
    for name, spec in conda_dependencies(read_env(path)).items():
        if name == "python":
            continue
        match = LOWER_BOUND_SPEC.match(spec)
        assert match, f"{path.name}: {spec!r} is not of the form name>=version"
        lower = Version(match["lower"])
        distribution = CONDA_TO_PYPI.get(name, name)
        tested = Version(Version(importlib.metadata.version(distribution)).public)
        assert lower <= tested, f"{path.name}: {spec} excludes {distribution} {tested}, which the tests ran on"
        required = requirements.get(distribution.lower())
        if required is not None:
            assert required.contains(lower), f"{path.name}: {spec} allows versions outside {required}"


def test_every_scripted_rule_names_its_stage_env() -> None:
    rules = rule_envs()
    assert rules, "no rules parsed from workflow/rules/*.smk"
    for rule, (env, script) in rules.items():
        assert script is not None and env in STAGE_ENVS, f"rule {rule}: conda {env!r}, script {script!r}"
    scripts = {p.name for p in (REPO / "scripts").glob("*.py")}
    assert set(script_envs()) == scripts, "every script belongs to a rule, and every rule's script exists"
    # spot checks of the parse against what the stages are
    assert rules["pretrain_model"] == ("train", "pretrain_model.py")
    assert rules["tokenize_chromosome"] == ("data", "tokenize_chromosome.py")
    assert rules["evaluate"] == ("eval", "evaluate.py")


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "scripts").glob("*.py")))
def test_env_provides_every_import_of_the_stage(script: str) -> None:
    env_name = script_envs()[script]
    listed = set(conda_dependencies(read_env(REPO / "envs" / f"{env_name}.yaml")))
    third_party, modules = closure(REPO / "scripts" / script)
    assert any(m.name == "__init__.py" and m.parent == SRC / "longdna" for m in modules), "longdna not followed"
    missing = {imp: names for imp, names in required_packages(third_party).items() if not set(names) & listed}
    assert not missing, f"envs/{env_name}.yaml lacks {missing} (imported by {script} or the longdna modules it loads)"


def test_import_scan_sees_lazy_and_transitive_imports_and_skips_optional_ones() -> None:
    third_party, modules = closure(REPO / "scripts" / "pretrain_model.py")
    tops = {name.split(".")[0] for name in third_party}
    assert {"torch", "numpy", "safetensors", "matplotlib"} <= tops  # matplotlib only inside a function
    assert "mamba_ssm" not in tops  # try/except ImportError: optional CUDA kernel
    assert "torch.utils.tensorboard" not in third_party  # optional too (try/except ImportError)
    assert SRC / "longdna" / "train" / "launch.py" in modules
    assert required_packages({"yaml", "sklearn.metrics"}) == {"yaml": ("pyyaml",), "sklearn": ("scikit-learn",)}
    evaluate, _ = closure(REPO / "scripts" / "evaluate.py")
    assert "pyarrow" in evaluate  # through pandas' read_parquet, never imported


def test_jobs_import_longdna_from_the_checkout_without_installing_it() -> None:
    """The envs do not install longdna (no network at job time); the Snakefile exports src/ on PYTHONPATH."""
    snakefile = (REPO / "Snakefile").read_text()
    assert 'SRC = str(Path(workflow.basedir) / "src")' in snakefile
    assert re.search(r'os\.environ(\["PYTHONPATH"\] = |\.update\(PYTHONPATH=).*SRC', snakefile)
    for path in ENV_FILES:
        assert "longdna" not in {name.split("=")[0] for name in conda_dependencies(read_env(path))}


def test_data_and_evaluation_stages_run_without_pytorch() -> None:
    assert "pytorch" not in conda_dependencies(read_env(REPO / "envs" / "data.yaml"))
    assert {
        "prepare_genome.py",
        "tokenize_chromosome.py",
        "write_shard_manifest.py",
        "prepare_benchmark.py",
        "evaluate.py",
    } <= set(torch_free_scripts())


@pytest.mark.parametrize("script", torch_free_scripts())
def test_torch_free_stage_imports_no_torch(script: str, tmp_path: Path) -> None:
    """The static scan above follows imports; this runs them, catching what a scan cannot see."""
    assert torch_modules_loaded_by(script, tmp_path) == []


def test_import_probe_sees_torch_where_a_stage_loads_it(tmp_path: Path) -> None:
    assert "torch" in torch_modules_loaded_by("pretrain_model.py", tmp_path)
