"""The PBS life events of issue 18 (docs/pbs.md, "Life events") on ``qstat``/``pbsnodes`` outputs
recorded from the real daemons (tests/fixtures/pbs/<flavour>/rerun_*, mom_restart_*):

* a job ``qrerun`` while it ran is queued again with the first run's exit status still shown
  (Torque ``exit_status = 0``, OpenPBS ``Exit_status = -11``): it is ``queued_active``, never
  ended; its end is the second run's;
* a Torque MOM killed with its job and restarted records ``exit_status = 0`` for the job: when
  the MOM was seen ``down`` while the job ran, the job ends ``failed`` / ``aborted``, not ``done``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from soma_schedulers import SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.schedulers.pbs.momcheck import LostJobs, node_states
from soma_schedulers.testing.fakes import Answer, ScriptedRunner

FIXTURES = Path(__file__).parent / "fixtures" / "pbs"
TORQUE = FIXTURES / "torque"
OPENPBS = FIXTURES / "openpbs"


def _scheduler(flavour: str, answers: dict[str, Answer | list[Answer]], lost_after: str = "0.04") -> pbs.PBSProScheduler:
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0, options={
        "flavour": flavour, "mom_lost_after": lost_after}))
    s.runner = ScriptedRunner(answers, ensure_newline=False)
    return s


def _read(flavour: Path, name: str) -> str:
    return (flavour / name).read_text()


@pytest.mark.parametrize(("flavour", "folder", "ext", "job_id"), [
    ("torque", TORQUE, "txt", "4.torque"), ("pbspro", OPENPBS, "json", "2.openpbs")])
def test_a_rerun_job_is_queued_then_ends_with_its_last_run(flavour: str, folder: Path, ext: str, job_id: str) -> None:
    queued = _read(folder, f"rerun_queued.{ext}")
    assert ("exit_status = 0" in queued) if flavour == "torque" else ('"Exit_status":-11' in queued.replace(" ", ""))
    s = _scheduler(flavour, {"qstat": [queued, _read(folder, f"rerun_ended.{ext}")]}, lost_after="0")
    s.track_job(job_id)
    assert s.get_job_status(job_id) == C.QUEUED_ACTIVE
    assert s.get_job_status(job_id) == C.DONE
    assert s.get_job_exit_info(job_id)[:3] == (C.FINISHED_REGULARLY, 7, None)


def test_node_states_read_each_node_state() -> None:
    assert node_states(_read(TORQUE, "mom_restart_pbsnodes_down.txt")) == {"torque": "down"}
    assert node_states(_read(TORQUE, "mom_restart_pbsnodes_up.txt")) == {"torque": "free"}
    assert node_states("c1\n     state = down,job-exclusive\n\nc2\n     state = free\n") == {
        "c1": "down,job-exclusive", "c2": "free"}


def test_an_outage_is_remembered_until_asked() -> None:
    watch = LostJobs(lost_after=100, every=0)
    watch.check({"5.s": "c1", "6.s": "c2"}, {}, now=0, states={"c1": "down,job-exclusive", "c2": "free"})
    watch.check({}, {}, now=1, states={})  # the job no longer runs: still remembered for its end
    assert "MOM on c1 was down" in (watch.outage("5.s") or "")
    assert watch.stopped("c1", now=1) is None  # the last check (now=1) no longer saw c1 running a job
    watch.check({"7.s": "c1"}, {}, now=2, states={"c1": "down"})
    assert watch.stopped("c1", now=2) == "was down" and watch.stopped("c2", now=2) is None
    assert watch.stopped("c1", now=2.5) is None  # every=0: that check is already too old
    assert watch.outage("5.s") is None and watch.outage("6.s") is None


def test_a_mom_silent_long_enough_is_an_outage() -> None:
    """A dead MOM's node may stay ``free`` (the torque-cluster's server kept it so for minutes):
    the same report (``rectime``) for ``silent_after`` s tells."""
    watch = LostJobs(lost_after=100, every=0, silent_after=30)
    report = {"c1": ("1796004468", frozenset({"5.s"}))}
    for now in (0, 10, 29):
        watch.check({"5.s": "c1"}, report, now=now, states={"c1": "free"})
    assert watch.outage("5.s") is None
    watch.check({"5.s": "c1"}, {"c1": ("1796004470", frozenset({"5.s"}))}, now=31, states={"c1": "free"})
    watch.check({"5.s": "c1"}, {"c1": ("1796004470", frozenset({"5.s"}))}, now=60, states={"c1": "free"})
    assert watch.outage("5.s") is None  # a fresh report at 31: silent for 29 s only
    watch.check({"5.s": "c1"}, {"c1": ("1796004470", frozenset({"5.s"}))}, now=62, states={"c1": "free"})
    assert "MOM on c1 sent no status report for 31 s" in (watch.outage("5.s") or "")


def _mom_restart(nodes: list[str]) -> pbs.PBSProScheduler:
    """Polls: running (pbsnodes ``nodes[0]``), running (``nodes[1]``: a MOM ``down`` makes it
    ``undetermined``), ended with exit status 0."""
    running = _read(TORQUE, "mom_restart_running.txt")
    s = _scheduler("torque", {"qstat": [running, running, _read(TORQUE, "mom_restart_ended.txt")],
                              "pbsnodes": nodes})
    s.track_job("5.torque")
    for node in nodes:
        assert s.get_job_status("5.torque") == (C.UNDETERMINED if "state = down" in node else C.RUNNING)
        time.sleep(0.02)
    return s


def test_a_job_whose_mom_was_down_and_restarted_is_not_done_with_0() -> None:
    down, up = _read(TORQUE, "mom_restart_pbsnodes_down.txt"), _read(TORQUE, "mom_restart_pbsnodes_up.txt")
    s = _mom_restart([up, down])
    assert s.get_job_status("5.torque") == C.FAILED
    assert s.get_job_exit_info("5.torque")[:3] == (C.EXIT_ABORTED, None, None)
    error = s.get_job_error("5.torque") or ""
    assert "exit status 0" in error and "MOM on torque was down" in error, error


def test_without_an_outage_seen_exit_0_is_the_jobs() -> None:
    up = _read(TORQUE, "mom_restart_pbsnodes_up.txt")
    s = _mom_restart([up, up])
    assert s.get_job_status("5.torque") == C.DONE
    assert s.get_job_exit_info("5.torque")[:3] == (C.FINISHED_REGULARLY, 0, None)


def test_a_job_whose_mom_stays_down_ends_after_undetermined_timeout() -> None:
    """Torque keeps the job ``R`` while its MOM is away (12 min measured): ``undetermined``, then
    ``failed`` / ``aborted`` after ``undetermined_timeout``."""
    running = _read(TORQUE, "mom_restart_running.txt")
    down = _read(TORQUE, "mom_restart_pbsnodes_down.txt")
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0, undetermined_timeout=0.1, options={
        "flavour": "torque", "mom_lost_after": "0.04"}))
    s.runner = ScriptedRunner({"qstat": running, "pbsnodes": down}, ensure_newline=False)
    s.track_job("5.torque")
    assert s.get_job_status("5.torque") == C.UNDETERMINED
    time.sleep(0.15)
    assert s.get_job_status("5.torque") == C.FAILED
    assert s.get_job_exit_info("5.torque")[0] == C.EXIT_ABORTED
    error = s.get_job_error("5.torque") or ""
    assert "MOM on torque was down while the server still shows the job running" in error, error


def test_openpbs_makes_up_no_exit_status() -> None:
    assert pbs.OPENPBS.exit_status_after_mom_restart is None and pbs.TORQUE.exit_status_after_mom_restart == 0
