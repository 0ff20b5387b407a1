"""Unit tests of the Slurm backend's reading of Slurm's life events (docs/contract.md, "Life events"):
an id with several accounting records (``sacct -D``), from a requeued job's runs or from a job given
the id again after the controller lost its state. The records are those seen on the Slurm 22.05
image (tests/containers/test_events_slurm.py), the tokens shortened."""

from __future__ import annotations

import pytest

from soma_schedulers import constants as C
from soma_schedulers.config import SchedulerConfig
from soma_schedulers.job import Job
from soma_schedulers.schedulers import slurm_scheduler as slurm
from soma_schedulers.schedulers.slurm_accounting import SacctJob, SacctLine, pick_record
from soma_schedulers.testing.fakes import ScriptedRunner

# sacct -D -o JobIDRaw,Submit,State,ExitCode,Start,ElapsedRaw,TotalCPU,MaxRSS,NCPUS,NodeList,Reason,Comment
REQUEUED = """\
2|2026-11-30T02:11:17|REQUEUED|0:0|2026-11-30T02:11:19|0|00:00:00||1|slurm|None|{token}
2.batch|2026-11-30T02:11:19|CANCELLED|0:15|2026-11-30T02:11:19|0|00:00:00||1|slurm||
2|2026-11-30T02:11:19|FAILED|7:0|2026-11-30T02:13:23|0|00:00:00||1|slurm|None|{token}
2.batch|2026-11-30T02:13:23|FAILED|7:0|2026-11-30T02:13:23|0|00:00:00||1|slurm||
"""
#: Job 6 (A) was running when slurmctld restarted with its state wiped: slurmdbd marked it
#: CANCELLED (no "by"); then a new job (B) was given id 6 and exited 5.
OLD_A = """\
6|2026-11-30T02:04:55|CANCELLED|0:0|2026-11-30T02:04:56|8|00:00:00||1|slurm|None|{a}
6.batch|2026-11-30T02:04:56|CANCELLED|0:0|2026-11-30T02:04:56|8|00:00:00||1|slurm||
"""
NEW_B = """\
6|2026-11-30T02:05:16|FAILED|5:0|2026-11-30T02:05:16|3|00:00:00||1|slurm|None|{b}
6.batch|2026-11-30T02:05:16|FAILED|5:0|2026-11-30T02:05:16|3|00:00:00||1|slurm||
"""


def _submitted(job_id: str, **answers: object) -> tuple[slurm.SlurmScheduler, ScriptedRunner, str]:
    """A scheduler that submitted one job (sbatch answers ``job_id``), its fake runner, the token."""
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, undetermined_timeout=60))
    fake = ScriptedRunner({"sbatch": f"{job_id}\n", **answers})  # type: ignore[arg-type]
    s.runner = fake
    assert s.job_submission([Job(command=["true"])]) == [job_id]
    token = next(a for a in fake.calls_of("sbatch")[0].argv if a.startswith("--comment=")).split("=", 1)[1]
    return s, fake, token


def _end(s: slurm.SlurmScheduler, job_id: str) -> tuple[object, ...]:
    return (s.get_job_status(job_id), *s.get_job_exit_info(job_id)[:3])


@pytest.mark.parametrize("first_run", ["REQUEUED", "PREEMPTED", "NODE_FAIL"])
def test_requeued_job_ends_with_its_last_run(first_run: str) -> None:
    """An administrator's requeue, a preemption, a lost node: the first run's record (an end state
    for PREEMPTED and NODE_FAIL) is not the job's end, the rerun's is."""
    s, fake, token = _submitted("2")
    fake.script("squeue", f"2|2026-11-30T02:11:17|RUNNING|None|x|{token}\n")
    assert s.get_job_status("2") == C.RUNNING
    fake.script("squeue", f"2|2026-11-30T02:11:19|PENDING|BeginTime|x|{token}\n")
    assert s.get_job_status("2") == C.QUEUED_ACTIVE
    fake.script("squeue", "")
    fake.script("sacct", REQUEUED.format(token=token).replace("REQUEUED", first_run))
    assert _end(s, "2") == (C.DONE, C.FINISHED_REGULARLY, 7, None)
    assert "-D" in fake.calls_of("sacct")[0].argv  # every record of the id


def test_new_job_given_an_old_id_never_takes_the_old_record() -> None:
    """B (id 6 again) ended, but slurmdbd lists only A's record so far: B is not ended with it,
    then gets its own."""
    b, fake, token = _submitted("6")
    fake.script("squeue", f"6|2026-11-30T02:05:16|RUNNING|None|x|{token}\n")
    assert b.get_job_status("6") == C.RUNNING
    fake.script("squeue", "")
    for comment in ("soma_token:a", ""):  # accounting with and without the jobs' Comments
        fake.script("sacct", OLD_A.format(a=comment))
        assert b.get_job_status("6") == C.UNDETERMINED
    fake.script("sacct", OLD_A.format(a="soma_token:a") + NEW_B.format(b=token))
    assert _end(b, "6") == (C.DONE, C.FINISHED_REGULARLY, 5, None)


def test_old_job_never_takes_the_record_of_the_new_one() -> None:
    """A (id 6) vanished with the controller's state; squeue then shows B under id 6: A is not
    running, and of the id's records A gets its own (slurmdbd marked it CANCELLED), with or without
    the Comments in accounting."""
    for stored in (True, False):
        a, fake, token = _submitted("6")
        fake.script("squeue", f"6|2026-11-30T02:04:55|RUNNING|None|x|{token}\n")
        assert a.get_job_status("6") == C.RUNNING
        fake.script("squeue", "6|2026-11-30T02:05:16|RUNNING|None|x|soma_token:b\n")
        fake.script("sacct", OLD_A.format(a=token if stored else "") + NEW_B.format(b="soma_token:b" if stored else ""))
        assert _end(a, "6")[:2] == (C.FAILED, C.EXIT_ABORTED), stored
        assert a.get_job_error("6") == "cancelled outside this scheduler"


def test_attach_of_a_reused_id_takes_the_newest_job_whole() -> None:
    """Without a token (another process's job), the newest job under the id, with its own steps."""
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0))
    both = OLD_A.format(a="soma_token:a") + NEW_B.format(b="soma_token:b")
    with_uid = "".join(line.rsplit("|", 1)[0] + "|1000|" + line.rsplit("|", 1)[1] + "\n"
                       for line in both.splitlines())  # attach asks for UID before the Comment
    s.runner = ScriptedRunner({"squeue": "", "sacct": with_uid})
    s.attach(["6"])
    assert _end(s, "6") == (C.DONE, C.FINISHED_REGULARLY, 5, None)
    assert s.get_job_exit_info("6")[3] == b"cput=00:00:00 ncpus=1 walltime=00:00:03"  # B's, not A's 8 s


def test_pick_record_rules() -> None:
    def rec(submit: str, comment: str) -> SacctJob:
        return SacctJob(SacctLine({"JobIDRaw": "6", "Submit": submit, "Comment": comment}))

    a, b = rec("2026-11-30T02:04:55", "soma_token:a"), rec("2026-11-30T02:05:16", "soma_token:b")
    assert pick_record([a, b]) is b and pick_record([b, a]) is b  # newest by Submit
    assert pick_record([a, b], token="soma_token:a") is a
    assert pick_record([a, b], since="2026-11-30T02:05:00") is b
    assert pick_record([a], since="2026-11-30T02:05:00") is None
    assert pick_record([a, b], before="2026-11-30T02:05:16") is a
    launch = rec("2026-11-30T02:05:16", "soma_launch_error: command not found: x")  # no token to compare
    assert pick_record([a, launch], token="soma_token:c") is launch
