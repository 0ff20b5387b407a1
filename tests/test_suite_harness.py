"""The conformance harness's own parts without Docker: shims, the cluster pool's sharing between
processes, target selection, contract checks, the results and the Markdown report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import constants as C
from soma_schedulers.scheduler import ExitInfo, Scheduler
from soma_schedulers.testing import backend_checks, drms_pool, shims
from soma_schedulers.testing.results import CASE_PROPERTY, TARGET_PROPERTY, Results, case_name
from soma_schedulers.testing.selection import SelectionError, select_targets

# -- shims -------------------------------------------------------------------------------------------

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
json.dump({"argv": [os.fsencode(a).hex() for a in sys.argv[1:]],
           "stdin": sys.stdin.buffer.read().hex(), "cwd": os.getcwd()}, sys.stdout)
"""


def test_shims_hand_argv_and_stdin_to_docker_exec_unchanged(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    shared = tmp_path / "shared dir $x"
    (shared / "sub").mkdir(parents=True)
    directory = shims.make_shims(["sbatch", "squeue"], "ctr-1", "alice", str(shared))
    try:
        assert oct(Path(directory).stat().st_mode & 0o777) == "0o700"
        argv = ["--parsable", "a b", "$HOME", "`id`", "'\"", "", "\n", "é"]
        data = b"#!/bin/sh\nexec /bin/true 'x y'\r\n\x00\xff"
        env = {**os.environ, "PATH": f"{directory}:{bin_dir}:{os.environ['PATH']}"}
        for cwd, expected in ((shared / "sub", str(shared / "sub")), (tmp_path, str(shared))):
            out = subprocess.run(["sbatch", *argv], input=data, capture_output=True, env=env, cwd=cwd, check=True)
            got = json.loads(out.stdout)
            decoded = [bytes.fromhex(a).decode("utf-8", "surrogateescape") for a in got["argv"]]
            assert decoded == ["exec", "-i", "-u", "alice", "-w", expected, "ctr-1", "sbatch", *argv]
            assert bytes.fromhex(got["stdin"]) == data
    finally:
        shims.remove_shims(directory)
    assert not Path(directory).exists()


def test_on_path_puts_the_directory_first_and_restores_path(tmp_path: Path) -> None:
    before = os.environ["PATH"]
    with shims.on_path(str(tmp_path)):
        assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path)
    assert os.environ["PATH"] == before


# -- the cluster pool: one start per run, the others attach ------------------------------------------

class FakeCluster:
    def __init__(self, name: str) -> None:
        self.spec = type("Spec", (), {"client_commands": ("squeue",), "user": "alice", "image_tag": "x"})()
        self.name = f"ctr-{name}"
        self.shared_dir = "/tmp"
        self.containers = [1]
        self.ready_seconds = 1.0
        self.stopped = False

    def info(self) -> dict[str, Any]:
        return {"spec": "slurm", "name": self.name}

    def stop(self, graceful: bool = True) -> None:
        self.stopped = True


def test_pool_starts_each_cluster_once_and_others_attach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    attached: list[dict[str, Any]] = []

    def start(name: str, **_: object) -> FakeCluster:
        started.append(name)
        return FakeCluster(name)

    def attach(info: dict[str, Any], **kw: object) -> FakeCluster:
        attached.append({**info, **kw})
        return FakeCluster(info["name"])

    monkeypatch.setattr(drms_pool.dh, "start_cluster", start)
    monkeypatch.setattr(drms_pool.dh, "attach_cluster", attach)
    monkeypatch.setattr(drms_pool, "_summary", lambda c: "1 container(s)")
    controller = drms_pool.ClusterPool(str(tmp_path / "pool"))
    workers = [drms_pool.ClusterPool(str(tmp_path / "pool")) for _ in range(4)]
    got: list[drms_pool.SharedCluster] = []
    threads = [threading.Thread(target=lambda w=w: got.append(w.get("slurm", "gw"))) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert started == ["slurm"]  # one process started it, the three others attached
    assert sorted(h.owner for h in got) == [False, False, False, True]
    assert controller.summaries() == {"slurm": "1 container(s)"}
    shim_dir = next(h.shims for h in got if h.owner)
    assert (Path(shim_dir) / "squeue").is_file()
    controller.stop_all()  # the controller takes every cluster over and stops it
    assert any(a.get("own") for a in attached)
    assert not Path(shim_dir).exists() and not (tmp_path / "pool").exists()


def test_pool_remembers_a_failed_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def start(name: str, **_: object) -> None:
        calls.append(name)
        raise drms_pool.dh.HarnessError("container c exited (code 1) before ready\nlogs...")

    monkeypatch.setattr(drms_pool.dh, "start_cluster", start)
    for _ in range(3):
        with pytest.raises(drms_pool.PoolError, match=r"^container c exited \(code 1\) before ready$"):
            drms_pool.ClusterPool(str(tmp_path)).get("slurm")
    assert calls == ["slurm"]  # tried once for the whole run


def test_prepare_says_docker_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(drms_pool.dh, "docker_available", lambda: (False, "Docker daemon not reachable: x"))
    assert drms_pool.ClusterPool(str(tmp_path)).prepare(["slurm"]) == {
        "slurm": "Docker is not available: Docker daemon not reachable: x"}


# -- selection -------------------------------------------------------------------------------------------

def test_selection() -> None:
    assert [w.id for w in select_targets([], [])] == ["local_basic"]
    assert [(w.id, w.own_backend) for w in select_targets([], ["slurm"])] == [("slurm", True)]
    assert [(w.id, w.scheduler_type, w.drms, w.own_backend) for w in select_targets(["slurm"], ["slurm-24.11"])] \
        == [("slurm@slurm-24.11", "slurm", "slurm-24.11", False)]
    assert [w.id for w in select_targets(["slurm"], ["sge-drmaa"])] == ["slurm@sge"]  # SGE's commands, from here
    for types, drms, words in (
        (["nosuch"], [], "unknown scheduler type 'nosuch'"),
        ([], ["nosuch"], "--drms nosuch: unknown DRMS target; known:"),
        ([], ["sge"], "runs inside the cluster: python -m soma_schedulers.testing.incontainer sge"),
        (["local_basic"], ["mpi"], "--drms mpi has no client commands"),
    ):
        with pytest.raises(SelectionError, match=words.replace("(", r"\(")) as info:
            select_targets(types, drms)
        assert "\n" not in str(info.value)


# -- contract checks -------------------------------------------------------------------------------------

class Minimal(Scheduler):
    capabilities = frozenset({"stdout_stderr", "env"})

    def job_submission(self, jobs: Any, signal_end: bool = True) -> list[str | None]:
        return []

    def get_job_status(self, scheduler_job_id: str) -> str:
        return C.DONE

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        return ExitInfo(C.FINISHED_REGULARLY, 0, None, None)

    def kill_job(self, scheduler_job_id: str) -> None:
        pass

    @classmethod
    def build_scheduler(cls, config: Any) -> Minimal:
        return cls()


def test_misspelled_capabilities_are_named_with_the_known_ones() -> None:
    assert backend_checks.class_problems(Minimal, "m") == []
    bad = type("Bad", (Minimal,), {"capabilities": frozenset({"stdout", "environment", "cwd", "env"})})
    [problem] = backend_checks.class_problems(bad, "bad")
    assert "unknown name(s) 'cwd', 'environment', 'stdout' (did you mean 'stdout_stderr'?)" in problem
    assert "known: env, exit_signal" in problem and "opt-in: native_specification, queues" in problem
    assert "docs/contract.md, 'Capabilities'" in problem


def test_missing_build_scheduler_and_not_a_scheduler() -> None:
    no_build = type("NoBuild", (Minimal,), {"build_scheduler": Scheduler.build_scheduler})
    assert "does not define the classmethod build_scheduler" in backend_checks.class_problems(no_build, "n")[0]
    assert "not a soma_schedulers.scheduler.Scheduler subclass" in backend_checks.class_problems(dict, "d")[0]


def test_instance_without_base_init_or_event() -> None:
    class NoInit(Minimal):
        def __init__(self) -> None:  # forgets super().__init__()
            pass

    [problem] = backend_checks.instance_problems(NoInit(), "noinit")
    assert "NoInit.__init__ did not call super().__init__()" in problem and "jobs_finished_event" in problem
    broken = Minimal()
    broken.jobs_finished_event = None  # type: ignore[assignment]
    assert "must be the threading.Event" in backend_checks.instance_problems(broken, "m")[0]
    assert backend_checks.instance_problems(Minimal(), "m") == []
    assert "returned dict, not a Scheduler instance" in backend_checks.instance_problems({}, "d")[0]


# -- results and report ---------------------------------------------------------------------------------

class Report:
    def __init__(self, target: str, case: str, when: str, outcome: str, longrepr: Any = None) -> None:
        self.user_properties = [(TARGET_PROPERTY, target), (CASE_PROPERTY, case)]
        self.when, self.outcome, self.longrepr, self.duration = when, outcome, longrepr, 0.5
        self.skipped, self.failed = outcome == "skipped", outcome == "failed"


def test_results_matrix_and_summary(tmp_path: Path) -> None:
    r = Results()
    r.add_report(Report("slurm", "test_a", "call", "passed"))
    r.add_report(Report("slurm", "test_b", "setup", "skipped", ("f", 1, "Skipped: backend 'slurm' declares no 'hold'")))
    r.add_report(Report("local", "test_a", "call", "failed"))
    r.add_report(Report("local", "test_b", "setup", "failed"))
    r.add_report(type("Other", (), {"user_properties": []})())  # not a conformance case: ignored
    assert r.counts("slurm") == {"passed": 1, "failed": 0, "error": 0, "skipped": 1}
    assert r.counts("local") == {"passed": 0, "failed": 1, "error": 1, "skipped": 0}
    lines = r.summary_lines()
    assert any("skipped (backend 'slurm' declares no 'hold'): test_b" in line for line in lines)
    r.write_markdown(tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| `test_b` | **ERROR** | skip: backend 'slurm' declares no 'hold' |" in text
    assert "| `test_a` | **FAIL** | pass |" in text


def test_case_name_drops_the_target_part() -> None:
    assert case_name("test_self_signal", "slurm-24.11-SIGTERM", "slurm-24.11") == "test_self_signal[SIGTERM]"
    assert case_name("test_self_signal", "SIGTERM-slurm", "slurm") == "test_self_signal[SIGTERM]"
    assert case_name("test_exit_zero", "my@slurm", "my@slurm") == "test_exit_zero"


# -- the plugin, run as pytest would be --------------------------------------------------------------------

def _suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--pyargs", "soma_schedulers.testing.suite", "-p", "no:cacheprovider",
                                         *args, timeout=600)


def test_unknown_type_is_one_usage_error(pytester: pytest.Pytester) -> None:
    result = _suite(pytester, "--scheduler", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if "nosuch" in line]
    from soma_schedulers.scheduler import known_scheduler_types

    known = [t for t in known_scheduler_types() if not t.startswith("example")]  # this process's entry points
    assert errors == [f"ERROR: --scheduler nosuch: unknown scheduler type 'nosuch'; known types: {', '.join(known)}"]
    assert {"htcondor", "slurm", "torque"} <= set(known)


def test_drms_without_docker_fails_with_the_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = _suite(pytester, "--drms", "slurm", "-k", "test_exit_zero")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "--drms slurm cannot run here: Docker is not available" in result.stderr.str()
    assert "--drms-missing=skip" in result.stderr.str()
    skipped = _suite(pytester, "--drms", "slurm", "-k", "test_exit_zero", "--drms-missing=skip", "-rs")
    assert skipped.ret == pytest.ExitCode.OK
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines(["*DRMS 'slurm' cannot run here: Docker is not available*"])


def test_summary_and_report_survive_xdist(pytester: pytest.Pytester) -> None:
    report = pytester.path / "report.md"
    result = _suite(pytester, "-n", "2", "-k", "exit_zero or exit_three or unknown_queue",
                    "--conformance-report", str(report))
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*soma_schedulers conformance*", "local_basic*2 passed*0 failed*1 skipped",
                                 "*capabilities: env, exit_signal*",
                                 "*skipped (backend 'local_basic' declares no 'queues' capability)*"])
    text = report.read_text()
    assert "| `test_exit_zero` | pass |" in text and "| local_basic | local_basic | this machine | 2 | 0 | 1 |" in text


def test_conformance_cli_help_and_usage_errors() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "soma_schedulers", "conformance", *args],
                              capture_output=True, text=True, timeout=300)

    help_ = cli("--help")
    assert help_.returncode == 0 and "--drms-missing" in help_.stdout and "passed to pytest" in help_.stdout
    assert len(help_.stdout.splitlines()) < 60  # ours, not pytest's whole help
    for args, words in ((["--scheduler", "nosuch"], "unknown scheduler type 'nosuch'"),
                        (["--drms", "nosuch"], "unknown DRMS target")):
        out = cli(*args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and words in out.stderr, out.stderr


# -- failure-report logs ---------------------------------------------------------------------------------

def test_log_report_puts_the_failing_jobs_lines_first_within_a_budget(tmp_path: Path) -> None:
    from soma_schedulers.testing.cluster_logs import file_report_script

    server = tmp_path / "server.log"
    noise = "".join(f"12:00:{i % 60:02d} job 9{i}.torqueserver ran\n" for i in range(2000))
    server.write_text(noise[:40000] + "12:01:00 job 93.torqueserver obit received\n" + noise[40000:])
    (tmp_path / "mom.log").write_text("12:00:00 started job 93.torqueserver on c1\n12:00:01 job 930 ok\n")
    script = file_report_script([str(tmp_path / "*.log")], ["93.torqueserver", "93.torqueserver"], budget=1200)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "obit received" in out and "started job 93.torqueserver on c1" in out
    assert f"---- {server}: lines naming job 93.torqueserver\n" in out
    assert "2-12:00:01 job 930 ok" in out and "2:12:00:01 job 930 ok" not in out  # context, not a match
    server_part = out.split("---- " + str(tmp_path / "server.log"))[1:]
    assert sum(len(p) for p in server_part) < 1200 + 400  # its budget, plus the headers
    assert "job 91999.torqueserver ran" in out  # the tail is there too
