"""Unit tests: configuration, job validation, usage format, runner quoting, local queue.

The Slurm backend's are in test_slurm_unit.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from soma_schedulers import constants as C
from soma_schedulers.batch import Observation
from soma_schedulers.config import BridgeConfig, load_config
from soma_schedulers.errors import (
    CommandNotFoundError,
    CommandTimeoutError,
    ConfigurationError,
    DRMError,
    JobSpecError,
    UnknownSchedulerTypeError,
)
from soma_schedulers.job import Job, as_job
from soma_schedulers.runner import CommandRunner, container_markers
from soma_schedulers.scheduler import build_scheduler, get_scheduler_implementation
from soma_schedulers.schedulers import slurm_scheduler as slurm
from soma_schedulers.schedulers.local_scheduler import ConfiguredLocalScheduler, LocalScheduler
from soma_schedulers.usage import format_usage, memory_to_kb, parse_hms, parse_usage


def test_constants_are_soma_workflow_strings() -> None:
    assert len(C.JOB_STATUS) == 16 and len(C.JOB_EXIT_STATUS) == 7
    assert C.EXIT_NOTRUN == "aborted_before_running" and C.FINISHED_TERM_SIG == "finished_signal"
    assert C.USER_KILLED == "killed_by_user" and C.EXIT_UNDETERMINED == "exit_status_undetermined"


def test_registry_and_unknown_type() -> None:
    assert get_scheduler_implementation("local") is ConfiguredLocalScheduler
    assert get_scheduler_implementation("slurm") is slurm.SlurmScheduler
    with pytest.raises(UnknownSchedulerTypeError) as info:
        get_scheduler_implementation("nope")
    assert "local_basic" in str(info.value) and "nope" in str(info.value)


def test_ini_section(tmp_path: Path) -> None:
    ini = tmp_path / "r.ini"
    ini.write_text(
        "[cluster]\nSCHEDULER_TYPE = slurm\nNATIVE_SPECIFICATION = --time=10\nMPI = openmpi\n"
        "CPU_NB = 3\nSCHEDULER_INTERVAL = 0.5\nSUBMITTING_MACHINES = host\n"
        "BRIDGE_SSH_HOST = front\nBRIDGE_SSH_PORT = 2222\nBRIDGE_SSH_OPTIONS = -o StrictHostKeyChecking=no\n"
    )
    cfg = load_config(ini)
    assert cfg.scheduler_type == "slurm" and cfg.native_specification == "--time=10"
    assert cfg.parallel_job_config == {"MPI": "openmpi"} and cfg.cpu_nb == 3 and cfg.interval == 0.5
    assert cfg.bridge == BridgeConfig(mode="ssh", host="front", port=2222,
                                      ssh_options=("-o", "StrictHostKeyChecking=no"))


@pytest.mark.parametrize("text, word", [
    ("[a]\nFOO = 1\n", "FOO"),
    ("[a]\nCPU_NB = many\n", "CPU_NB"),
    ("[a]\nOUT_OF_CONTAINER = maybe\n", "maybe"),
    ("[a]\n[b]\n", "2 sections"),
    ("not an ini", "malformed"),
])
def test_bad_ini(tmp_path: Path, text: str, word: str) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_config(ini)
    assert word in str(info.value)


def test_build_scheduler_from_mapping_and_path(tmp_path: Path) -> None:
    with build_scheduler("local_basic", {"CPU_NB": "3"}) as s:
        assert isinstance(s, LocalScheduler) and s.limit == 3
    with pytest.raises(ConfigurationError):
        build_scheduler("local_basic", tmp_path / "missing.ini")


@pytest.mark.parametrize("kwargs, word", [
    ({"command": []}, "empty"),
    ({"command": "ls -l"}, "single string"),
    ({"command": ["ls", 3]}, "command[1]"),
    ({"command": ["a\0b"]}, "NUL"),
    ({"command": ["ls"], "env": {"A=B": "x"}}, "env"),
    ({"command": ["ls"], "parallel_job_info": {"nodes": 2}}, "unknown keys"),
    ({"command": ["ls"], "native_specification": [1]}, "native_specification"),
])
def test_job_validation(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(JobSpecError) as info:
        Job(**kwargs)  # type: ignore[arg-type]
    assert word in str(info.value)


def test_engine_job_like_objects() -> None:
    class EngineJob:
        name = "x"
        env = {"A": "1"}
        join_stderrout = True
        parallel_job_info = None

        def plain_command(self) -> list[object]:
            return ["echo", 3]

        def plain_stdout(self) -> str:
            return "/o"

        def plain_stderr(self) -> str:
            return "/e"

        def plain_stdin(self) -> None:
            return None

        def plain_working_directory(self) -> str:
            return "/tmp"

    job = as_job(EngineJob())
    assert job.command == ("echo", "3") and job.stdout_file == "/o" and job.stderr_file is None
    assert job.join_stderrout and job.env == {"A": "1"} and job.working_directory == "/tmp"
    with pytest.raises(JobSpecError):
        as_job(42)


def test_usage_format() -> None:
    data = format_usage(cput=3725.4, mem_kb=13530, walltime=61, ncpus=2)
    assert data == b"cput=01:02:05 mem=13530kb ncpus=2 walltime=00:01:01"
    assert parse_usage(data)["mem"] == "13530kb"
    with pytest.raises(ValueError):
        parse_usage(b"cpu=1")
    assert parse_hms("1-00:00:01") == 86401 and parse_hms("01:02.5") == 62.5 and parse_hms("x") is None
    assert memory_to_kb("91232K") == 91232 and memory_to_kb("2M") == 2048 and memory_to_kb("") is None


def test_runner_ssh_quoting_survives_a_remote_shell() -> None:
    argv = ["printf", "%s\\n", "a b", "$HOME", "`id`", "it's", 'q"q', "end\\", "-n", "line\nbreak", "é"]
    runner = CommandRunner(BridgeConfig(mode="ssh", host="h", user="u", port=22))
    full = runner.full_argv(argv)
    assert full[0] == "ssh" and "BatchMode=yes" in full and full[-3:-1] == ["--", "h"]
    # What sshd does with the remote command: hand the single string to a shell.
    out = subprocess.run(["sh", "-c", full[-1]], capture_output=True, check=True).stdout.decode()
    assert out.split("\n")[:-1] == ["a b", "$HOME", "`id`", "it's", 'q"q', "end\\", "-n", "line", "break", "é"]
    runner.close()


def test_runner_prefix_keeps_argv_and_errors_are_typed() -> None:
    runner = CommandRunner(BridgeConfig(mode="prefix", prefix=("env",)), timeout=2, retries=1, backoff=0.01)
    assert runner.run(["echo", "$x y"]).stdout == "$x y\n"
    with pytest.raises(CommandNotFoundError):
        runner.run(["no-such-command-soma"])
    with pytest.raises(CommandTimeoutError) as info:
        runner.run(["sleep", "5"], timeout=0.2)
    assert runner.calls == 4  # the timeout was retried once
    assert "0.2" in str(info.value)
    with pytest.raises(DRMError):
        CommandRunner(timeout=1).run(["/nonexistent/soma"])


def test_container_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CASA_HOST_DIR", "APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"):
        monkeypatch.delenv(var, raising=False)
    base = container_markers()
    assert "$CASA_HOST_DIR" not in base
    monkeypatch.setenv("CASA_HOST_DIR", "/host")
    assert "$CASA_HOST_DIR" in container_markers()
    # auto mode: command present -> no bridge even in a container
    assert CommandRunner(BridgeConfig(), probe_command="sh").prefix == []
    assert CommandRunner(BridgeConfig(), probe_command="no-such-squeue").prefix[0] == "ssh"
    monkeypatch.delenv("CASA_HOST_DIR")
    if not container_markers():
        assert CommandRunner(BridgeConfig(), probe_command="no-such-squeue").prefix == []


def test_local_queue_concurrency_and_queued_kill() -> None:
    with LocalScheduler(proc_nb=1) as s:
        ids = s.job_submission([Job(command=["sleep", "0.3"]), Job(command=["true"]), Job(command=["true"])])
        time.sleep(0.1)
        st = s.get_jobs_status(ids)  # type: ignore[arg-type]
        assert st[ids[0]] == C.RUNNING and st[ids[1]] == C.QUEUED_ACTIVE  # type: ignore[index]
        s.kill_job(ids[1])  # type: ignore[arg-type]
        assert s.get_job_exit_info(ids[1]) == (C.EXIT_NOTRUN, None, None, None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 5
        while s.get_job_status(ids[2]) != C.DONE and time.monotonic() < deadline:  # type: ignore[arg-type]
            time.sleep(0.01)
        assert s.get_job_status(ids[2]) == C.DONE and s.get_job_status(ids[0]) == C.DONE  # type: ignore[arg-type]


def test_observation_defaults() -> None:
    assert Observation().status == C.UNDETERMINED and not Observation().ended


def test_command_log_keeps_what_the_caller_saw_about_each_job() -> None:
    from soma_schedulers.errors import CommandError
    from soma_schedulers.testing.faults import FaultPlan, inject_faults, record_commands

    runner = CommandRunner(timeout=5, retries=0)
    inject_faults(runner, FaultPlan(rate=1.0, kinds=("fail",), commands=("false",)))
    log = record_commands(runner)
    runner.run(["printf", "17|FAILED|3:0\n170|COMPLETED|0:0\n17.batch|FAILED|3:0\n"])
    with pytest.raises(CommandError):
        runner.run(["false"])
    about = log.about("17")
    assert [line.split(": ", 1)[1] for line in about] == ["17|FAILED|3:0", "17.batch|FAILED|3:0"]
    assert "injected failure" in log.entries[-1][2] and log.entries[-1][1] == ("false",)
