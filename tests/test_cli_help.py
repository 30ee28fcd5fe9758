"""Every subcommand answers --help in a subprocess, quickly (no JAX import) and with units and defaults."""

import subprocess
import sys

import pytest

SUBCOMMANDS = ["demo", "generate", "fit", "unfold", "train-hadronization", "plot", "bench"]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "diffgen.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_top_level_help_lists_every_subcommand():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name):
    result = run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: diffgen " + name in result.stdout


def test_building_the_parser_does_not_import_jax():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, diffgen.cli as c; c.build_parser(); print('jax' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert probe.stdout.strip() == "False", "building the parser must not import JAX"


def test_unknown_option_exits_2():
    result = run("generate", "--no-such-option")
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_bad_run_file_key_exits_2_with_one_line(name, tmp_path):
    """The real process: exit code 2 and one line naming the key (in-process variants: test_cli_common.py)."""
    run_file = tmp_path / "run.toml"
    run_file.write_text(f"[{name}]\nwarp_factor = 9\n")
    result = run(name, "--config", str(run_file), "--quiet")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"diffgen {name}: error: {run_file} [{name}]: unknown key(s) ['warp_factor']; allowed: [")
