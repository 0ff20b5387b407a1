"""The soma-schedulers command line against a real Slurm (22.05 in Docker), run as a user would:
each command its own process, DRMS commands through ``docker exec -i -u alice`` on kept shells.

``submit`` in one process, ``status``/``wait``/``kill``/``exit-info`` in others (they
``attach`` the ids); ``run`` shows the job's output, read back through the bridge. Run with
``SOMA_SCHEDULERS_SKIP_BUILD=1 pytest tests/containers/test_cli_slurm.py``; skipped with the
reason when Docker or the image is unavailable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_checks import one_line_error  # tests/cli_checks.py
from image_clusters import start_or_skip  # tests/containers/image_clusters.py

from soma_schedulers.testing import docker_harness as dh

pytestmark = pytest.mark.drms

@pytest.fixture(scope="module")
def cluster() -> Iterator[dh.DrmsCluster]:
    c = start_or_skip("slurm")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def ini(cluster: dh.DrmsCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Soma-Workflow-style file with two resources: this cluster, and the local machine."""
    path = tmp_path_factory.mktemp("cli") / "site.ini"
    path.write_text(
        "[laptop]\nSCHEDULER_TYPE = local_basic\n\n"
        "[cluster]\nSCHEDULER_TYPE = slurm\nOUT_OF_CONTAINER = prefix\n"
        f"BRIDGE_COMMAND = docker exec -i -u alice {cluster.name}\nBRIDGE_SHELLS = yes\n"
        "STATUS_CACHE_SECONDS = 0.2\nSUBMITTING_MACHINES = front\n")
    return path


def cli(ini: Path, action: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """One ``soma-schedulers ACTION -c INI --section cluster ARGS`` process."""
    return subprocess.run([sys.executable, "-m", "soma_schedulers", action, "-c", str(ini), "--section", "cluster",
                           *args], capture_output=True, encoding="utf-8", errors="surrogateescape",
                          timeout=timeout)


def leftovers(cluster: dh.DrmsCluster) -> list[str]:
    """Private output directories of ``run`` still in the shared directory (where docker exec starts)."""
    return [p.name for p in Path(cluster.shared_dir).glob(".soma-run-*")]


def submit(ini: Path, *command: str) -> str:
    out = cli(ini, "submit", "--", *command)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    assert re.fullmatch(r"\d+", job_id), out.stdout  # the DRMS's own id
    return job_id


# -- run --------------------------------------------------------------------------------------------

def test_run_goes_to_slurm_and_shows_the_output(cluster: dh.DrmsCluster, ini: Path) -> None:
    out = cli(ini, "run", "--", "/bin/sh", "-c", 'echo "job $SLURM_JOB_ID as $(id -un)"; echo oops >&2; exit 3')
    assert out.returncode == 3, out.stderr
    assert re.fullmatch(r"job \d+ as alice\n", out.stdout), out.stdout  # the section's type: Slurm
    assert out.stderr == "oops\n"
    assert leftovers(cluster) == []


def test_run_json_signal_and_bytes(cluster: dh.DrmsCluster, ini: Path) -> None:
    out = cli(ini, "run", "--json", "--", "/bin/sh", "-c", r"printf 'caf\351\n'; kill -9 $$")
    assert out.returncode == 128 + 9, out.stderr
    output, json_line, end = out.stdout.encode("utf-8", "surrogateescape").split(b"\n")
    assert output == b"caf\xe9" and end == b""  # byte for byte
    info = json.loads(json_line)
    assert (info["status"], info["exit_status"], info["term_sig"]) == ("done", "finished_signal", 9)
    assert re.fullmatch(r"soma-schedulers: job \d+ died from SIGKILL \(exit code 137\)\n", out.stderr)
    assert leftovers(cluster) == []


def test_run_timeout_kills_the_job_and_says_so(cluster: dh.DrmsCluster, ini: Path) -> None:
    t0 = time.monotonic()
    out = cli(ini, "run", "--timeout", "3", "--", "/bin/sh", "-c", "echo started; sleep 300")
    assert out.returncode == 124, out.stderr
    assert time.monotonic() - t0 < 120
    assert out.stdout == "started\n"  # the output so far, shown after the kill
    assert re.fullmatch(r"soma-schedulers: job \d+ killed: still running after 3 s \(--timeout; exit code 124\)\n",
                        out.stderr)
    assert leftovers(cluster) == []


def test_a_refused_submission_is_one_line(cluster: dh.DrmsCluster, ini: Path) -> None:
    err = one_line_error(cli(ini, "run", "--queue", "no_such_partition", "--", "true"), "not submitted", "sbatch")
    assert "exit None" not in err and err.count("Batch job submission failed") == 1  # Slurm's words, once
    assert leftovers(cluster) == []


def test_types_with_the_bridge(ini: Path) -> None:
    out = cli(ini, "types")
    assert out.returncode == 0 and re.search(r"^slurm +usable", out.stdout, re.M), out.stdout


# -- one process submits, others follow -------------------------------------------------------------------

def test_submit_then_status_wait_exit_info_in_other_processes(ini: Path) -> None:
    job_id = submit(ini, "/bin/sh", "-c", "sleep 2; exit 5")
    out = cli(ini, "status", job_id)
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    got_id, status = line.split("\t")
    assert got_id == job_id and status in ("queued_active", "running", "done")
    out = cli(ini, "wait", job_id)
    assert out.returncode == 5, out.stderr  # the job's code
    info = json.loads(out.stdout)
    assert (info["id"], info["status"], info["exit_status"], info["exit_value"]) == (
        job_id, "done", "finished_regularly", 5)
    out = cli(ini, "exit-info", job_id)  # later still: from Slurm's records
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["exit_value"] == 5
    out = cli(ini, "status", job_id)
    assert out.stdout == f"{job_id}\tdone\n"


def test_kill_from_another_process(ini: Path) -> None:
    job_id = submit(ini, "sleep", "300")
    out = cli(ini, "wait", "--timeout", "2", job_id)
    assert out.returncode == 124 and f"job {job_id}" in out.stderr and "they go on" in out.stderr, out.stderr
    out = cli(ini, "kill", job_id)
    assert out.returncode == 0, out.stderr
    out = cli(ini, "wait", job_id)
    assert out.returncode == 125, out.stderr  # did not run to its own end
    info = json.loads(out.stdout)
    assert info["status"] == "failed"
    assert info["exit_status"] in ("killed_by_user", "aborted", "aborted_before_running")


def test_several_ids_and_an_unknown_one(ini: Path) -> None:
    ok = submit(ini, "true")
    bad = submit(ini, "/bin/sh", "-c", "exit 7")
    out = cli(ini, "wait", ok, bad)
    assert out.returncode == 7, out.stderr  # the first code that is not 0, in the order given
    assert [json.loads(line)["id"] for line in out.stdout.splitlines()] == [ok, bad]
    one_line_error(cli(ini, "status", "987654321"), "987654321")
    err = one_line_error(cli(ini, "submit", "--queue", "no_such_partition", "--", "true"), "sbatch")
    assert "exit None" not in err and err.count("Batch job submission failed") == 1
