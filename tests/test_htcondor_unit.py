"""Unit tests of the HTCondor backend on answers recorded from HTCondor 23.9.6 (the trixie image,
tests/fixtures/htcondor/, see its README.md): submission (the job data never in the submit
description but base64), bulk in one ``condor_submit``, one poll, end states, lost answers,
outputs cut short, refusals."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from soma_schedulers import constants as C
from soma_schedulers.config import SchedulerConfig
from soma_schedulers.job import Job
from soma_schedulers.scheduler import get_scheduler_implementation
from soma_schedulers.schedulers.htcondor_ads import RUNNER, job_id_of, observation, parse_ads, safe_name
from soma_schedulers.schedulers.htcondor_scheduler import HTCondorScheduler
from soma_schedulers.scripts import build_script
from soma_schedulers.testing.fakes import Answer, ScriptedRunner, times_out

FIXTURES = Path(__file__).parent / "fixtures" / "htcondor"
LIVE = (FIXTURES / "q_live.json").read_text()
HISTORY = (FIXTURES / "history_ended.json").read_text()
TERSE = (FIXTURES / "submit_terse.txt").read_text()  # "3.0 - 3.1"
EVENTS_Q = (FIXTURES / "q_events.json").read_text()
EVENTS_HISTORY = (FIXTURES / "history_events.json").read_text()


def _condor(**answers: Answer | list[Answer]) -> tuple[HTCondorScheduler, ScriptedRunner]:
    s = HTCondorScheduler(SchedulerConfig(status_cache_seconds=0, undetermined_timeout=60))
    fake = ScriptedRunner()
    for command, answer in answers.items():
        fake.script(command, answer)
    s.runner = fake
    return s, fake


def _scripts(description: str) -> list[str]:
    """The job scripts a submit description carries (base64 words)."""
    words = re.findall(r"SOMA_JOB=([A-Za-z0-9+/=]+)\"", description)
    words += re.findall(r"^([A-Za-z0-9+/=]{16,}),", description, re.M)
    return [base64.b64decode(w).decode("utf-8", "surrogateescape") for w in words]


def test_types_and_alias() -> None:
    assert get_scheduler_implementation("htcondor") is HTCondorScheduler
    assert get_scheduler_implementation("condor") is HTCondorScheduler
    assert HTCondorScheduler.probe_command == "condor_q"


def test_terse_answer() -> None:
    assert job_id_of(TERSE) == "3"
    assert job_id_of("12.0 - 12.0\n") == "12"
    assert job_id_of("Submitting job(s).\n") is None


def test_job_data_never_reaches_the_submit_language() -> None:
    nasty = "a'b\"c $(x) `y` \\ \n queue\n+Evil = 1\r\x01 é"
    job = Job(command=["printf", "%s", nasty], env={"V": nasty}, name=nasty, working_directory="/tmp/" + nasty,
              stdout_file="/tmp/o" + nasty)
    s, fake = _condor(condor_submit="7.0 - 7.0\n")
    [job_id] = s.job_submission([job])
    assert job_id == "7.0"
    [call] = fake.calls_of("condor_submit")
    assert list(call.argv) == ["condor_submit", "-terse", "-"] and call.retry is False
    text = (call.input or b"").decode("ascii")  # the description is plain ASCII
    for piece in ("$(x)", "`y`", "+Evil", "a'b", "é"):
        assert piece not in text
    assert text.count("\nqueue\n") == 1 and RUNNER[1] in text
    assert "batch_name = a_b_c___x___y______queue__Evil___1____\n" in text
    [script] = _scripts(text)
    assert script == s.job_script(job)
    assert script.replace(s.job_script(job).split("\n")[2], "") == build_script(job).replace(
        build_script(job).split("\n")[2], "")  # the job script, but for its report command


def test_bulk_is_one_condor_submit_of_different_jobs() -> None:
    s, fake = _condor(condor_submit=TERSE)
    jobs = [Job(command=["echo", str(n)], name=f"j{n}", env={"N": str(n)}) for n in range(2)]
    assert s.submit_array(jobs) == ["3.0", "3.1"]
    [call] = fake.calls_of("condor_submit")
    text = (call.input or b"").decode()
    assert "queue SomaJob,SomaName from (" in text and text.rstrip().endswith(")")
    scripts = _scripts(text)
    assert scripts == [s.job_script(j) for j in jobs]
    assert s.array_key(jobs[0]) == s.array_key(jobs[1]) != s.array_key(Job(command=["x"], hold=True))


def test_one_poll_of_live_jobs() -> None:
    s, fake = _condor(condor_q=LIVE)
    for job_id in ("3.0", "3.1", "4.0"):
        s.track_job(job_id)
    assert s.get_jobs_status(["3.0", "3.1", "4.0"]) == {
        "3.0": C.RUNNING, "3.1": C.USER_ON_HOLD, "4.0": C.QUEUED_ACTIVE}
    [q] = fake.calls_of("condor_q")
    assert "member(ClusterId, {3, 4})" in q.argv and "-allusers" in q.argv
    assert not fake.calls_of("condor_history")  # every job was in the queue


def test_ends_from_the_history() -> None:
    s, fake = _condor(condor_q="", condor_history=HISTORY, condor_rm="")
    ids = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0"]
    for job_id in ids:
        s.track_job(job_id)
    s.kill_job("1.3")  # running, then removed
    s.kill_job("2.0")  # held, removed before it ran
    infos = s.get_jobs_exit_info(ids)
    assert infos["1.0"][:3] == (C.FINISHED_REGULARLY, 3, None)
    assert infos["1.1"][:3] == (C.FINISHED_TERM_SIG, None, 9)
    assert infos["1.2"][0] == C.EXIT_ABORTED and s.get_job_error("1.2") == "command not found: /no/such/exe"
    assert infos["1.3"][0] == C.USER_KILLED
    assert infos["1.4"][:2] == (C.FINISHED_REGULARLY, 0)
    assert infos["2.0"] == (C.EXIT_NOTRUN, None, None, None)
    assert infos["1.4"][3] == b"cput=00:00:00 mem=1750kb ncpus=1 walltime=00:00:01"
    assert len(fake.calls_of("condor_q")) == 1 and len(fake.calls_of("condor_history")) == 1


def test_removed_by_someone_else_is_aborted_and_attach_knows_who() -> None:
    ad = next(a for a in parse_ads(HISTORY) if a["ProcId"] == 3)
    obs = observation(ad)
    assert obs.cancelled and obs.cancelled_by == "alice" and obs.owner == "alice" and obs.started
    periodic = observation({**ad, "RemoveReason": "The job attribute PeriodicRemove expression evaluated to TRUE"})
    assert not periodic.cancelled and (periodic.aborted or "").startswith("HTCondor removed the job")
    system_hold = observation({"ClusterId": 1, "ProcId": 0, "JobStatus": 5, "HoldReasonCode": 12})
    assert system_hold.status == C.SYSTEM_ON_HOLD and not system_hold.ended


def test_life_events_vacate_and_time_limit() -> None:
    """Recorded life events (docs/contract.md, "Life events"): 12.0 vacated (Idle after one start, the
    first run's signal still in the ad), then its rerun's exit 7; 10.0 held at its
    ``allowed_job_duration``; 11.0 removed by ``periodic_remove`` on that hold."""
    s, fake = _condor(condor_q=[EVENTS_Q, ""], condor_history=EVENTS_HISTORY)
    ids = ["10.0", "11.0", "12.0"]
    for job_id in ids:
        s.track_job(job_id)
    assert s.get_jobs_status(ids) == {"10.0": C.SYSTEM_ON_HOLD, "11.0": C.FAILED, "12.0": C.QUEUED_ACTIVE}
    assert s.get_job_exit_info("11.0")[:3] == (C.EXIT_ABORTED, None, None)
    assert s.get_job_error("11.0") == ("HTCondor removed the job: The job attribute PeriodicRemove expression "
                                       "'HoldReasonCode =?= 46' evaluated to TRUE (held before: The job exceeded "
                                       "allowed job duration of 00:05)")
    assert s.get_jobs_status(["12.0"])["12.0"] == C.DONE  # the queue forgets it: the history has the rerun
    assert s.get_job_exit_info("12.0")[:3] == (C.FINISHED_REGULARLY, 7, None)
    assert len(fake.calls_of("condor_q")) == 2  # one per poll
    # a user's hold before a removal is not HTCondor's reason
    ad = next(a for a in parse_ads(EVENTS_HISTORY) if a["ClusterId"] == 11)
    user_held = observation({**ad, "LastHoldReason": "via condor_hold (by user alice)", "LastHoldReasonCode": 1})
    assert user_held.aborted == f"HTCondor removed the job: {ad['RemoveReason']}"


def test_lost_answer_is_found_by_token() -> None:
    def token_listing(call: object) -> str:
        argv = getattr(call, "argv", [])
        assert any("SomaToken ==" in a for a in argv)
        return '[\n{\n  "ClusterId": 9,\n  "ProcId": 0\n}\n]\n'

    s, fake = _condor(condor_submit=times_out(), condor_q=token_listing)
    assert s.job_submission([Job(command=["true"])]) == ["9.0"]
    assert len(fake.calls_of("condor_submit")) == 1  # never submitted twice


def test_refusal_keeps_htcondor_message() -> None:
    msg = "ERROR: on Line 9 of submit file: Submit:0:Unrecognized command"
    s, _fake = _condor(condor_submit=(1, "", msg), condor_q="", condor_history="")
    assert s.job_submission([Job(command=["true"])]) == [None]
    assert msg in (s.last_submission_errors[0] or "")


def test_cut_output_is_undetermined_not_believed() -> None:
    s, _fake = _condor(condor_q=LIVE[: len(LIVE) // 2])
    s.track_job("3.0")
    assert s.get_job_status("3.0") == C.UNDETERMINED


def test_names() -> None:
    assert safe_name(None) == "soma_job"
    assert safe_name("a b,c") == "a_b_c"
    with pytest.raises(Exception, match="newline"):
        HTCondorScheduler(SchedulerConfig(native_specification=["a = 1\nqueue"])).submit_one(Job(command=["x"]))
