"""The options every subcommand shares: --seed, --config, --quiet, effective configurations, one-line errors.

In-process (``diffgen.cli.main``) and cheap: the expensive work of ``demo`` and ``fit`` is
replaced by a recording stand-in, so these tests check the command line, not the physics
(tested in test_demo.py). Subprocess runs at tiny sizes are in test_cli_generate.py,
test_cli_bench.py, test_cli_train_hadronization.py and test_unfolding_cli.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from diffgen.cli import build_parser, main
from diffgen.config import effective_config_path, load_run_config

SUBCOMMANDS = ["demo", "generate", "fit", "unfold", "train-hadronization", "plot", "bench"]
LEP = Path(__file__).resolve().parents[1] / "diffgen" / "data" / "lep_hadronic_xsec_7point_average_kafe.csv"


def _options(name: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[name]
    return {s for a in sub._actions for s in a.option_strings}, sub


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_the_common_options(name):
    options, sub = _options(name)
    assert {"--config", "--quiet", "-q"} <= options
    assert "--seed" in options
    if name == "plot":
        assert "--seed is not an option of this command: plot draws no random numbers." in sub.format_help()
        assert "--seed N" not in sub.format_help()
    for action in sub._actions:  # every option gives its default or says it is required (--help aside)
        if action.option_strings and action.dest != "help" and action.help != argparse.SUPPRESS:
            assert "default" in action.help or "required" in action.help, (name, action.option_strings)


@pytest.mark.parametrize("name", SUBCOMMANDS)
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    ],
)
def test_bad_option_is_one_line_exit_2(name, argv, message, capsys):
    if name == "plot" and argv[0] == "--seed":
        message = "--seed is not an option of this command: plot draws no random numbers"
    with pytest.raises(SystemExit) as exc:
        main([name, *argv])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"diffgen {name}: error: {message} (see `diffgen {name} --help`)\n"
    assert captured.out == ""


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_bad_config_key_is_one_line_exit_2(name, tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text(f"[{name}]\nno_such_key = 1\n")
    assert main([name, "--config", str(run)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"diffgen {name}: error: ")
    assert "unknown key(s) ['no_such_key']" in err and "allowed:" in err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


@pytest.mark.parametrize(
    ("name", "table", "message"),
    [
        ("demo", "seed = -1", "seed must be >= 0"),
        ("fit", 'optimizer = "sgd"', "optimizer must be one of ['lbfgs', 'adam']"),
        ("unfold", "iterations = 0", "iterations must be >= 1"),
        ("bench", 'sections = "hard_process"', "sections must be array"),
        ("train-hadronization", 'steps = "many"', "steps must be int"),
    ],
)
def test_bad_config_value_is_one_line_exit_2(name, table, message, tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text(f"[{name}]\n{table}\n")
    assert main([name, "--config", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    assert main(["unfold", "--config", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"diffgen unfold: error: configuration file {str(tmp_path / 'none.toml')!r} does not exist"


class _Recorder:
    """Stand-in for an expensive function: records its keyword arguments, returns ``result``."""

    def __init__(self, result):
        self.result, self.calls = result, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


@pytest.mark.parametrize("quiet", [False, True])
def test_demo_config_command_line_override_quiet_and_effective_config(tmp_path, monkeypatch, capsys, quiet):
    import diffgen.demo

    fake = _Recorder({"within_3_sigma": {"m_z": True}})
    monkeypatch.setattr(diffgen.demo, "run_demo", fake)
    out = tmp_path / "demo"
    run = tmp_path / "run.toml"
    run.write_text(f'[demo]\nout = "{out}"\nevents = 2000\nseed = 9\noptimizer = "adam"\n')
    assert main(["demo", "--config", str(run), "--seed", "3", *(["--quiet"] if quiet else [])]) == 0
    ((args, kwargs),) = fake.calls
    assert args == (str(out),)
    assert (kwargs["n_fit"], kwargs["seed"], kwargs["optimizer"]) == (2000, 3, "adam")  # --seed beats the file
    assert kwargs["progress"] is kwargs["verbose"] is (not quiet)
    effective = load_run_config(effective_config_path(out / "summary.json"))["demo"]
    assert effective == {"out": str(out), "events": 2000, "seed": 3, "optimizer": "adam", "quick": False}
    # The effective configuration repeats the run.
    assert main(["demo", "--config", str(effective_config_path(out / "summary.json"))]) == 0
    drop = ("progress", "verbose")
    (args2, kwargs2) = fake.calls[1]
    assert args2 == args and {k: v for k, v in kwargs2.items() if k not in drop} == {
        k: v for k, v in kwargs.items() if k not in drop
    }


def _fake_fit_result():
    class Pass:
        status = "converged"

    names = ["m_z", "gamma_z", "norm"]
    return {
        "params": dict(zip(names, [91.19, 2.49, 1.0], strict=True)),
        "errors": dict(zip(names, [0.002, 0.003, 0.001], strict=True)),
        "names": names,
        "correlation": np.eye(3),
        "sigma0_had_nb": 41.5,
        "sigma0_had_err_nb": 0.04,
        "chi2": 3.0,
        "ndf": 4,
        "passes": [Pass()],
    }


@pytest.mark.parametrize("form", ["config", "legacy", "data_in_file"])
def test_fit_config_forms_quiet_and_effective_config(form, tmp_path, monkeypatch, capsys):
    import diffgen.lineshape

    fake = _Recorder(_fake_fit_result())
    monkeypatch.setattr(diffgen.lineshape, "fit_lineshape", fake)
    out = tmp_path / "fit"
    run = tmp_path / "run.toml"
    data_line = f'data = "{LEP}"\n' if form == "data_in_file" else ""
    run.write_text(f'[fit]\n{data_line}events = 3000\nseed = 5\noutput = "{out}"\n[fit.start]\nm_z = 91.1\n')
    argv = {
        "config": ["fit", str(LEP), "--config", str(run), "--steps", "7", "-q"],
        "legacy": ["fit", str(run), str(LEP), "--steps", "7", "-q"],
        "data_in_file": ["fit", "--config", str(run), "--steps", "7", "-q"],
    }[form]
    assert main(argv) == 0
    assert capsys.readouterr().out == ""  # --quiet: no results printed, no progress
    ((_, kwargs),) = fake.calls
    assert (kwargs["n_events"], kwargs["seed"], kwargs["steps"], kwargs["progress"]) == (3000, 5, 7, False)
    assert kwargs["start"] == {"m_z": 91.1, "gamma_z": 2.6, "norm": 1.0}
    effective = load_run_config(effective_config_path(out / "fit.json"))["fit"]
    assert effective["data"] == str(LEP) and effective["steps"] == 7 and effective["events"] == 3000
    assert (out / "fit.json").is_file()


def test_fit_positional_errors(tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text("[fit]\n")
    assert main(["fit", str(run), str(LEP), "--config", str(run)]) == 2
    assert "either as --config or first positional" in capsys.readouterr().err
    assert main(["fit", "--config", str(run)]) == 2
    assert "give the data CSV" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["fit", str(run)]) == 2
    assert f"looks like a run file: give it as --config {run}" in capsys.readouterr().err


@pytest.mark.parametrize("quiet", [False, True])
def test_train_hadronization_quiet_prints_nothing(tmp_path, monkeypatch, capsys, quiet):
    import diffgen.hadronization.train as train_module

    def fake_train(cfg, out_dir, *, resume, progress, log):
        log("step 2: validation line")
        calls.append((cfg, out_dir, resume, progress))
        return {"metrics": {"w1": 0.1}, "baseline": {"w1": 0.05}, "checkpoint": f"{out_dir}/checkpoint.npz"}

    calls = []
    monkeypatch.setattr(train_module, "train", fake_train)
    out = tmp_path / "had"
    argv = ["train-hadronization", "--out", str(out), "--steps", "3", "--no-resume", "--seed", "2"]
    assert main([*argv, *(["--quiet"] if quiet else [])]) == 0
    captured = capsys.readouterr()
    ((cfg, out_dir, resume, progress),) = calls
    assert (cfg.steps, cfg.seed, out_dir, resume, progress) == (3, 2, str(out), False, not quiet)
    if quiet:
        assert captured.out == captured.err == ""
    else:
        assert captured.out.startswith("step 2: validation line\n") and "checkpoint: " in captured.out
    effective = load_run_config(effective_config_path(out / "metrics.json"))["train-hadronization"]
    assert (effective["steps"], effective["seed"], effective["resume"], effective["n_train"]) == (3, 2, False, 100_000)


def test_bench_seed_moves_the_suite_keys_and_sections_advance_the_bar():
    """``diffgen bench --seed`` and its progress bar act on the suite's ``_key`` and ``section_*`` (restored after)."""
    import types

    import jax

    from diffgen.cli import _common, bench

    def key(i):
        return jax.random.key(i)

    def section_hard_process(cfg, out, use_pythia):
        return suite._key(2)

    suite = types.SimpleNamespace(_key=key, section_hard_process=section_hard_process)
    with bench._seeded(suite, 0):
        assert suite._key is key  # seed 0: the suite's own keys
    with (
        _common.progress(1, "sections", quiet=True, unit="sections") as bar,
        bench._count_sections(suite, bar),
        bench._seeded(suite, 7),
    ):
        drawn = suite.section_hard_process({}, {}, False)
    expected = jax.random.fold_in(jax.random.key(7), 2)
    np.testing.assert_array_equal(jax.random.key_data(drawn), jax.random.key_data(expected))
    assert bar.done == 1
    assert suite._key is key and suite.section_hard_process is section_hard_process


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["demo", "--out", "{file}"], "demo"),
        (["fit", str(LEP), "--out", "{file}"], "fit"),
        (["train-hadronization", "--out", "{file}"], "train-hadronization"),
        (["bench", "--quick", "--out", "{file}/results.json"], "bench"),
        (["unfold", "--mc", "{file}", "--data", "{file}", "--out", "{file}/w.npz"], "unfold"),
    ],
)
def test_output_in_place_of_a_file_is_one_line_exit_2(argv, name, tmp_path, capsys):
    """An output directory that is a file: a one-line error before any work, no traceback, nothing written."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    assert main([a.replace("{file}", str(blocker)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"diffgen {name}: error: --out: ") and len(err.splitlines()) == 1, err
    assert str(blocker) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuchcmd"], "invalid choice: 'nosuchcmd'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_top_level_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffgen: error: ") and message in err


def test_value_errors_name_the_command_once(tmp_path, capsys):
    assert main(["generate", "--n", "-5", "--output", str(tmp_path / "x.lhe")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "diffgen generate: error: n must be >= 1 (number of events), got -5"
