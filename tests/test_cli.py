"""The soma-schedulers command line, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "soma_schedulers", *args], capture_output=True,
                          text=True, timeout=300)


def test_types_lists_builtin_backends() -> None:
    out = cli("types")
    assert out.returncode == 0
    assert "local_basic" in out.stdout and "slurm" in out.stdout


def test_run_reports_exit_info_and_exit_code(tmp_path: Path) -> None:
    out = cli("run", "--stdout", str(tmp_path / "o"), "--env", "X=a b", "--", "/bin/sh", "-c", 'echo "$X"; exit 3')
    assert out.returncode == 3, out.stderr
    info = json.loads(out.stdout)
    assert (info["status"], info["exit_status"], info["exit_value"]) == ("done", "finished_regularly", 3)
    assert (tmp_path / "o").read_text() == "a b\n"


def test_errors_are_one_line_and_exit_2() -> None:
    out = cli("run", "--scheduler", "nope", "--", "true")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "unknown scheduler type 'nope'" in out.stderr
    out = cli("status", "1")
    assert out.returncode == 2 and "only in the process that submitted them" in out.stderr
    out = cli("run", "--")
    assert out.returncode == 2 and "empty" in out.stderr


def test_conformance_subcommand_passes_options_to_pytest() -> None:
    out = cli("conformance", "--scheduler", "local_basic", "-k", "test_exit_zero or test_exit_three")
    assert out.returncode == 0, out.stdout[-2000:]
    assert "2 passed" in out.stdout and "local_basic" in out.stdout
