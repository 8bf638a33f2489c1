"""The `longdna` command: --version, and --help listing every command with its one-line help."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from longdna import __version__
from longdna.cli import build_parser


def run_longdna(*args: str) -> subprocess.CompletedProcess:
    """The installed entry point's code in a fresh process, at the 80 columns of a default terminal."""
    return subprocess.run(
        [sys.executable, "-m", "longdna.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    )


def test_version() -> None:
    assert run_longdna("--version").stdout.strip() == f"longdna {__version__}"


def test_help_lists_every_command_on_one_line() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    assert set(helps) == set(commands.choices) and all(helps.values())  # every command has a help line
    out = run_longdna("--help").stdout
    listed = re.search(r"^  COMMAND\n((?:    .*\n)+)", out, re.MULTILINE)
    assert listed, out
    lines = listed.group(1).splitlines()
    assert [line.split()[0] for line in lines] == list(commands.choices), out  # one line each, in order
    for line in lines:
        name, text = line.split(None, 1)
        assert text == helps[name], line
