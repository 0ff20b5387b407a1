"""A running Torque job its MOM lost ends ``aborted`` (pbs/momcheck.py), on outputs recorded from
the torque-cluster: job 0 killed with its MOM, the MOM restarted without the job's files; job 1
untouched (tests/fixtures/pbs/torque/mom_lost_*.txt: ``qstat -f 0 1`` and ``pbsnodes c1 c2``)."""

from __future__ import annotations

import time
from pathlib import Path

from soma_schedulers import SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.schedulers.pbs.momcheck import LostJobs, mom_reports, mother_superior
from soma_schedulers.testing.fakes import Answer, ScriptedRunner

TORQUE = Path(__file__).parent / "fixtures" / "pbs" / "torque"
QSTAT = (TORQUE / "mom_lost_qstat.txt").read_text()
NODES = (TORQUE / "mom_lost_pbsnodes.txt").read_text()
LOST, KEPT = "0.torqueserver", "1.torqueserver"


def later(text: str, seconds: int) -> str:
    """The same ``pbsnodes`` output, as the MOMs' next reports (``rectime`` moved on)."""
    for rectime, _ in mom_reports(text).values():
        text = text.replace(f"rectime={rectime}", f"rectime={int(rectime) + seconds}")
    return text


def scheduler(flavour: str, answers: dict[str, Answer | list[Answer]], lost_after: str = "0.05") -> pbs.PBSProScheduler:
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0, options={
        "flavour": flavour, "mom_lost_after": lost_after}))
    s.runner = ScriptedRunner(answers, ensure_newline=False)
    return s


def test_mom_reports_read_the_jobs_each_mom_runs() -> None:
    reports = mom_reports(NODES)
    assert reports == {"c1": ("1795994918", frozenset({KEPT})), "c2": ("1795994917", frozenset())}
    assert mom_reports("c3\n     state = down\n\n") == {}  # never reported: nothing said


def test_mother_superior_is_the_first_host() -> None:
    assert mother_superior("c1/0") == "c1"
    assert mother_superior("c1/0-3+c2/0") == "c1"
    assert mother_superior(None) is None and mother_superior("") is None


def test_lost_only_after_two_fresh_reports_and_the_delay() -> None:
    watch = LostJobs(lost_after=10, every=0)
    stale = {"c1": ("100", frozenset({"9.s"}))}
    assert watch.check({"8.s": "c1"}, stale, now=0) == {}
    assert watch.check({"8.s": "c1"}, stale, now=20) == {}  # the same report: the MOM may be silent
    assert watch.check({"8.s": "c1"}, {"c1": ("102", frozenset())}, now=5) == {}  # too soon
    [reason] = watch.check({"8.s": "c1"}, {"c1": ("104", frozenset())}, now=11).values()
    assert "MOM on c1 no longer runs the job" in reason and "job_stat_rate" in reason
    # reported again, or no longer running: forgotten
    watch.check({"7.s": "c1"}, {"c1": ("1", frozenset())}, now=0)
    watch.check({"7.s": "c1"}, {"c1": ("2", frozenset({"7.s"}))}, now=1)
    assert watch.check({"7.s": "c1"}, {"c1": ("3", frozenset())}, now=12) == {}
    watch.check({}, {}, now=13)
    assert watch.check({"7.s": "c1"}, {"c1": ("4", frozenset())}, now=30) == {}


def test_a_job_its_mom_lost_ends_aborted_the_others_run() -> None:
    s = scheduler("torque", {"qstat": QSTAT, "pbsnodes": [NODES, later(NODES, 2), later(NODES, 4)]})
    for job_id in (LOST, KEPT):
        s.track_job(job_id)
    assert s.get_job_status(LOST) == C.RUNNING
    time.sleep(0.06)
    assert s.get_job_status(LOST) == C.FAILED
    assert s.get_job_exit_info(LOST)[0] == C.EXIT_ABORTED
    assert "MOM on c1 no longer runs the job" in (s.get_job_error(LOST) or "")
    assert s.get_job_status(KEPT) == C.RUNNING
    assert s.runner.argvs("pbsnodes")[0] == ["pbsnodes", "c1"]


def test_a_silent_mom_proves_nothing() -> None:
    s = scheduler("torque", {"qstat": QSTAT, "pbsnodes": NODES})  # rectime never changes
    s.track_job(LOST)
    for _ in range(3):
        assert s.get_job_status(LOST) == C.RUNNING
        time.sleep(0.03)


def test_pbsnodes_failing_leaves_jobs_running() -> None:
    s = scheduler("torque", {"qstat": QSTAT, "pbsnodes": (1, "", "pbsnodes: cannot connect to server")})
    s.track_job(LOST)
    time.sleep(0.06)
    assert s.get_job_status(LOST) == C.RUNNING


def test_no_check_when_off_or_openpbs() -> None:
    # no pbsnodes scripted: a call would fail the test
    s = scheduler("torque", {"qstat": QSTAT}, lost_after="0")
    s.track_job(LOST)
    assert s.get_job_status(LOST) == C.RUNNING
    assert not pbs.OPENPBS.reports_mom_jobs and pbs.TORQUE.reports_mom_jobs


def test_the_obit_stall_of_issue_18_is_not_a_lost_job() -> None:
    """Run 52's stall: the MOM never sent task 49's obit but still lists it (no session left):
    not lost, so not ended here (docs/pbs.md, "The torque-cluster stall of issue 18")."""
    reports = mom_reports((TORQUE / "obit_stall_pbsnodes.txt").read_text())
    assert reports["c1"][1] == frozenset({"0[49].torqueserver"}) and reports["c2"][1] == frozenset()
    watch = LostJobs(lost_after=0, every=0)
    assert watch.check({"0[49].torqueserver": "c1"}, reports, now=0) == {}
    assert watch.check({"0[49].torqueserver": "c1"}, reports, now=100) == {}
