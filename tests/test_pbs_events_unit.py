"""The PBS life events of issue 18 (docs/pbs.md, "Life events") on ``qstat``/``pbsnodes`` outputs
recorded from the real daemons (tests/fixtures/pbs/<flavour>/rerun_*, mom_restart_*):

* a job ``qrerun`` while it ran is queued again with the first run's exit status still shown
  (Torque ``exit_status = 0``, OpenPBS ``Exit_status = -11``): it is ``queued_active``, never
  ended; its end is the second run's;
* a Torque MOM killed with its job and restarted records ``exit_status = 0`` for the job: when
  the MOM was seen ``down`` while the job ran, the job ends ``failed`` / ``aborted``, not ``done``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from soma_schedulers import SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.schedulers import pbspro_scheduler as pbs
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
