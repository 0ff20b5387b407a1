"""The soma-schedulers command line, run as a user would (a subprocess), on the local backend and
with fake DRMS commands; tests/containers/test_cli_slurm.py runs it against a real Slurm."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from cli_checks import one_line_error  # tests/cli_checks.py

from soma_schedulers import cli
from soma_schedulers.runner import container_markers
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler


def cli_run(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "soma_schedulers", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# -- types ------------------------------------------------------------------------------------------

def test_types_says_why_a_type_cannot_run_here(tmp_path: Path) -> None:
    ini = write(tmp_path / "none.ini", "[here]\nOUT_OF_CONTAINER = none\n")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    out = cli_run("types", "--config", str(ini), env={"PATH": str(empty), "DRMAA_LIBRARY_PATH": "/no/libdrmaa.so"})
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line.split(None, 1)[1] for line in out.stdout.splitlines()}
    assert {"local_basic", "local", "slurm", "pbspro", "torque", "drmaa", "mpi", "drmaa2"} <= set(lines)
    assert lines["local_basic"].startswith("usable (run only")
    assert lines["slurm"] == "unavailable: squeue is not on PATH (OUT_OF_CONTAINER = none: no bridge)"
    assert lines["pbspro"].startswith("unavailable: qstat is not on PATH")
    assert lines["drmaa"].startswith("unavailable: ") and "drmaa" in lines["drmaa"]
    assert lines["drmaa2"].startswith("unavailable: ") and "DRMAA 2" in lines["drmaa2"]
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        assert lines["mpi"].startswith("unavailable: mpi4py is not installed")


def test_types_without_configuration_outside_a_container(tmp_path: Path) -> None:
    if container_markers():
        pytest.skip("in a container, the automatic bridge makes the DRMS types usable")
    out = cli_run("types", env={"PATH": str(tmp_path)})
    assert "slurm          unavailable: squeue is not on PATH and no bridge is configured" in out.stdout
    bridged = write(tmp_path / "b.ini", "[b]\nBRIDGE_COMMAND = docker exec -i somewhere\n")
    out = cli_run("types", "-c", str(bridged), env={"PATH": str(tmp_path)})
    assert "slurm          usable" in out.stdout  # a configured bridge is taken as working


def _broken_entry_points(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    dist = site / "broken_backends-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-backends\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(
        "[soma_schedulers.schedulers]\ntypo = my_module:MyShceduler\nmissing = no_such_module_42:X\n"
        "raises = my_module_raises:X\nnotaclass = my_module:VALUE\n")
    (site / "my_module.py").write_text("VALUE = 3\n\n\nclass MyScheduler:\n    pass\n")
    (site / "my_module_raises.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_a_broken_entry_point_is_listed_with_its_error(tmp_path: Path) -> None:
    env = _broken_entry_points(tmp_path)
    out = cli_run("types", env=env)
    assert out.returncode == 0 and not out.stderr, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "AttributeError: module 'my_module' has no attribute 'MyShceduler'" in lines["typo"]
    assert "ModuleNotFoundError" in lines["missing"] and "unavailable" in lines["missing"]
    assert "RuntimeError: boom second line" in lines["raises"]
    assert "not a Scheduler subclass" in lines["notaclass"]
    assert "local_basic" in lines
    one_line_error(cli_run("run", "-s", "typo", "--", "true", env=env), "'typo'", "my_module:MyShceduler",
                   "AttributeError")
    ok = cli_run("run", "--", "echo", "still fine", env=env)
    assert (ok.returncode, ok.stdout) == (0, "still fine\n"), ok.stderr


# -- run --------------------------------------------------------------------------------------------

def test_run_shows_the_output_and_exits_with_the_job_code(tmp_path: Path) -> None:
    out = cli_run("run", "--env", "X=a b", "--", "/bin/sh", "-c", 'echo "$X"; echo oops >&2; exit 3')
    assert (out.returncode, out.stdout, out.stderr) == (3, "a b\n", "oops\n")


def test_run_with_files_and_json(tmp_path: Path) -> None:
    o = tmp_path / "o"
    out = cli_run("run", "--json", "--stdout", str(o), "--", "/bin/sh", "-c", "echo to-file; echo shown >&2")
    assert out.returncode == 0 and out.stderr == "shown\n"
    info = json.loads(out.stdout)
    assert (info["status"], info["exit_status"], info["exit_value"], info["error"]) == (
        "done", "finished_regularly", 0, None)
    assert o.read_text() == "to-file\n"
    out = cli_run("run", "--join", "--", "/bin/sh", "-c", "echo a; echo b >&2")
    assert sorted(out.stdout.split()) == ["a", "b"] and out.stderr == ""


def test_run_streams_local_output_while_the_job_runs() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "soma_schedulers", "run", "--", "/bin/sh", "-c",
                             "echo first; sleep 6; echo second"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "first\n"
        assert proc.poll() is None  # shown before the end
        assert proc.stdout.read() == "second\n" and proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_run_exit_codes_and_messages(tmp_path: Path) -> None:
    out = cli_run("run", "--json", "--", "/bin/sh", "-c", "kill -9 $$")
    assert out.returncode == 128 + 9
    assert out.stderr == "soma-schedulers: job 1 died from SIGKILL (exit code 137)\n"
    assert json.loads(out.stdout)["term_sig"] == 9
    out = cli_run("run", "--json", "--", str(tmp_path / "no-such-program"))
    assert out.returncode == 125 and out.stderr.count("\n") == 1
    assert "was aborted: could not start" in out.stderr and "no-such-program" in out.stderr
    info = json.loads(out.stdout)
    assert info["exit_status"] == "aborted" and "could not start" in info["error"]
    t0 = time.monotonic()
    out = cli_run("run", "--timeout", "1", "--", "/bin/sh", "-c", "echo started; sleep 60")
    assert out.returncode == 124 and time.monotonic() - t0 < 30
    assert out.stdout == "started\n"
    assert out.stderr == "soma-schedulers: job 1 killed: still running after 1 s (--timeout; exit code 124)\n"


def test_run_interrupted_kills_its_job(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    proc = subprocess.Popen([sys.executable, "-m", "soma_schedulers", "run", "--", "/bin/sh", "-c",
                             f"echo go; sleep 8; touch {marker}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "go\n"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "soma-schedulers: interrupted: job 1 killed (exit code 130)\n"
    time.sleep(9)
    assert not marker.exists()


def test_run_help_documents_exit_codes_and_every_option() -> None:
    out = cli_run("run", "--help")
    assert out.returncode == 0
    for text in ("128+N", "124", "125", "--stdin FILE", "--cwd DIR", "--timeout SECONDS", "-v, --verbose"):
        assert text in out.stdout, text


def test_every_option_has_help() -> None:
    parser = cli._parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, p in sub.choices.items():
        if name == "conformance":  # its own parser: testing.conformance_cli
            continue
        missing += [f"{name} {a.option_strings or a.dest}" for a in p._actions if not a.help]
    missing += [str(a.option_strings) for a in parser._actions if not a.help and a is not sub]
    assert not missing


def test_verbose_after_the_subcommand() -> None:
    out = cli_run("run", "-v", "--", "true")
    assert out.returncode == 0, out.stderr
    assert cli_run("-vv", "run", "-v", "--", "true").returncode == 0


# -- jobs that live in the process ----------------------------------------------------------------------

def test_local_submit_and_followers_are_refused_pointing_at_run() -> None:
    one_line_error(cli_run("submit", "--", "sh", "-c", "sleep 1"), "local_basic", "soma-schedulers run")
    for action in ("status", "wait", "kill", "exit-info"):
        one_line_error(cli_run(action, "1"), "only in the process that submitted them", "soma-schedulers run",
                       f"'{action}'")


# -- where the work goes: the configuration's type ------------------------------------------------------

def test_the_configuration_decides_where_work_goes(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    slurm_ini = write(tmp_path / "site.ini", "[cluster]\nSCHEDULER_TYPE = slurm\nOUT_OF_CONTAINER = none\n")
    env = {"PATH": f"{tmp_path / 'nothing'}"}
    cmd = ["--", "/bin/sh", "-c", f"touch {marker}"]
    one_line_error(cli_run("run", "--config", str(slurm_ini), *cmd, env=env), "'slurm' cannot run here",
                   "squeue")
    assert not marker.exists()  # not run locally instead
    one_line_error(cli_run("run", "--scheduler", "local_basic", "--config", str(slurm_ini), *cmd),
                   "'local_basic'", "SCHEDULER_TYPE = slurm", str(slurm_ini))
    assert not marker.exists()
    assert cli_run("run", "-s", "slurm", "-c", str(slurm_ini), *cmd, env=env).returncode == 2


def test_sections_of_a_multi_section_file(tmp_path: Path) -> None:
    ini = write(tmp_path / "sw.ini", "[cluster]\nSCHEDULER_TYPE = slurm\n\n[laptop]\nSCHEDULER_TYPE = local_basic\n"
                                     "CPU_NB = 2\nSUBMITTING_MACHINES = me\n")
    one_line_error(cli_run("run", "-c", str(ini), "--", "true"), "2 sections", "cluster, laptop", "--section")
    out = cli_run("run", "-c", str(ini), "--section", "laptop", "--", "echo", "hi")
    assert (out.returncode, out.stdout) == (0, "hi\n"), out.stderr
    one_line_error(cli_run("run", "-c", str(ini), "--section", "nope", "--", "true"), "no section [nope]")
    one_line_error(cli_run("run", "--section", "laptop", "--", "true"), "--section needs --config")


# -- messages: one line, exit 2 -------------------------------------------------------------------------

def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line_error(cli_run("run", "--scheduler", "nope", "--", "true"), "unknown scheduler type 'nope'")
    one_line_error(cli_run("run", "--"), "no command")
    one_line_error(cli_run("run", "--bogus", "--", "true"), "--bogus", "--help")
    one_line_error(cli_run("wait"), "ID")
    one_line_error(cli_run("run", "--env", "NOEQUAL", "--", "true"), "NAME=VALUE")
    bad = write(tmp_path / "bad.ini", "[a]\nfoo\n")
    one_line_error(cli_run("run", "-c", str(bad), "--", "true"), "malformed", "line 2", "'foo'")
    one_line_error(cli_run("run", "-c", str(write(tmp_path / "k.ini", "[a]\nCPU_NB = many\n")), "--", "true"),
                   "CPU_NB", "many")


def test_drmaa2_says_why_it_is_not_provided() -> None:
    err = one_line_error(cli_run("run", "-s", "drmaa2", "--", "true"), "drmaa2", "DRMAA 2", "DRMAA 1 only")
    assert "unknown" not in err


def _fake_slurm(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write(bin_dir / "squeue", "#!/bin/sh\nexit 0\n", 0o755)
    write(bin_dir / "sbatch", "#!/bin/sh\ncat >/dev/null\n"
          "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n", 0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_refused_submission_is_said_once(tmp_path: Path) -> None:
    env = _fake_slurm(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    for files in (["--stdout", str(tmp_path / "o"), "--stderr", str(tmp_path / "e")], []):
        out = cli_run("run", "-s", "slurm", *files, "--", "true", env=env, cwd=work)
        err = one_line_error(out, "not submitted", "sbatch refused the job", "Invalid partition name")
        assert err.count("Invalid partition") == 1 and "exit None" not in err
        assert list(work.iterdir()) == []  # the private output directory went too
    if SlurmScheduler.attachable:  # submit needs attach (the other branch)
        one_line_error(cli_run("submit", "-s", "slurm", "--", "true", env=env), "Invalid partition name")


def test_a_missing_client_command_says_so_without_exit_none(tmp_path: Path) -> None:
    ini = write(tmp_path / "b.ini", "[b]\nSCHEDULER_TYPE = slurm\nBRIDGE_COMMAND = env PATH=/nonexistent\n")
    out = cli_run("run", "-c", str(ini), "--stdout", "/dev/null", "--stderr", "/dev/null", "--", "true")
    err = one_line_error(out, "sbatch")
    assert "exit None" not in err and err.count("sbatch") <= 2


def test_conformance_subcommand_passes_options_to_pytest() -> None:
    out = cli_run("conformance", "--scheduler", "local_basic", "-k", "test_exit_zero or test_exit_three",
                  timeout=300)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "2 passed" in out.stdout and "local_basic" in out.stdout
