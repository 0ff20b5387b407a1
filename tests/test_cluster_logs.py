"""The failure report's DRMS logs without Docker: the pending jobs' lines first, the noise left out."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers.testing.cluster_logs import NOISE, cluster_logs, file_report_script, report_focus
from soma_schedulers.testing.target import JobsNotEnded

TASKS = [f"0[{i}].torqueserver" for i in range(100)]
STALLED = "0[49].torqueserver"
STALL = f"1 job(s) not ended after 120 s: {{'{STALLED}': 'running'}}"


def _server_log(path: Path) -> int:
    """A Torque server log of a run of 100 tasks, mostly locking lines; the stalled task's own
    lines early on. Returns how many locking lines it has."""
    lines, noise = [], 0
    for i, task in enumerate(TASKS):
        for method in ("find_job_by_array", "next_job", "sel_step3"):
            lines += [f"11/30/2026 01:50:{i % 60:02d}.5;128;PBS_Server.31;node;{method};locking {task} in method {method}",
                      f"11/30/2026 01:50:{i % 60:02d}.5;128;PBS_Server.31;node;{method};unlocking {task} in method {method}-8"]
            noise += 2
        lines.append(f"11/30/2026 01:50:{i % 60:02d}.6;08;PBS_Server.31;Job;{task};Job Run at request of root")
        if task == STALLED:
            lines.append(f"11/30/2026 01:50:{i % 60:02d}.7;08;PBS_Server.31;Job;{task};STALLED-TASK-LINE")
    for task in TASKS:  # every task ends but the stalled one, late in the file
        if task != STALLED:
            lines.append(f"11/30/2026 01:51:00.1;0d;PBS_Server.31;Job;{task};Exit_status=0 resources_used.cput=0")
    path.write_text("\n".join(lines) + "\n")
    return noise


def _run(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


def test_pending_jobs_lines_come_first_and_locking_lines_are_left_out(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    noise = _server_log(log)
    pending, focus = report_focus(TASKS, TASKS, STALL, [STALLED])
    out = _run(file_report_script([str(tmp_path / "*.log")], focus, budget=2000, pending=pending))
    assert f"---- {log}: lines naming pending job {STALLED}\n" in out
    assert "STALLED-TASK-LINE" in out and f"{STALLED};Job Run" in out
    assert f"---- {log}: {noise} line(s) left out: {next(iter(NOISE.values()))}\n" in out
    assert "locking" not in out.replace("locking/unlocking", "")
    assert f"---- {log}: lines naming job 0[99].torqueserver, 0[98].torqueserver" in out
    assert len(out) < 2000 + 600  # the budget, plus the headers
    # before: one grep of the case's last 20 ids and the named one, noise kept: the tail of its
    # matches (file order) misses the stalled task's early lines
    before = _run(file_report_script([str(tmp_path / "*.log")], [*reversed(TASKS[-20:]), STALLED], budget=2000,
                                     noise={}))
    assert "STALLED-TASK-LINE" not in before


def test_report_focus_puts_the_pending_ids_first() -> None:
    earlier = [f"{n}.torqueserver" for n in range(5)]
    failure = f"{STALL}\nand 3.torqueserver"
    pending, others = report_focus(TASKS, [*earlier, *TASKS], failure, JobsNotEnded(STALL, {STALLED: "R"}).pending)
    assert pending == [STALLED]
    assert others[:2] == ["0[99].torqueserver", "0[98].torqueserver"] and STALLED not in others
    assert others[-1] == "3.torqueserver" and len(others) == 21  # the case's last 20, then the named one
    many = report_focus([], [], "", [f"{n}.s" for n in range(12)])
    assert many == ([f"{n}.s" for n in range(8)], [f"{n}.s" for n in range(8, 12)])


class _Container:
    name, status = "soma-torque-cluster-1-server", "running"

    def reload(self) -> None:
        pass

    def logs(self, tail: int) -> bytes:
        return b"SOMA-SCHEDULERS-READY torque\n"


class _Cluster:
    """What ``cluster_logs`` uses of a ``DrmsCluster``: its containers, spec and ``exec``."""

    def __init__(self, globs: tuple[str, ...]) -> None:
        self.containers = [_Container()]
        self.spec = type("Spec", (), {"log_paths": globs})()

    def exec(self, argv: list[str], container: Any = None) -> tuple[int, str]:
        done = subprocess.run(argv, capture_output=True, text=True)
        return done.returncode, done.stdout


def test_cluster_logs_hands_the_pending_ids_to_each_file(tmp_path: Path) -> None:
    _server_log(tmp_path / "server.log")
    text = cluster_logs(_Cluster((str(tmp_path / "*.log"),)), focus=TASKS[:3], pending=[STALLED])
    assert "==== soma-torque-cluster-1-server (running) docker logs\nSOMA-SCHEDULERS-READY torque" in text
    assert "STALLED-TASK-LINE" in text and "lines naming job 0[0].torqueserver" in text


CONFTEST = """
import pytest
from soma_schedulers.testing.target import Target

class FakeCluster:
    def logs(self, focus=(), pending=()):
        return "PENDING=" + ",".join(pending) + " FOCUS=" + ",".join(focus[:3])

@pytest.fixture(scope="session")
def conformance_target(request, tmp_path_factory):
    target = Target(name=request.param, scheduler_type="local_basic", make_scheduler=lambda: None,
                    workdir=tmp_path_factory.mktemp("w"), python="python")
    target.cluster = FakeCluster()
    yield target
"""

CASE = f"""
from soma_schedulers.testing.target import JobsNotEnded

def test_stall(conformance_target):
    conformance_target.submitted.extend({TASKS!r})
    raise JobsNotEnded({STALL!r}, {{{STALLED!r}: "running"}})
"""


def test_the_plugin_reports_the_pending_jobs_logs_first(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_stall=CASE)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    section = next(n for n, line in enumerate(lines) if "DRMS daemon logs" in line)
    assert lines[section + 1] == f"PENDING={STALLED} FOCUS=0[99].torqueserver,0[98].torqueserver,0[97].torqueserver"
