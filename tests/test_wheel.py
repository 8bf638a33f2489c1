"""The built wheel works outside the checkout: `pip install .` (not editable) keeps the package data.

The wheel is built from a copy of the sources with the installed setuptools (no build isolation, no network)
and installed without its dependencies into a fresh venv outside the checkout. The third-party packages come
from this interpreter's site-packages through a ``.pth`` file; .pth files are not followed from there, so the
editable install of longdna (itself a .pth file) is not visible, which the test checks via ``longdna.__file__``.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REGISTRIES = REPO / "src" / "longdna" / "data" / "benchmarks" / "registries"

#: run inside the installed package: where it was imported from, and every registry it ships, loaded
PROBE = """
import importlib.resources, json, longdna
from longdna.data.benchmarks.suite_inputs import REGISTRIES, load_registry
suites = sorted(p.name.removesuffix(".yaml") for p in REGISTRIES.iterdir() if p.name.endswith(".yaml"))
print(json.dumps({"file": longdna.__file__, "registries": {s: sorted(load_registry(s)) for s in suites}}))
"""


def run(*command: str | os.PathLike, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel installed (its dependencies from this interpreter)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--wheel-dir",
        root / "dist",
        source,
        cwd=root,
    )
    (wheel,) = (root / "dist").glob("longdna-*.whl")

    prefix = root / "venv"
    venv.EnvBuilder(with_pip=False).create(prefix)
    python = prefix / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=root)
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root).strip())
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return prefix


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_installed_wheel_ships_every_registry(installed: Path, tmp_path: Path) -> None:
    probe = json.loads(run(installed / "bin" / "python", "-c", PROBE, cwd=tmp_path, env=clean_env()))
    assert Path(probe["file"]).is_relative_to(installed), f"imported {probe['file']}, not the installed wheel"
    assert set(probe["registries"]) == {p.stem for p in REGISTRIES.glob("*.yaml")}
    assert all("base_url" in keys and "revision" in keys for keys in probe["registries"].values())


def test_installed_command_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    out = run(installed / "bin" / "longdna", "--help", cwd=tmp_path, env=clean_env())
    assert "score-variants" in out
