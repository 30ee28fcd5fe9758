"""Transparent huge pages for XLA's host buffers (diffgen.host_memory) and its benchmark's helpers."""

import os
import subprocess
import sys

import pytest

from benchmarks import host_memory as bench
from diffgen import host_memory as hm

TUNABLE = hm.HUGE_PAGES_TUNABLE
APPLIES = hm.huge_page_environment({}) is not None  # this machine: glibc >= 2.35, THP "madvise"


def _env(**extra):
    """This process's environment without any huge-page setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hm.OPT_OUT_VARIABLE)}
    return {**env, **extra}


def _mode(tmp_path, mode):
    """A file like the kernel's transparent-huge-page mode file, selecting ``mode`` (None: no file)."""
    path = tmp_path / "enabled"
    if mode is not None:
        path.write_text(" ".join(f"[{m}]" if m == mode else m for m in ("always", "madvise", "never")) + "\n")
    return str(path)


def test_environment_adds_the_tunable_after_the_users_tunables(tmp_path):
    madvise = _mode(tmp_path, "madvise")
    env = hm.huge_page_environment(
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"}, thp_path=madvise, glibc=(2, 36)
    )
    assert env == {"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{TUNABLE}", "X": "1"}
    assert hm.huge_page_environment({}, thp_path=madvise, glibc=(2, 35)) == {"GLIBC_TUNABLES": TUNABLE}
    assert hm.huge_pages_enabled(env) and not hm.huge_pages_enabled({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})


@pytest.mark.parametrize(
    "environ, thp_mode, glibc",
    [
        ({"GLIBC_TUNABLES": TUNABLE}, "madvise", (2, 36)),  # already set
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36)),  # the user's own choice
        ({hm.OPT_OUT_VARIABLE: "0"}, "madvise", (2, 36)),  # turned off
        ({}, "always", (2, 36)),  # huge pages without advice
        ({}, "never", (2, 36)),  # no huge pages at all
        ({}, None, (2, 36)),  # no transparent huge pages in the kernel
        ({}, "madvise", (2, 34)),  # glibc without the tunable
    ],
)
def test_environment_is_left_alone_where_the_tunable_cannot_help(tmp_path, environ, thp_mode, glibc):
    assert hm.huge_page_environment(environ, thp_path=_mode(tmp_path, thp_mode), glibc=glibc) is None


def test_transparent_huge_page_mode_reads_the_bracketed_mode(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")  # as Linux writes it
    assert hm.transparent_huge_page_mode(str(path)) == "madvise"
    path.write_text("no mode here\n")
    assert hm.transparent_huge_page_mode(str(path)) is None
    assert hm.transparent_huge_page_mode(str(tmp_path / "missing")) is None


_RESTART = """
import os, sys
print("start", flush=True)
from diffgen.host_memory import restart_with_huge_pages
restart_with_huge_pages()
print("tunables", os.environ.get("GLIBC_TUNABLES"), sys.argv[1:])
"""


@pytest.mark.parametrize("opt_out", [False, True])
def test_restart_runs_the_same_command_once_with_the_tunable(opt_out):
    env = _env(**({hm.OPT_OUT_VARIABLE: "0"} if opt_out else {}))
    out = subprocess.run(
        [sys.executable, "-c", _RESTART, "a b", "c"], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    restarted = APPLIES and not opt_out
    assert out == ["start"] * (1 + restarted) + [f"tunables {TUNABLE if restarted else None} ['a b', 'c']"]


def test_restart_leaves_an_interactive_session_alone():
    env = _env()
    run = subprocess.run(
        [sys.executable, "-i", "-c", _RESTART], env=env, input="", capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["start", "tunables None []"]


_ALLOCATE = """
import numpy as np
x = np.ones(64 << 20, np.uint8)  # 64 MiB: glibc maps it with mmap
with open("/proc/self/smaps_rollup") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:")))
"""


@pytest.mark.skipif(not APPLIES or not os.path.exists("/proc/self/smaps_rollup"), reason="needs glibc >= 2.35 and THP")
def test_the_tunable_maps_large_allocations_with_huge_pages():
    def huge_kib(env):
        run = subprocess.run([sys.executable, "-c", _ALLOCATE], env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    with_tunable = huge_kib(_env(GLIBC_TUNABLES=TUNABLE))
    # Most of the 64 MiB in 2 MiB pages (the unaligned ends stay in small pages).
    assert with_tunable >= 32 << 10
    assert huge_kib(_env()) < with_tunable


def test_cli_restarts_only_when_run_from_the_command_line(monkeypatch, tmp_path, capsys):
    import diffgen.cli as cli

    calls = []
    monkeypatch.setattr(hm, "restart_with_huge_pages", lambda: calls.append(1))
    missing = str(tmp_path / "missing.parquet")
    assert cli.main(["plot", missing]) != 0
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["diffgen", "plot", missing])
    assert cli.main() != 0
    assert calls == [1]
    monkeypatch.setattr(sys, "argv", ["diffgen"])  # no command: help, no restart
    assert cli.main() != 0
    assert calls == [1]
    capsys.readouterr()


def test_benchmark_environments_remove_or_set_the_tunable(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", f"glibc.malloc.arena_max=2:{TUNABLE}")
    off, on = bench.environment("off"), bench.environment("on")
    assert off["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2" and not hm.huge_pages_enabled(off)
    assert on["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
    assert off[hm.OPT_OUT_VARIABLE] == on[hm.OPT_OUT_VARIABLE] == "0"  # the children do not restart
    with pytest.raises(ValueError, match="setting must be one of"):
        bench.environment("maybe")


def test_benchmark_table_gives_medians_and_ratios():
    def child(rate, faults, pythia):
        return {
            "one_call": {"events_per_s": rate, "faults_per_call": faults},
            "chunks": {"events_per_s": 2 * rate, "faults_per_call": faults},
            "pythia": None if pythia is None else {"events_per_s": pythia},
        }

    runs = {"off": [child(10.0, 100, 5.0), child(30.0, 300, 7.0)], "on": [child(40.0, 2, 6.0), child(50.0, 4, 6.0)]}
    rows = {r["program"]: r for r in bench.table(runs)}
    assert rows["chain, one call"]["events_per_s off"] == 20.0 and rows["chain, one call"]["on / off"] == 45.0 / 20.0
    assert rows["chain, concurrent chunks"]["faults/call on"] == 3
    assert rows["Pythia 8"]["on / off"] == 1.0 and "faults/call on" not in rows["Pythia 8"]
    runs["on"][0]["pythia"] = runs["on"][1]["pythia"] = None
    assert "Pythia 8" not in {r["program"] for r in bench.table(runs)}
