"""Engine-execution jobs (soma_schedulers/engine_jobs.py): the base class answers, no backend sees them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from soma_schedulers import Job, as_job
from soma_schedulers import constants as C
from soma_schedulers.config import SchedulerConfig
from soma_schedulers.engine_jobs import looks_like_engine_id
from soma_schedulers.errors import NotSupportedError, UnknownJobError
from soma_schedulers.scheduler import ExitInfo, Scheduler
from soma_schedulers.schedulers import slurm_scheduler as slurm
from soma_schedulers.testing.fakes import ScriptedRunner

DONE0 = (C.FINISHED_REGULARLY, 0, None, None)


class Recording(Scheduler):
    """A third-party-style backend with its own job_submission (no submit_each): records what it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.asked: list[Any] = []

    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        self.seen.extend(jobs)
        ids: list[str | None] = []
        errors: list[str | None] = []
        for job in jobs:
            bad = isinstance(job, dict) and not job.get("command")
            ids.append(None if bad else f"r{len(self.seen)}-{len(ids)}")
            errors.append("refused: empty" if bad else None)
        self.set_submission_errors(errors)
        return ids

    def get_job_status(self, scheduler_job_id: str) -> str:
        self.asked.append(scheduler_job_id)
        if not scheduler_job_id.startswith("r"):
            raise UnknownJobError(scheduler_job_id)
        return C.RUNNING

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        self.asked.append(scheduler_job_id)
        if not scheduler_job_id.startswith("r"):
            raise UnknownJobError(scheduler_job_id)
        return ExitInfo(C.EXIT_UNDETERMINED, None, None, None)

    def kill_job(self, scheduler_job_id: str) -> None:
        self.asked.append(("kill", scheduler_job_id))
        if not scheduler_job_id.startswith("r"):
            raise UnknownJobError(scheduler_job_id)

    @classmethod
    def build_scheduler(cls, config: Any) -> Recording:
        return cls()


class CallsSuper(Recording):
    """A subclass that overrides and calls super(): engine jobs are handled once, by the outer layer."""

    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        return super().job_submission(jobs, signal_end)

    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        return super().get_jobs_status(scheduler_job_ids)


def barrier() -> Job:
    return Job(command=[], is_engine_execution=True)


@pytest.mark.parametrize("cls", [Recording, CallsSuper])
def test_backend_never_sees_engine_jobs(cls: type[Recording]) -> None:
    s = cls()
    ids = s.job_submission([barrier(), {"command": ["x"]}, {"command": []}, {"command": [], "is_engine_execution": True}])
    assert [looks_like_engine_id(i) for i in ids] == [True, False, False, True]
    assert ids[2] is None and s.last_submission_errors == [None, None, "refused: empty", None]
    assert s.seen == [{"command": ["x"]}, {"command": []}]
    engine = [ids[0], ids[3]]
    status = s.get_jobs_status([ids[1], *engine])  # type: ignore[list-item]
    assert status == {ids[1]: C.RUNNING, ids[0]: C.DONE, ids[3]: C.DONE}
    assert list(status) == [ids[1], *engine]  # the caller's order
    for jid in engine:
        assert s.get_job_status(jid) == C.DONE  # type: ignore[arg-type]
        assert tuple(s.get_job_exit_info(jid)) == DONE0  # type: ignore[arg-type]
        assert s.kill_job(jid) is None  # type: ignore[arg-type]
    assert tuple(s.get_jobs_exit_info(engine)[ids[0]]) == DONE0  # type: ignore[arg-type, index]
    assert all(not (isinstance(a, str) and a.startswith("engine-")) and not (isinstance(a, tuple) and
               a[1].startswith("engine-")) for a in s.asked), s.asked


def test_all_engine_submission_calls_no_backend_and_signals() -> None:
    s = Recording()
    s.jobs_finished_event.clear()
    ids = s.job_submission([barrier(), barrier()])
    assert s.seen == [] and len(set(ids)) == 2 and s.jobs_finished_event.is_set()
    assert s.last_submission_errors == [None, None]
    s.jobs_finished_event.clear()
    s.job_submission([barrier()], signal_end=False)
    assert not s.jobs_finished_event.is_set()
    s.job_submission([Job(command=[], is_engine_execution=True, signal_end=False)])
    assert not s.jobs_finished_event.is_set()


def test_unknown_ids_keep_the_backends_rules() -> None:
    s = Recording()
    for method in ("get_job_status", "get_job_exit_info", "kill_job"):
        with pytest.raises(UnknownJobError):
            getattr(s, method)("engine-00000000-1")  # the form of an engine id, never given here
    assert Recording().is_engine_job_id(s.submit_engine_job()) is False  # per instance


def test_attach_takes_engine_ids_from_any_instance() -> None:
    first = Recording()
    [old] = first.job_submission([barrier()])
    later = Recording()
    later.attach([old])  # type: ignore[list-item]  # Scheduler.attach raises for real ids (not attachable)
    assert later.get_job_status(old) == C.DONE  # type: ignore[arg-type]
    with pytest.raises(NotSupportedError):
        Recording().attach(["r1-0", old])  # type: ignore[list-item]


def test_slurm_never_runs_a_command_for_an_engine_job() -> None:
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0))
    fake = ScriptedRunner({"sbatch": "41\n", "squeue": "41|2026-01-01T00:00:00|RUNNING|None|x|\n", "sacct": ""})
    s.runner = fake
    ids = s.job_submission([barrier(), Job(command=["/bin/true"]), barrier()])
    assert ids[1] == "41" and looks_like_engine_id(ids[0]) and looks_like_engine_id(ids[2])
    assert [c.argv[0] for c in fake.history] == ["sbatch"]
    fake.history.clear()
    assert s.get_jobs_status(ids) == {ids[0]: C.DONE, "41": C.RUNNING, ids[2]: C.DONE}  # type: ignore[arg-type]
    assert all("engine-" not in " ".join(c.argv) for c in fake.history)
    fake.history.clear()
    s.kill_job(ids[0])  # type: ignore[arg-type]
    assert fake.history == []
    ids = s.job_submission([barrier()])
    assert fake.history == []  # nothing to ask the DRMS at all


class _EngineJob:
    """Soma-Workflow's EngineJob of a BarrierJob, as the engine hands it over (plain_command may be None)."""

    is_engine_execution = True
    name = "b"
    signal_end = True

    def plain_command(self) -> None:
        return None


def test_as_job_keeps_is_engine_execution() -> None:
    job = as_job(_EngineJob())
    assert job.is_engine_execution and job.command == ()
    assert as_job({"command": [], "is_engine_execution": True}).is_engine_execution
    with pytest.raises(Exception, match="empty"):
        Job(command=[])


def test_a_real_soma_workflow_barrier_job() -> None:
    client = pytest.importorskip("soma_workflow.client")
    engine_types = pytest.importorskip("soma_workflow.engine_types")
    job = engine_types.EngineJob(client_job=client.BarrierJob(name="b"), queue=None)
    job.job_id, job.signal_end = 7, True
    s = Recording()
    [jid] = s.job_submission([job])
    assert s.seen == [] and tuple(s.get_job_exit_info(jid)) == DONE0  # type: ignore[arg-type]
    assert as_job(job).is_engine_execution
