"""Unit tests of the DRMAA backend against a fake ``drmaa`` module (no libdrmaa needed).

The fake keeps the ``drmaa`` package's names and behaviours that the backend relies on,
as observed with SGE 8.1.9 and slurm-drmaa (see docs): one session per process,
``jobStatus``/``wait``/``control`` errors, a bare ``Exception("code 24: ...")`` for a job
deleted before it ran.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import subprocess
import sys
import time
import types
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from soma_schedulers import constants as C
from soma_schedulers.errors import (
    CommandError,
    ConfigurationError,
    SchedulerClosedError,
    SchedulerUnavailableError,
    UnknownJobError,
)
from soma_schedulers.job import Job
from soma_schedulers.runner import CommandResult
from soma_schedulers.scheduler import build_scheduler, get_scheduler_implementation
from soma_schedulers.schedulers import drmaa_scheduler as dm
from soma_schedulers.schedulers.drmaa import attach as da
from soma_schedulers.schedulers.drmaa import scripts as dscripts
from soma_schedulers.schedulers.drmaa import session as ds
from soma_schedulers.schedulers.drmaa import slurm as dslurm
from soma_schedulers.testing.faults import FaultPlan, inject_drmaa_faults

JobInfo = namedtuple("JobInfo", "jobId hasExited hasSignal terminatedSignal hasCoreDump wasAborted "
                                "exitStatus resourceUsage")
SGE_RUSAGE = {"cpu": "1.2500", "ru_wallclock": "3.0000", "ru_maxrss": "13530.0000", "maxvmem": "2097152.0000",
              "mem": "0.0011", "vmem": "0.0000", "start_time": "1795552489.0000", "end_time": "1795552492.0000"}
NORUSAGE = "norusage"


def info(code: int | None = 0, sig: str = "", aborted: bool = False, rusage: dict[str, str] | None = None) -> Any:
    return JobInfo("x", code is not None and not sig and not aborted, bool(sig), sig, False, aborted,
                   code or 0, dict(SGE_RUSAGE if rusage is None else rusage))


class FakeDRMS:
    """The DRMS behind the fake library: job states and what ``wait`` gives."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.infos: dict[str, Any] = {}
        self.templates: dict[str, dict[str, Any]] = {}
        self.reaped: set[str] = set()
        self.active = False
        self.inits: list[str | None] = []
        self.exits = 0
        self.calls: list[str] = []
        self.ids = itertools.count(1)
        self.status_error: Exception | None = None
        self.on_terminate_running: Any = info(None, aborted=True)  # SGE; slurm-drmaa: info(0)
        self.run_scripts = False
        self.implementation = "SGE 8.1.9"

    def end(self, jid: str, result: Any) -> None:
        self.states[jid] = C.DONE
        self.infos[jid] = result


def fake_module(drms: FakeDRMS) -> types.ModuleType:
    errors = types.ModuleType("drmaa.errors")

    class DrmaaException(Exception):
        pass

    for name in ("InvalidJobException", "ExitTimeoutException", "DrmCommunicationException",
                 "AlreadyActiveSessionException", "DeniedByDrmException", "InvalidContactStringException"):
        setattr(errors, name, type(name, (DrmaaException,), {}))
    errors.DrmaaException = DrmaaException  # type: ignore[attr-defined]
    E: Any = errors

    class Template:
        pass

    class Session:
        TIMEOUT_NO_WAIT = 0

        def initialize(self, contact: str | None = None) -> None:
            if drms.active:
                raise E.AlreadyActiveSessionException("code 11: already active")
            if contact and contact.startswith("expired"):
                raise E.InvalidContactStringException("code 7: no such session")
            drms.active = True
            drms.inits.append(contact)
            self.contact = contact or f"session=fake.{len(drms.inits)}"
            self.drmaaImplementation = drms.implementation

        def exit(self) -> None:
            drms.active = False
            drms.exits += 1

        def createJobTemplate(self) -> Template:
            return Template()

        def deleteJobTemplate(self, jt: Template) -> None:
            pass

        def runJob(self, jt: Template) -> str:
            if getattr(jt, "nativeSpecification", "").startswith("-q nosuch"):
                raise E.DeniedByDrmException('code 17: job requests unknown queue "nosuch"')
            jid = str(next(drms.ids))
            drms.templates[jid] = dict(vars(jt))
            held = getattr(jt, "jobSubmissionState", "") == "drmaa_hold"
            drms.states[jid] = C.USER_ON_HOLD if held else C.QUEUED_ACTIVE
            if drms.run_scripts:
                rc = subprocess.run([jt.remoteCommand, *jt.args], check=False).returncode  # type: ignore[attr-defined]
                drms.end(jid, info(rc))
            return jid

        def runBulkJobs(self, jt: Template, first: int, last: int, incr: int) -> list[str]:
            drms.calls.append(f"runBulkJobs {first}-{last}:{incr}")
            if getattr(jt, "nativeSpecification", "").startswith("-q nosuch"):
                raise E.DeniedByDrmException('code 17: job requests unknown queue "nosuch"')
            array = str(next(drms.ids))
            held = getattr(jt, "jobSubmissionState", "") == "drmaa_hold"
            ids = []
            slurm = "Slurm" in drms.implementation
            for task in range(first, last + 1, incr):
                jid = f"{array}_{task}" if slurm else f"{array}.{task}"  # slurm-drmaa's form, SGE's
                drms.templates[jid] = dict(vars(jt))
                drms.states[jid] = C.USER_ON_HOLD if held else C.QUEUED_ACTIVE
                if drms.run_scripts:
                    env = {**os.environ, "SLURM_ARRAY_TASK_ID" if slurm else "SGE_TASK_ID": str(task)}
                    rc = subprocess.run([jt.remoteCommand, *jt.args], check=False, env=env).returncode  # type: ignore[attr-defined]
                    drms.end(jid, info(rc))
                ids.append(jid)
            return ids

        def jobStatus(self, jid: str) -> str:
            drms.calls.append(f"jobStatus {jid}")
            if drms.status_error is not None:
                raise drms.status_error
            if jid not in drms.states or jid in drms.reaped:
                raise E.InvalidJobException("code 18: no such job")
            return drms.states[jid]

        def wait(self, jid: str, timeout: float) -> Any:
            drms.calls.append(f"wait {jid}")
            if jid not in drms.states or jid in drms.reaped:
                raise E.InvalidJobException("code 18: no such job")
            if jid not in drms.infos:
                raise E.ExitTimeoutException("code 23: time-out")
            drms.reaped.add(jid)
            if drms.infos[jid] == NORUSAGE:
                raise Exception("code 24: no usage information was returned for the completed job")
            return drms.infos[jid]._replace(jobId=jid)

        def control(self, jid: str, action: str) -> None:
            drms.calls.append(f"control {jid} {action}")
            if jid not in drms.states or jid in drms.infos:
                raise E.InvalidJobException("code 18: There are no jobs registered")
            if drms.states[jid] == C.RUNNING:
                drms.end(jid, drms.on_terminate_running)
            else:
                drms.states[jid] = C.UNDETERMINED  # SGE, just after deleting a held job
                drms.infos[jid] = NORUSAGE

    mod = types.ModuleType("drmaa")
    mod.errors = errors  # type: ignore[attr-defined]
    mod.Session = Session  # type: ignore[attr-defined]
    mod.JobSubmissionState = types.SimpleNamespace(HOLD_STATE="drmaa_hold", ACTIVE_STATE="drmaa_active")  # type: ignore[attr-defined]
    mod.JobControlAction = types.SimpleNamespace(TERMINATE="terminate")  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def drms(monkeypatch: pytest.MonkeyPatch) -> FakeDRMS:
    fake = FakeDRMS()
    monkeypatch.setitem(sys.modules, "drmaa", fake_module(fake))
    monkeypatch.setattr(ds, "SESSION", ds.SharedSession())
    return fake


@pytest.fixture
def sched(drms: FakeDRMS, tmp_path: Path) -> Iterator[dm.DrmaaScheduler]:
    s = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path / "scripts"), "STATUS_CACHE_SECONDS": "0"})
    assert isinstance(s, dm.DrmaaScheduler)
    yield s
    s.clean()


def one_by_one(s: dm.DrmaaScheduler) -> None:
    """Submit with runJob only (ARRAYS = never), for the cases about single submissions."""
    s.config = dataclasses.replace(s.config, arrays="never")


def submit(s: dm.DrmaaScheduler, *jobs: Job) -> list[str]:
    ids = s.job_submission(list(jobs))
    assert None not in ids, s.last_submission_errors
    return ids  # type: ignore[return-value]


# -- without libdrmaa ------------------------------------------------------------------------------

def test_type_loads_without_drmaa(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "drmaa", None)  # "import drmaa" raises ImportError
    assert get_scheduler_implementation("drmaa") is dm.DrmaaScheduler
    with pytest.raises(SchedulerUnavailableError) as exc:
        build_scheduler("drmaa")
    message = str(exc.value)
    assert "DRMAA_LIBRARY_PATH" in message and "\n" not in message


def test_clear_error_when_libdrmaa_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The drmaa package itself raises RuntimeError at import when it finds no library.
    pkg = tmp_path / "drmaa"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "raise RuntimeError('Could not find drmaa library.  Please specify its full location using\\n"
        " the environment variable DRMAA_LIBRARY_PATH')\n")
    monkeypatch.delitem(sys.modules, "drmaa", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SchedulerUnavailableError) as exc:
        build_scheduler("drmaa")
    message = str(exc.value)
    assert message.startswith("no usable DRMAA library: set DRMAA_LIBRARY_PATH")
    assert "\n" not in message


def test_unsafe_script_directory(drms: FakeDRMS, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="OPTION_TMP_DIR"):
        build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path / "a b")})


# -- submission ----------------------------------------------------------------------------------------

def test_template_runs_a_private_script(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["prog", "a b", "$x"], name="odd name é/1", hold=True))
    t = drms.templates[jid]
    assert t["remoteCommand"] == "/bin/sh" and len(t["args"]) == 1
    assert t["outputPath"] == t["errorPath"] == ":/dev/null"
    # SGE: the name carries a token that finds the job again when runJob's answer is lost
    assert re.fullmatch(r"odd_name___1\.soma[0-9a-f]{16}", t["jobName"]) and t["jobSubmissionState"] == "drmaa_hold"
    assert "nativeSpecification" not in t
    path = Path(t["args"][0])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert "exec prog 'a b' '$x'" in path.read_text()
    assert sched.get_job_status(jid) == C.USER_ON_HOLD


def test_argv_reaches_the_program_byte_exact(sched: dm.DrmaaScheduler, drms: FakeDRMS, tmp_path: Path) -> None:
    drms.run_scripts = True
    argv = ["a  b", "'", '"', "$HOME", "`id`", "\\", "\n", "-n", "é 中", ""]
    out = tmp_path / "out"
    [jid] = submit(sched, Job(command=[sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", *argv],
                              stdout_file=str(out)))
    assert out.read_text().strip() == repr(argv)
    assert sched.get_job_exit_info(jid)[:3] == (C.FINISHED_REGULARLY, 0, None)


def test_names() -> None:
    assert dm.job_name("odd name (1) & ; 'q' \"d\" $x `y` /a:b,c.é") == "odd_name__1_______q___d___x__y___a_b,c._"
    assert dm.job_name("3rd") == "j3rd" and dm.job_name("") == "job"


def test_native_specification_queue_parallel(drms: FakeDRMS, tmp_path: Path) -> None:
    s = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path), "NATIVE_SPECIFICATION": "-l h_rt=60",
                                  "MPI": "mpi", "drmaa_job_category": "cat-{config_name}",
                                  "PARALLEL_ENV_MPI_BIN": "/opt/mpi/bin"})
    try:
        par = {"config_name": "MPI", "nodes_number": 2, "cpu_per_node": 4}
        a, b, c = submit(s, Job(command=["x"], queue="long"), Job(command=["x"], parallel_job_info=par),
                         Job(command=["x"], native_specification=["-l", "mem=1G"]))
        assert drms.templates[a]["nativeSpecification"] == "-q long -l h_rt=60"
        assert drms.templates[b]["nativeSpecification"] == "-pe mpi 8 -l h_rt=60"
        assert drms.templates[b]["jobCategory"] == "cat-mpi"
        assert "export PARALLEL_ENV_MPI_BIN=/opt/mpi/bin" in Path(drms.templates[b]["args"][0]).read_text()
        assert drms.templates[c]["nativeSpecification"] == "-l mem=1G"
    finally:
        s.clean()


def test_refused_submission_keeps_the_message(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = sched.job_submission([Job(command=["x"], queue="nosuch"), Job(command=["y"])])
    assert ids[0] is None and ids[1] is not None
    errors = sched.last_submission_errors
    assert errors[0] is not None and 'unknown queue "nosuch"' in errors[0] and errors[1] is None
    assert len(os.listdir(sched._script_dir())) == 1  # the refused job's script is gone


# -- status and end states ---------------------------------------------------------------------

def test_end_states(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = submit(sched, *(Job(command=["x"]) for _ in range(5)))
    for jid in ids:
        drms.states[jid] = C.RUNNING
    assert set(sched.get_jobs_status(ids).values()) == {C.RUNNING}
    assert sched.get_job_exit_info(ids[0]) == (C.EXIT_UNDETERMINED, None, None, None)
    drms.end(ids[0], info(3))
    drms.end(ids[1], info(None, sig="SIGTERM"))
    drms.end(ids[2], info(None, aborted=True))  # qdel'd by someone else
    drms.end(ids[3], NORUSAGE)  # deleted while queued, by someone else
    drms.end(ids[4], info(None, sig="SIGWEIRD"))
    assert sched.get_jobs_status(ids) == dict(zip(ids, [C.DONE, C.DONE, C.FAILED, C.FAILED, C.FAILED], strict=True))
    exits = sched.get_jobs_exit_info(ids)
    assert exits[ids[0]] == (C.FINISHED_REGULARLY, 3, None, b"cput=00:00:01 mem=13530kb vmem=2048kb walltime=00:00:03")
    assert exits[ids[1]][:3] == (C.FINISHED_TERM_SIG, None, 15)
    assert exits[ids[2]][:3] == (C.EXIT_ABORTED, None, None)
    assert exits[ids[3]] == (C.EXIT_ABORTED, None, None, None)
    assert exits[ids[4]][:3] == (C.EXIT_ABORTED, None, None)
    assert sched.get_job_error(ids[2]) and sched.get_job_error(ids[4])
    # DRMAA reaps once: the answer is kept, and nothing asks the DRMS again
    drms.calls.clear()
    assert sched.get_jobs_exit_info(ids) == exits and drms.calls == []
    assert os.listdir(sched._script_dir()) == []  # scripts deleted at the end


def test_launch_error_marker(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["/nonexistent/prog"]))
    script = drms.templates[jid]["args"][0]
    # what the job script does when its command is missing
    rc = subprocess.run(["/bin/sh", script], check=False, capture_output=True).returncode
    assert rc == 127 and Path(script + ".launch").read_text() == "command not found: /nonexistent/prog\n"
    drms.end(jid, info(127))
    assert sched.get_job_status(jid) == C.FAILED
    assert sched.get_job_exit_info(jid)[:3] == (C.EXIT_ABORTED, 127, None)
    assert sched.get_job_error(jid) == "command not found: /nonexistent/prog"
    assert not Path(script).exists() and not Path(script + ".launch").exists()


def test_exit_127_without_marker_is_the_programs(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, info(127))
    assert sched.get_job_exit_info(jid)[:3] == (C.FINISHED_REGULARLY, 127, None)


@pytest.mark.parametrize("implementation", ["sge", "slurm-drmaa"])
def test_kill_running_is_killed_by_user(sched: dm.DrmaaScheduler, drms: FakeDRMS, implementation: str) -> None:
    if implementation == "slurm-drmaa":  # neither aborted nor signalled, no start time
        drms.on_terminate_running = info(0, rusage={"cpu": "0", "walltime": "2"})
    [jid] = submit(sched, Job(command=["x"]))
    drms.states[jid] = C.RUNNING
    assert sched.get_job_status(jid) == C.RUNNING
    sched.kill_job(jid)
    assert sched.get_job_status(jid) == C.FAILED
    assert sched.get_job_exit_info(jid)[:3] == (C.USER_KILLED, None, None)
    sched.kill_job(jid)  # finished: nothing changes, nothing is sent
    assert [c for c in drms.calls if c.startswith("control")] == [f"control {jid} terminate"]


def test_kill_held_is_aborted_before_running(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"], hold=True))
    assert sched.get_job_status(jid) == C.USER_ON_HOLD
    sched.kill_job(jid)
    assert sched.get_job_status(jid) == C.FAILED
    assert sched.get_job_exit_info(jid) == (C.EXIT_NOTRUN, None, None, None)


def test_kill_after_a_natural_end_keeps_it(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, info(0))  # ended, not yet seen by the scheduler
    sched.kill_job(jid)  # control() raises InvalidJobException: a natural end
    assert sched.get_job_exit_info(jid)[:3] == (C.FINISHED_REGULARLY, 0, None)
    assert sched.get_job_status(jid) == C.DONE


def test_transient_undetermined_keeps_the_last_status(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.states[jid] = C.RUNNING
    assert sched.get_job_status(jid) == C.RUNNING
    drms.states[jid] = C.UNDETERMINED
    assert sched.get_job_status(jid) == C.RUNNING


def test_unreachable_drms_is_undetermined(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.status_error = sys.modules["drmaa"].errors.DrmCommunicationException("code 2: qmaster down")
    assert sched.get_job_status(jid) == C.UNDETERMINED
    drms.status_error = None
    assert sched.get_job_status(jid) == C.QUEUED_ACTIVE


def test_unknown_id(sched: dm.DrmaaScheduler) -> None:
    for method in (sched.get_job_status, sched.get_job_exit_info, sched.kill_job):
        with pytest.raises(KeyError, match="no-such"):
            method("no-such")


# -- sessions ------------------------------------------------------------------------------------

def test_one_session_per_process_shared(drms: FakeDRMS, tmp_path: Path) -> None:
    a = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path)})
    b = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path)})
    assert drms.inits == [None]
    a.clean()
    assert drms.active
    b.clean()
    assert not drms.active and drms.exits == 1
    assert os.listdir(tmp_path) == []  # private directories removed


def test_clean_closes_the_scheduler(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    sched.clean()
    assert not drms.active
    for call in (lambda: sched.job_submission([Job(command=["x"])]), lambda: sched.get_job_status(jid),
                 lambda: sched.get_job_exit_info(jid), lambda: sched.kill_job(jid)):
        with pytest.raises(SchedulerClosedError):
            call()
    assert not drms.active  # no session reopened by a refused call


def test_sleep_and_wake(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    sched.sleep()  # a job is unfinished: SGE would forget its end without a session
    assert sched.is_sleeping and drms.active
    drms.end(jid, info(0))
    assert sched.get_job_status(jid) == C.DONE and not sched.is_sleeping
    sched.sleep()
    assert sched.is_sleeping and not drms.active
    submit(sched, Job(command=["x"]))  # wakes up, resuming the previous session
    assert not sched.is_sleeping and drms.inits == [None, "session=fake.1"]
    sched.sleep()
    sched.wake()
    assert drms.active


def test_wake_with_an_expired_session_opens_a_new_one(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    sched.sleep()
    ds.SESSION.contact = "expired.1"
    sched.wake()
    assert drms.active and drms.inits == [None, None]  # "expired.1" was refused


# -- resource usage --------------------------------------------------------------------------------

def test_usage_mapping() -> None:
    assert dm.usage_from_rusage(SGE_RUSAGE) == b"cput=00:00:01 mem=13530kb vmem=2048kb walltime=00:00:03"
    slurm_like = {"cpu": "65", "mem": "2048K", "vmem": "0", "walltime": "70"}
    assert dm.usage_from_rusage(slurm_like) == b"cput=00:01:05 mem=2048kb walltime=00:01:10"
    pbs_like = {"cput": "00:00:07", "mem": "13530kb", "vmem": "20000kb", "walltime": "00:00:09"}
    assert dm.usage_from_rusage(pbs_like) == b"cput=00:00:07 mem=13530kb vmem=20000kb walltime=00:00:09"
    assert dm.usage_from_rusage({}) is None
    assert dm.signal_number("SIGKILL") == 9 and dm.signal_number("TERM") == 15 and dm.signal_number("15") == 15
    assert dm.signal_number("SIGWEIRD") is None
    assert dm.implementation_family("DRMAA for Slurm 1.1.6") == "slurm"
    assert dm.implementation_family("PBS DRMAA v. 1.0.19") == "pbs"
    assert dm.implementation_family("SGE 8.1.9") == "sge"


# -- slurm-drmaa: its exit report and Slurm accounting -------------------------------------------

SLURM_ZEROS = {"submission_time": "1795553983", "cpu": "0", "mem": "0", "vmem": "0", "walltime": "0",
               "hosts": "(null)"}


def slurm_info(code: int) -> Any:
    """What slurm-drmaa 1.1.6 reports: an exit code of 128+N reads as exited *and* signal N."""
    sig = {137: "SIGKILL", 143: "SIGTERM"}.get(code, "")
    return JobInfo("x", True, bool(sig), sig, False, False, code, dict(SLURM_ZEROS))


class FakeSacct:
    """``sacct -n -P -j IDS -o ...`` answers, the lines of each job (or accounting is disabled)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self.squeue: set[str] = set()
        self.disabled = False
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], *args: Any, **kw: Any) -> Any:
        from soma_schedulers.errors import CommandError
        from soma_schedulers.runner import CommandResult

        self.calls.append(list(argv))
        if argv[0] == "scontrol":
            return CommandResult(tuple(argv), 0, "MaxArraySize            = 1001\n", "", 0.01)
        if argv[:3] == ["squeue", "-h", "-r"]:  # squeue -h -r -t all -j ARRAYS -o %i: the tasks it lists
            arrays = argv[6].split(",")
            listed = [i for i in self.squeue if i.partition("_")[0] in arrays]
            return CommandResult(tuple(argv), 0, "".join(f"{i}\n" for i in listed), "", 0.01)
        if argv[0] == "squeue":  # squeue -h -t all -j IDS -o %i|%U: the jobs slurmctld has, uid 1000
            known = [i for i in argv[5].split(",") if i in self.squeue]
            if not known:
                raise CommandError(argv, 1, "slurm_load_jobs error: Invalid job id specified")
            return CommandResult(tuple(argv), 0, "".join(f"{i}|1000\n" for i in known), "", 0.01)
        assert argv[:5] == ["sacct", "-n", "-P", "-j", argv[4]]
        if self.disabled:
            raise CommandError(argv, 1, "sacct: error: Slurm accounting storage is disabled")
        out = "".join(line + "\n" for jid in argv[4].split(",") for line in self.lines.get(jid, []))
        return CommandResult(tuple(argv), 0, out, "", 0.01)


@pytest.fixture
def slurm(drms: FakeDRMS, sched: dm.DrmaaScheduler, monkeypatch: pytest.MonkeyPatch) -> FakeSacct:
    drms.implementation = "DRMAA for Slurm 1.1.6"
    sched.sleep()
    sched.wake()  # a new session: the implementation string is read again
    assert dm.implementation_family(sched.implementation) == "slurm"
    fake = FakeSacct()
    monkeypatch.setattr(sched.runner, "run", fake.run)
    return fake


def record(jid: str, state: str, code: str, *, cpu: str = "00:01.200", elapsed: str = "2",
           rss: str = "2048K", node: str = "slurm") -> list[str]:
    start = "2026-11-24T21:09:47" if node != "None assigned" else "None"
    return [f"{jid}|{state}|{code}|{start}|{elapsed}|{cpu}||{node}",
            f"{jid}.batch|{state}|{code}|{start}|{elapsed}|{cpu}|{rss}|{node}"]


def test_slurm_drmaa_128_plus_n_is_a_signal(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    ids = submit(sched, Job(command=["x"]), Job(command=["y"]), Job(command=["z"]))
    for jid, code in zip(ids, (137, 143, 3), strict=True):
        drms.end(jid, slurm_info(code))
        slurm.lines[jid] = record(jid, "FAILED", f"{code & 0x7F}:0")  # sacct drops the high bit
    infos = sched.get_jobs_exit_info(ids)
    assert [infos[j][:3] for j in ids] == [(C.FINISHED_TERM_SIG, None, 9), (C.FINISHED_TERM_SIG, None, 15),
                                           (C.FINISHED_REGULARLY, 3, None)]


def test_slurm_drmaa_usage_comes_from_accounting(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, slurm_info(0))
    slurm.lines[jid] = record(jid, "COMPLETED", "0:0")
    assert sched.get_job_exit_info(jid) == (C.FINISHED_REGULARLY, 0, None, b"cput=00:00:01 mem=2048kb walltime=00:00:02")
    assert len(slurm.calls) == 1


def test_slurm_drmaa_waits_for_the_accounting_record(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                     slurm: FakeSacct) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.states[jid] = C.RUNNING
    assert sched.get_job_status(jid) == C.RUNNING
    drms.end(jid, slurm_info(0))
    assert sched.get_job_status(jid) == C.RUNNING  # reaped, no record yet: its last live state
    assert sched.get_job_status(jid) == C.RUNNING
    slurm.lines[jid] = record(jid, "COMPLETED", "0:0")
    assert sched.get_job_status(jid) == C.DONE
    assert sched.get_job_exit_info(jid)[3] == b"cput=00:00:01 mem=2048kb walltime=00:00:02"


def test_slurm_drmaa_without_a_record_after_the_grace(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dslurm, "ACCOUNTING_GRACE", 0.0)
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, slurm_info(4))
    assert sched.get_job_exit_info(jid) == (C.FINISHED_REGULARLY, 4, None, None)  # not slurm-drmaa's zeros


def test_slurm_drmaa_without_accounting(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    slurm.disabled = True
    ids = submit(sched, Job(command=["x"]), Job(command=["y"]))
    drms.end(ids[0], slurm_info(5))
    assert sched.get_job_exit_info(ids[0]) == (C.FINISHED_REGULARLY, 5, None, None)
    drms.end(ids[1], slurm_info(0))
    assert sched.get_job_exit_info(ids[1]) == (C.FINISHED_REGULARLY, 0, None, None)
    assert [c[0] for c in slurm.calls] == ["scontrol", "sacct"]  # MaxArraySize, then sacct asked once


def test_slurm_drmaa_lost_job_exit_code_from_accounting(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                        slurm: FakeSacct) -> None:
    # The job ran and left slurmctld before a poll: slurm-drmaa assumes exit 0.
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, slurm_info(0))
    slurm.lines[jid] = record(jid, "FAILED", "7:0")
    assert sched.get_job_exit_info(jid)[:3] == (C.FINISHED_REGULARLY, 7, None)
    assert sched.get_job_status(jid) == C.DONE


def test_slurm_drmaa_timeout_is_aborted(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    [jid] = submit(sched, Job(command=["x"]))
    drms.end(jid, slurm_info(143))  # slurm-drmaa: SIGTERM
    slurm.lines[jid] = record(jid, "TIMEOUT", "0:0", elapsed="87")
    assert sched.get_job_exit_info(jid)[0] == C.EXIT_ABORTED
    assert sched.get_job_status(jid) == C.FAILED
    assert sched.get_job_error(jid) == "Slurm ended the job: TIMEOUT"


def test_slurm_drmaa_kill_of_a_held_job_never_ran(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    [jid] = submit(sched, Job(command=["x"], hold=True))
    assert sched.get_job_status(jid) == C.USER_ON_HOLD
    drms.on_terminate_running = None
    sched.kill_job(jid)
    drms.end(jid, slurm_info(0))  # slurm-drmaa: a cancelled held job "exited 0"
    slurm.lines[jid] = record(jid, "CANCELLED by 1000", "0:0", node="None assigned")
    assert sched.get_job_exit_info(jid) == (C.EXIT_NOTRUN, None, None, None)


# -- faults (testing.faults.inject_drmaa_faults) and what the backend does about them ----------------

class FakeSge:
    """``qstat -j NAME`` / ``qacct -j NAME`` / ``qdel NAME`` answered from the fake DRMS's templates."""

    def __init__(self, drms: FakeDRMS, down: bool = False, no_accounting_file: bool = False) -> None:
        self.drms, self.down, self.argvs = drms, down, []  # type: list[list[str]]
        self.no_accounting_file = no_accounting_file  # before SGE's first job end (recorded, 8.1.9)

    def run(self, argv: Any, **_: Any) -> CommandResult:
        self.argvs.append(list(argv))
        if self.down:
            raise CommandError(list(argv), 1, "error: unable to contact qmaster")
        cmd, name = argv[0], argv[-1]
        ids = [j for j, t in self.drms.templates.items() if t.get("jobName") == name]
        if cmd == "qstat" and ids:
            number = ids[0].partition(".")[0]  # an array's tasks: its job number
            return CommandResult(tuple(argv), 0, f"job_number:                 {number}\n", "", 0.0)
        if cmd == "qstat":
            return CommandResult(tuple(argv), 1, "", f"Following jobs do not exist: \n{name}\n", 0.0)
        if self.no_accounting_file:
            return CommandResult(tuple(argv), 1, "", "error: /var/lib/gridengine/default/common/accounting: "
                                 "No such file or directory\n", 0.0)
        return CommandResult(tuple(argv), 1, "", f"error: job name {name} not found\n", 0.0)


def faulty(sched: dm.DrmaaScheduler, drms: FakeDRMS, kinds: tuple[str, ...], rate: float = 1.0,
           calls: tuple[str, ...] = (), seed: int = 1, sge: FakeSge | None = None) -> FaultPlan:
    sched.call_backoff = 0.0
    sched.runner.backoff = 0.0
    sched.runner.run = (sge or FakeSge(drms)).run  # type: ignore[method-assign]
    return inject_drmaa_faults(sched, FaultPlan(rate=rate, kinds=kinds, seed=seed, hang_seconds=0.01,
                                                commands=[f"drmaa.{c}" for c in calls]))


def test_drmaa_fault_kinds(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    errors: Any = sys.modules["drmaa"].errors
    with pytest.raises(ValueError, match="truncate"):
        inject_drmaa_faults(sched, FaultPlan(kinds=("truncate",)))
    session = sched.open_session()
    jt = session.createJobTemplate()
    jt.remoteCommand, jt.args = "/bin/true", []
    for kind, reaches in (("fail", False), ("hang", False), ("lost", True)):
        plan = FaultPlan(rate=1.0, kinds=(kind,), hang_seconds=0.01)
        host = SimpleNamespace(drmaa=sys.modules["drmaa"], session_wrapper=None)  # the hooks it uses
        inject_drmaa_faults(host, plan)
        faulty_session = host.session_wrapper(session)
        before = len(drms.templates)
        with pytest.raises(errors.DrmCommunicationException, match=f"injected {kind}"):
            faulty_session.runJob(jt)
        assert len(drms.templates) - before == int(reaches), kind
        with pytest.raises(errors.DrmCommunicationException):
            faulty_session.wait("1", 0)
        assert plan.counts == ({"lost": 1, "fail": 1} if kind == "lost" else {kind: 2})  # wait: never lost
        assert faulty_session.createJobTemplate() is not None  # not a DRMS call: never faulted


def test_lost_runjob_is_found_by_its_name(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    one_by_one(sched)
    plan = faulty(sched, drms, ("lost",), calls=("runJob",))
    ids = submit(sched, Job(command=["x"], name="n"), Job(command=["x"]))
    assert sorted(ids) == sorted(drms.templates) and len(ids) == 2  # tracked, not submitted twice
    assert plan.counts == {"lost": 2}
    drms.end(ids[0], info(3))
    assert sched.get_job_exit_info(ids[0])[:3] == (C.FINISHED_REGULARLY, 3, None)


def test_failed_runjob_is_retried_once_absent(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    one_by_one(sched)
    plan = faulty(sched, drms, ("fail", "hang"), rate=0.5, calls=("runJob",), seed=3)
    ids = sched.job_submission([Job(command=["x"]) for _ in range(30)])
    submitted = [i for i in ids if i is not None]
    assert sorted(submitted, key=int) == sorted(drms.templates, key=int)  # each once, refused ones absent
    assert 20 < len(submitted) < 30 and plan.injected > 15
    assert all("3 attempts; SGE has no job named job.soma" in (e or "")
               for i, e in zip(ids, sched.last_submission_errors, strict=True) if i is None)


def test_runjob_failing_every_time_is_refused_with_the_reason(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                              tmp_path: Path) -> None:
    faulty(sched, drms, ("fail",), calls=("runJob",))
    assert sched.job_submission([Job(command=["x"])]) == [None]
    [reason] = sched.last_submission_errors
    assert reason and "cannot submit" in reason and "injected failure" in reason and "3 attempts" in reason
    assert drms.templates == {}
    assert not [p for p in (tmp_path / "scripts").rglob("*") if p.is_file()]  # script removed


def test_lost_runjob_while_sge_cannot_be_asked(sched: dm.DrmaaScheduler, drms: FakeDRMS, tmp_path: Path) -> None:
    sge = FakeSge(drms, down=True)
    faulty(sched, drms, ("lost",), calls=("runJob",), sge=sge)
    assert sched.job_submission([Job(command=["x"])]) == [None]
    [reason] = sched.last_submission_errors
    assert reason and "unknown" in reason and "unable to contact qmaster" in reason
    assert sge.argvs[-1][0] == "qdel" and sge.argvs[-1][1] == drms.templates["1"]["jobName"]
    assert not [p for p in (tmp_path / "scripts").rglob("*") if p.is_file()]  # if it runs, it runs nothing


class FakeSlurmByName:
    """``squeue --name`` / ``sacct --name`` / ``scancel --name`` answered from the fake DRMS's templates;
    ``purged`` jobs have left the controller (only accounting has them)."""

    def __init__(self, drms: FakeDRMS, down: bool = False) -> None:
        self.drms, self.down, self.purged, self.argvs = drms, down, set(), []  # type: set[str], list[list[str]]

    def run(self, argv: Any, **_: Any) -> CommandResult:
        self.argvs.append(list(argv))
        if self.down:
            raise CommandError(list(argv), 1, "slurm_load_jobs error: Unable to contact slurm controller")
        name = next(a.split("=", 1)[1] for a in argv if a.startswith("--name="))
        ids = [j for j, t in self.drms.templates.items() if t.get("jobName") == name]
        if argv[0] == "squeue":  # -o %A: an array's own id
            ids = list(dict.fromkeys(j.partition("_")[0] for j in ids if j not in self.purged))
        return CommandResult(tuple(argv), 0, "".join(f"{j}\n" for j in ids), "", 0.0)


def slurm_drmaa(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    drms.implementation = "DRMAA for Slurm 1.1.6"
    sched.sleep()
    sched.wake()


def test_slurm_lost_runjob_is_found_by_its_name(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    slurm_drmaa(sched, drms)
    fake = FakeSlurmByName(drms)
    plan = faulty(sched, drms, ("lost",), calls=("runJob",), sge=fake)  # type: ignore[arg-type]
    ids = submit(sched, Job(command=["x"], name="n"))
    assert ids == list(drms.templates) and plan.counts == {"lost": 1}
    assert drms.templates[ids[0]]["jobName"].startswith("n.soma")
    assert fake.argvs[0][:4] == ["squeue", "-h", "-t", "all"]
    fake.purged.add(ids[0])  # ended and gone from squeue: sacct still has it
    fake.argvs.clear()
    plan2 = faulty(sched, drms, ("lost",), calls=("runJob",), sge=fake)  # type: ignore[arg-type]
    more = submit(sched, Job(command=["x"]))
    assert len(drms.templates) == 2 and plan2.counts == {"lost": 1} and more[0] in drms.templates
    fake.purged.add(more[0])
    assert sched.family.job_named(drms.templates[more[0]]["jobName"], 0.0) == more[0]
    assert fake.argvs[-1][0] == "sacct" and "-X" in fake.argvs[-1]


def test_slurm_failed_runjob_is_retried_while_slurm_has_no_such_job(sched: dm.DrmaaScheduler,
                                                                      drms: FakeDRMS) -> None:
    slurm_drmaa(sched, drms)
    fake = FakeSlurmByName(drms)
    faulty(sched, drms, ("fail",), calls=("runJob",), sge=fake)  # type: ignore[arg-type]
    assert sched.job_submission([Job(command=["x"])]) == [None]
    assert "3 attempts; Slurm has no job named job.soma" in (sched.last_submission_errors[0] or "")
    assert [a[0] for a in fake.argvs] == ["squeue", "sacct"] * 3 and drms.templates == {}


def test_slurm_lost_runjob_deleted_by_name_when_slurm_cannot_tell(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                                   tmp_path: Path) -> None:
    slurm_drmaa(sched, drms)
    down = FakeSlurmByName(drms, down=True)
    faulty(sched, drms, ("lost",), calls=("runJob",), sge=down)  # type: ignore[arg-type]
    assert sched.job_submission([Job(command=["x"])]) == [None]
    reason = sched.last_submission_errors[0] or ""
    assert "whether Slurm has the job is unknown" in reason and "Unable to contact slurm controller" in reason
    assert down.argvs[-1] == ["scancel", f"--name={drms.templates['1']['jobName']}"]
    assert not [p for p in (tmp_path / "scripts").rglob("*") if p.is_file()]  # if it runs, it runs nothing


def test_other_implementations_do_not_retry_a_submission(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    drms.implementation = "PBS DRMAA v. 1.0.19"
    ds.SESSION.implementation = drms.implementation
    faulty(sched, drms, ("lost",), calls=("runJob",))
    assert sched.job_submission([Job(command=["x"])]) == [None]
    assert "runs nothing: its script is removed" in (sched.last_submission_errors[0] or "")
    assert len(drms.templates) == 1 and not os.path.exists(drms.templates["1"]["args"][0])


def test_polling_under_faults_loses_no_end(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = submit(sched, *[Job(command=["x"]) for _ in range(60)])
    plan = faulty(sched, drms, ("fail", "hang", "lost"), rate=0.3, calls=("jobStatus", "wait"), seed=5)
    for n, jid in enumerate(ids):
        drms.end(jid, info(n % 4))
    for _ in range(200):
        status = sched.get_jobs_status(ids)
        if all(s == C.DONE for s in status.values()):
            break
    infos = sched.get_jobs_exit_info(ids)
    assert [infos[j][:3] for j in ids] == [(C.FINISHED_REGULARLY, n % 4, None) for n in range(60)]
    assert plan.injected > 20 and sched._reaped == {}


def test_drms_down_every_job_undetermined_then_aborted(drms: FakeDRMS, tmp_path: Path) -> None:
    s = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path), "STATUS_CACHE_SECONDS": "0",
                                  "UNDETERMINED_TIMEOUT": "0.3", "ARRAYS": "never"})
    assert isinstance(s, dm.DrmaaScheduler)
    s.call_backoff = 0.0
    ids = submit(s, Job(command=["x"]), Job(command=["x"]), Job(command=["x"]))
    drms.status_error = sys.modules["drmaa"].errors.DrmCommunicationException("code 2: qmaster down")
    assert set(s.get_jobs_status(ids).values()) == {C.UNDETERMINED}
    assert [c for c in drms.calls if c.startswith("jobStatus")] == ["jobStatus 1"] * 3  # 3 tries, not 9
    time.sleep(0.35)
    assert set(s.get_jobs_status(ids).values()) == {C.FAILED}
    assert all(s.get_job_exit_info(j)[0] == C.EXIT_ABORTED for j in ids)
    assert all("qmaster down" in (s.get_job_error(j) or "") for j in ids)
    s.clean()


QACCT = """==============================================================
qname        all.q
hostname     sge
jobname      job.soma0123
jobnumber    {n}
failed       {failed}
exit_status  {code}
start_time   Tue Nov 24 23:10:01 2026
==============================================================
"""


def test_sge_accounting_corrects_an_end_drmaa_calls_aborted() -> None:
    """After a qmaster restart libdrmaa calls the ends it missed aborted: qacct has the truth."""
    from soma_schedulers.batch import Observation
    from soma_schedulers.schedulers import drmaa_scheduler as dm

    record = dm.parse_qacct(QACCT.format(n=7, failed="100", code="0") + QACCT.format(n=7, failed="0", code="2"))
    assert (record["jobnumber"], record["failed"], record["exit_status"]) == ("7", "0", "2")
    cases = {
        ("0", "2"): (2, None, False, None),
        ("0", "143"): (None, 15, False, None),  # the shell's 128 + signal
        ("100 : assumedly after job", "137"): (None, None, True, "SGE accounting: failed 100 : assumedly after job"),
    }
    for (failed, code), (exit_code, sig, cancelled, aborted) in cases.items():
        obs = Observation(C.DONE, ended=True, cancelled=True, started=None)
        dm.apply_qacct("7", obs, dm.parse_qacct(QACCT.format(n=7, failed=failed, code=code)))
        assert (obs.exit_code, obs.term_sig, obs.cancelled, obs.aborted) == (exit_code, sig, cancelled, aborted)


# -- attach: jobs of other sessions (drmaa_attach) -------------------------------------------------

def qacct_record(n: str, failed: str, code: str) -> str:
    """``qacct -j N`` as SGE 8.1.9 prints it (the fields drmaa_attach reads; recorded on the image)."""
    return (f"==============================================================\nqname        all.q\nowner        alice\n"
            f"jobnumber    {n}\nstart_time   Sun Nov 29 19:45:38 2026\nend_time     Sun Nov 29 19:45:43 2026\n"
            f"failed       {failed}\nexit_status  {code}\nru_wallclock 5s\ncpu          0.008s\nmaxvmem      4.953MB\n")


def sge_commands(records: dict[str, str], zombies: tuple[str, ...] = ()) -> Any:
    """``qacct -j N`` answered from ``records``, ``qstat -s z`` listing ``zombies``."""
    from soma_schedulers.testing.fakes import ScriptedRunner

    def qacct(call: Any) -> Any:
        n = call.argv[-1]
        return records.get(n, (1, "", f"error: job id {n} not found"))

    zlist = "job-ID  prior   name  user  state\n------\n" + "".join(f"  {z} 0.0 STDIN alice z 11/29/2026\n" for z in zombies)
    return ScriptedRunner({"qacct": qacct, "qstat": zlist})


def test_sge_attach_status_from_jobstatus_ends_from_qacct(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # jobs of another session: 1 runs, 2 is held; 3, 4 ended (4 qdel'd while running); 5 deleted while held
    drms.states.update({"1": C.RUNNING, "2": C.USER_ON_HOLD})
    fake = sge_commands({"3": qacct_record("3", "0", "3"), "4": qacct_record("4", "100 : assumedly after job", "137")},
                        zombies=("3", "4", "5"))
    sched.runner = fake
    with pytest.raises(UnknownJobError, match=r"SGE does not know job 999999: .*finished_jobs"):
        sched.attach(["1", "999999"])
    with pytest.raises(UnknownJobError):
        sched.get_job_status("1")  # none attached
    sched.attach(["1", "2", "3", "4", "5"])
    assert sched.get_jobs_status(["1", "2", "3", "4", "5"]) == {
        "1": C.RUNNING, "2": C.USER_ON_HOLD, "3": C.DONE, "4": C.FAILED, "5": C.UNDETERMINED}
    assert sched.get_job_exit_info("3") == (C.FINISHED_REGULARLY, 3, None, b"cput=00:00:00 vmem=5071kb walltime=00:00:05")
    assert sched.get_job_exit_info("4")[:3] == (C.USER_KILLED, None, None)  # SGE records no deleter: its owner
    assert not any(c.startswith("wait") for c in drms.calls)  # wait() answers only for its own session
    # 5 has no record: SGE writes none for a job deleted before it ran (checked again after the grace)
    monkeypatch.setattr(da, "UNRECORDED_GRACE", 0.0)
    assert sched.get_job_exit_info("5") == (C.EXIT_NOTRUN, None, None, None)
    # 1 ends, deleted by someone (SIGKILL: 137, failed 100); 2 is killed here while held
    del drms.states["1"]
    fake.script("qacct", qacct_record("1", "100 : assumedly after job", "137"), when=lambda c: c.argv[-1] == "1")
    sched.kill_job("2")
    assert sched.get_jobs_status(["1", "2"]) == {"1": C.FAILED, "2": C.FAILED}
    assert sched.get_job_exit_info("1")[0] == C.USER_KILLED
    assert sched.get_job_exit_info("2") == (C.EXIT_NOTRUN, None, None, None)
    assert "control 2 terminate" in drms.calls


def test_sge_record_ends() -> None:
    def end(failed: str, code: str) -> tuple[object, ...]:
        obs = da.sge_end(da.parse_qacct(qacct_record("7", failed, code)))
        return obs.exit_code, obs.term_sig, obs.cancelled, obs.aborted

    assert end("0", "0") == (0, None, False, None)
    assert end("0", "143") == (None, 15, False, None)  # the shell's 128 + s
    assert end("100 : assumedly after job", "137") == (None, None, True, None)  # qdel (or any SIGKILL)
    assert end("100 : assumedly after job", "143") == (None, 15, False, None)
    assert end("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137") == (
        137, None, False, "SGE accounting: failed 37  : qmaster enforced h_rt, h_cpu, or h_vmem limit")


def test_slurm_drmaa_attach(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    # sacct -o JobIDRaw,State,ExitCode,Start,ElapsedRaw,TotalCPU,MaxRSS,NodeList,UID (recorded on 22.05)
    slurm.lines = {
        "1": ["1|RUNNING|0:0|2026-11-29T19:43:51|12|00:00:00||slurm|1000"],
        "2": ["2|COMPLETED|0:0|2026-11-29T19:43:48|0|00:00.001||slurm|1000"],
        "3": ["3|FAILED|3:0|2026-11-29T19:43:49|0|00:00.001||slurm|1000"],
        "4": ["4|CANCELLED by 0|0:0|2026-11-29T19:43:50|8|00:00.003||slurm|1000"],
    }
    drms.states.update({"1": C.RUNNING, "9": C.FAILED, "5": C.FAILED})  # slurm-drmaa: "failed" for any id
    slurm.squeue = {"5"}  # ended, not in the accounting yet
    with pytest.raises(UnknownJobError, match="Slurm does not know job 9:"):
        sched.attach(["1", "9"])
    assert slurm.calls[-1][:5] == ["squeue", "-h", "-t", "all", "-j"] and slurm.calls[-1][5] == "9"
    sched.attach(["5"])
    assert sched.get_job_status("5") == C.UNDETERMINED  # known: its record is awaited
    sched.attach(["1", "2", "3", "4"])
    assert slurm.calls[-1][4] == "1,2,3,4" and slurm.calls[-1][-1].endswith(",UID")  # one sacct, owners too
    assert [sched.get_job_exit_info(i)[:2] for i in "234"] == [
        (C.FINISHED_REGULARLY, 0), (C.FINISHED_REGULARLY, 3), (C.EXIT_ABORTED, 0)]
    assert sched.get_job_error("4") == "cancelled by user 0, not by the job's owner (user 1000)"
    assert sched.get_job_status("1") == C.RUNNING
    del drms.states["1"]
    slurm.lines["1"] = ["1|CANCELLED by 1000|0:0|2026-11-29T19:43:51|20|00:00:00||slurm|1000"]
    assert sched.get_job_exit_info("1")[:3] == (C.USER_KILLED, None, None)
    assert not any(c.startswith("wait") for c in drms.calls)


def test_clean_keeps_the_scripts_of_jobs_not_seen_to_end(drms: FakeDRMS, tmp_path: Path) -> None:
    """A job outlives the process that submitted it (another attaches to it): its script must too."""
    s = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path / "scripts"), "STATUS_CACHE_SECONDS": "0",
                                  "ARRAYS": "never"})
    assert isinstance(s, dm.DrmaaScheduler)
    ended, queued = submit(s, Job(command=["x"]), Job(command=["y"]))
    scripts = {j: drms.templates[j]["args"][0] for j in (ended, queued)}
    drms.end(ended, info(0))
    assert s.get_job_status(ended) == C.DONE
    s.clean()
    assert not Path(scripts[ended]).exists() and Path(scripts[queued]).exists()
    s2 = build_scheduler("drmaa", {"OPTION_TMP_DIR": str(tmp_path / "scripts2"), "STATUS_CACHE_SECONDS": "0"})
    assert isinstance(s2, dm.DrmaaScheduler)
    [jid] = submit(s2, Job(command=["x"]))
    drms.end(jid, info(0))
    assert s2.get_job_status(jid) == C.DONE
    s2.clean()
    assert list((tmp_path / "scripts2").iterdir()) == []  # every job ended: the directory goes


# -- job arrays (runBulkJobs) ---------------------------------------------------------------------

def test_a_list_goes_as_one_array_each_task_its_own_job(sched: dm.DrmaaScheduler, drms: FakeDRMS,
                                                         tmp_path: Path) -> None:
    drms.run_scripts = True
    out = [tmp_path / f"out{n}" for n in range(3)]
    jobs = [Job(command=["/bin/sh", "-c", 'printf "%s|%s" "$1" "$K"', "sh", arg], env={"K": f"k{n}"},
                stdout_file=str(out[n]), name=f"n{n}") for n, arg in enumerate(["a b", "$x", "é"])]
    ids = submit(sched, *jobs)
    assert ids == ["1.1", "1.2", "1.3"] and [c for c in drms.calls if c.startswith("run")] == ["runBulkJobs 1-3:1"]
    assert [p.read_text() for p in out] == ["a b|k0", "$x|k1", "é|k2"]
    [path] = {drms.templates[j]["args"][0] for j in ids}
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"
    # an SGE array has one name: the jobs' differ, so it is the default one (with the token)
    assert re.fullmatch(r"job\.soma[0-9a-f]{16}", drms.templates[ids[0]]["jobName"])
    assert sched.get_jobs_exit_info(ids)[ids[0]][:3] == (C.FINISHED_REGULARLY, 0, None)
    assert not Path(path).exists()


def test_the_array_script_is_removed_when_every_task_ended(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = submit(sched, Job(command=["x"], name="same"), Job(command=["y"], name="same"))
    path = drms.templates[ids[0]]["args"][0]
    assert drms.templates[ids[1]]["args"][0] == path and drms.templates[ids[0]]["jobName"].startswith("same.soma")
    drms.end(ids[0], info(0))
    assert sched.get_job_status(ids[0]) == C.DONE and Path(path).exists()
    drms.end(ids[1], info(1))
    assert sched.get_job_exit_info(ids[1])[:3] == (C.FINISHED_REGULARLY, 1, None) and not Path(path).exists()


def test_array_task_launch_errors_are_per_task(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    drms.run_scripts = True
    ids = submit(sched, Job(command=["/bin/true"]), Job(command=["/nonexistent/prog"]), Job(command=["/bin/true"]))
    assert sched.get_jobs_status(ids) == dict(zip(ids, [C.DONE, C.FAILED, C.DONE], strict=True))
    assert sched.get_job_error(ids[1]) == "command not found: /nonexistent/prog"
    assert sched.get_job_error(ids[0]) is None and sched.get_job_error(ids[2]) is None
    assert os.listdir(sched._script_dir()) == []  # script and launch file gone


def test_array_keys_split_the_list(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    jobs = [Job(command=["a"]), Job(command=["b"], hold=True), Job(command=["c"]), Job(command=["d"], queue="q2"),
            Job(command=["e"], hold=True), Job(command=["f"], queue="q2", native_specification="-l h=x")]
    ids = submit(sched, *jobs)
    assert ids == ["1.1", "2.1", "1.2", "3", "2.2", "4"]  # arrays of 2; the last two alone
    assert drms.states["2.1"] == C.USER_ON_HOLD and drms.templates["3"]["nativeSpecification"] == "-q q2"


def test_array_tasks_are_killed_one_by_one(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = submit(sched, *[Job(command=["x"], hold=True) for _ in range(3)])
    drms.states[ids[2]] = C.RUNNING
    sched.kill_job(ids[0])
    sched.kill_job(ids[2])
    assert [c for c in drms.calls if c.startswith("control")] == [f"control {ids[0]} terminate",
                                                                    f"control {ids[2]} terminate"]
    infos = sched.get_jobs_exit_info(ids)
    assert infos[ids[0]][0] == C.EXIT_NOTRUN and infos[ids[2]][0] == C.USER_KILLED
    assert sched.get_job_status(ids[1]) == C.USER_ON_HOLD


def test_refused_array_fails_exactly_its_jobs(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    ids = sched.job_submission([Job(command=["x"], queue="nosuch"), Job(command=["x"], queue="nosuch"),
                                Job(command=["x"]), Job(command=["y"])])
    assert ids == [None, None, "1.1", "1.2"]
    errors = sched.last_submission_errors
    assert errors[0] == errors[1] and "DRMAA refused the array of 2 jobs" in (errors[0] or "")
    assert 'unknown queue "nosuch"' in (errors[0] or "") and errors[2:] == [None, None]
    assert len(os.listdir(sched._script_dir())) == 1  # the refused array's script is removed


def test_lost_runbulkjobs_is_found_by_its_name(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    plan = faulty(sched, drms, ("lost",), calls=("runBulkJobs",))
    ids = submit(sched, *[Job(command=["x"]) for _ in range(3)])
    assert ids == ["1.1", "1.2", "1.3"] and plan.counts == {"lost": 1} and len(drms.templates) == 3
    drms.end(ids[1], info(4))
    assert sched.get_job_exit_info(ids[1])[:3] == (C.FINISHED_REGULARLY, 4, None)


def test_lost_runbulkjobs_while_sge_cannot_be_asked(sched: dm.DrmaaScheduler, drms: FakeDRMS, tmp_path: Path) -> None:
    sge = FakeSge(drms, down=True)
    faulty(sched, drms, ("lost",), calls=("runBulkJobs",), sge=sge)
    assert sched.job_submission([Job(command=["x"]), Job(command=["y"])]) == [None, None]
    reason = sched.last_submission_errors[0] or ""
    assert sched.last_submission_errors[1] == reason and reason.startswith("cannot submit the array of 2 jobs")
    assert "whether SGE has the array is unknown" in reason and "unable to contact qmaster" in reason
    assert sge.argvs[-1] == ["qdel", drms.templates["1.1"]["jobName"]]
    assert not [p for p in (tmp_path / "scripts").rglob("*") if p.is_file()]  # if it runs, it runs nothing


def test_failing_runbulkjobs_is_retried_while_sge_has_no_such_array(sched: dm.DrmaaScheduler,
                                                                     drms: FakeDRMS) -> None:
    faulty(sched, drms, ("fail",), calls=("runBulkJobs",))
    assert sched.job_submission([Job(command=["x"]), Job(command=["y"])]) == [None, None]
    assert "(3 attempts; SGE has no job named job.soma" in (sched.last_submission_errors[0] or "")
    assert drms.templates == {}


def test_other_families_submit_one_by_one(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    drms.implementation = "PBS DRMAA v. 1.0.19"
    ds.SESSION.implementation = drms.implementation
    assert submit(sched, Job(command=["x"]), Job(command=["y"])) == ["1", "2"]
    assert not any(c.startswith("runBulkJobs") for c in drms.calls)


def test_sge_array_limits(sched: dm.DrmaaScheduler, drms: FakeDRMS, monkeypatch: pytest.MonkeyPatch) -> None:
    def qconf(argv: Any, **_: Any) -> CommandResult:
        return CommandResult(tuple(argv), 0, "max_aj_instances             2000\nmax_aj_tasks                 2\n", "", 0.0)

    sched.runner.run = qconf  # type: ignore[method-assign]
    assert submit(sched, *[Job(command=["x"]) for _ in range(5)]) == ["1.1", "1.2", "2.1", "2.2", "3"]
    size = len(dscripts.build_script(Job(command=["x"]), report=dscripts.task_report("SGE_TASK_ID"))) + 16
    monkeypatch.setattr(dscripts, "MAX_ARRAY_SCRIPT_BYTES", 3 * size + 10)  # 3 jobs' scripts
    sched.config = dataclasses.replace(sched.config, array_min_size=1)
    assert sched.array_chunks([Job(command=["x"])] * 7) == [3, 3, 1]


def test_sge_task_accounting() -> None:
    assert da.qacct_argv("12") == ["qacct", "-j", "12"] and da.qacct_argv("12.3") == ["qacct", "-j", "12", "-t", "3"]
    record = da.parse_qacct("jobnumber    12\ntaskid       3\nfailed       0\n")
    assert da.is_record_of(record, "12.3") and not da.is_record_of(record, "12.4") and da.is_record_of(record, "12")


def test_slurm_lost_runbulkjobs_is_found_by_its_name(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    slurm_drmaa(sched, drms)
    fake = FakeSlurmByName(drms)
    sched.max_array_size = lambda: 1000  # type: ignore[method-assign]
    plan = faulty(sched, drms, ("lost",), calls=("runBulkJobs",), sge=fake)  # type: ignore[arg-type]
    assert submit(sched, Job(command=["x"]), Job(command=["y"])) == ["1_1", "1_2"] and plan.counts == {"lost": 1}
    assert fake.argvs[0][-2:] == ["-o", "%A"]
    fake.purged.update(drms.templates)  # gone from squeue: sacct's JobID 1_1 names the array
    assert sched.family.job_named(drms.templates["1_1"]["jobName"], 0.0) == "1"
    assert fake.argvs[-1][0] == "sacct" and fake.argvs[-1][-2:] == ["-o", "JobID"]


def test_slurm_array_limit(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    assert sched.max_array_size() == 1000  # MaxArraySize 1001: tasks 1 to 1000
    ids = submit(sched, Job(command=["x"]), Job(command=["y"]))
    assert ids == ["1_1", "1_2"] and drms.calls.count("runBulkJobs 1-2:1") == 1


def test_slurm_pending_task_cancelled_vanishes(sched: dm.DrmaaScheduler, drms: FakeDRMS, slurm: FakeSacct) -> None:
    """Slurm drops a pending array task that is cancelled; slurm-drmaa keeps its last state."""
    ids = submit(sched, Job(command=["x"], hold=True), Job(command=["y"], hold=True), Job(command=["z"]))
    drms.states[ids[2]] = C.RUNNING
    assert sched.get_job_status(ids[0]) == C.USER_ON_HOLD
    sched.kill_job(ids[0])
    drms.states[ids[0]] = C.USER_ON_HOLD  # what slurm-drmaa 1.1.6 keeps saying
    drms.infos.pop(ids[0], None)
    slurm.squeue = {ids[1], ids[2]}  # squeue -r lists the others, not the cancelled task
    assert sched.get_job_exit_info(ids[0]) == (C.EXIT_NOTRUN, None, None, None)
    assert sched.get_job_status(ids[1]) == C.USER_ON_HOLD
    assert any(c[:3] == ["squeue", "-h", "-r"] and c[6] == "1" for c in slurm.calls)


def test_sge_lookup_before_any_job_ended_means_not_found(sched: dm.DrmaaScheduler, drms: FakeDRMS) -> None:
    """qacct without an accounting file yet (no job of the cell has ended) says no job has the
    name: a runJob that did not reach SGE is tried again, not refused as 'unknown'."""
    faulty(sched, drms, ("fail",), calls=("runJob",), rate=0.5, seed=3, sge=FakeSge(drms, no_accounting_file=True))
    ids = [i for n in range(6) for i in submit(sched, Job(command=["x"], name=f"n{n}"))]  # one runJob each
    assert None not in ids and len(set(ids)) == 6, sched.last_submission_errors
