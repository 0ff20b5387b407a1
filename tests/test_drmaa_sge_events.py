"""SGE's life events (issue 18) as the drmaa backend reads them, on ``qacct -j`` outputs recorded on
the images (tests/fixtures/sge/, see its README): a requeued job's rescheduling record is not its
end; a job over ``h_rt`` that libdrmaa calls signalled (SIGKILL) is aborted, naming h_rt; a SIGKILL
from elsewhere stays a signal; a job whose execd was lost ends aborted with SGE's reason."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import constants as C
from soma_schedulers.polled import Observation
from soma_schedulers.schedulers.drmaa import attach as da
from soma_schedulers.schedulers.drmaa import sge
from soma_schedulers.testing.fakes import ScriptedRunner

FIXTURES = Path(__file__).parent / "fixtures" / "sge"


def qacct(name: str) -> str:
    return (FIXTURES / f"qacct-{name}.txt").read_text()


class Host:
    """What SgeFamily needs of its DrmaaScheduler (sge.FamilyHost)."""

    def __init__(self, answers: dict[str, str], terminated: tuple[str, ...] = ()) -> None:
        def answer(call: Any) -> object:
            job = call.argv[2]
            return answers.get(job, (1, "", f"error: job id {job} not found"))

        self.runner = ScriptedRunner({"qacct": answer})
        self.logger: logging.Logger | None = logging.getLogger("test")
        self.terminated = set(terminated)

    def last_status(self, job_id: str) -> str | None:
        return C.RUNNING

    def launch_error(self, job_id: str) -> str | None:
        return None


def complete(host: Host, reaped: dict[str, Observation]) -> dict[str, Observation]:
    return sge.SgeFamily(host).complete_ends(list(reaped), reaped)


def signalled(sig: int) -> Observation:
    """What end_observation makes of libdrmaa's ``hasSignal``, ``terminatedSignal`` SIGKILL."""
    return Observation(C.DONE, ended=True, started=True, term_sig=sig)


@pytest.fixture(autouse=True)
def ask_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sge, "SGE_ACCOUNTING_EVERY", 0.0)
    monkeypatch.setattr(da, "ASK_EVERY", 0.0)


def test_end_record_skips_a_requeued_jobs_rescheduling_record() -> None:
    # qmod -rj or a lost host: "failed 25 : rescheduling" first, the rerun's record once it ended
    assert da.end_record(qacct("requeued-before-rerun-record"), "2") is None
    record = da.end_record(qacct("requeued"), "2")
    assert record is not None and (record["failed"], record["exit_status"], record["hostname"]) == ("0", "7", "exec1")
    assert da.end_record(qacct("requeued"), "3") is None  # another job's
    end = da.sge_end(record)
    assert (end.exit_code, end.term_sig, end.aborted) == (7, None, None)


def test_attached_requeued_job_waits_for_its_reruns_record() -> None:
    runner = ScriptedRunner({"qacct": [qacct("requeued-before-rerun-record"), qacct("requeued")]})
    jobs = da.SgeAttached(runner, lambda job_id: None)
    jobs.ended(["2"], {"2": None}, (), result := {}, attaching=False)
    assert result["2"].status == C.UNDETERMINED and not result["2"].ended  # not the rescheduling record
    jobs.ended(["2"], {"2": None}, (), result := {}, attaching=False)
    assert result["2"].ended and result["2"].exit_code == 7


def test_time_limit_is_aborted_naming_h_rt() -> None:
    host = Host({"3": qacct("h_rt")})
    got = complete(host, {"3": signalled(9)})
    assert got["3"].aborted == "SGE accounting: failed 37  : qmaster enforced h_rt, h_cpu, or h_vmem limit"
    assert got["3"].term_sig == 9 and got["3"].ended


def test_sigkill_from_elsewhere_stays_a_signal() -> None:
    host = Host({"4": qacct("sigkill")})
    got = complete(host, {"4": signalled(9)})
    assert (got["4"].term_sig, got["4"].aborted, got["4"].cancelled, got["4"].exit_code) == (9, None, False, None)


def test_signalled_end_waits_for_its_record_and_ours_is_not_asked() -> None:
    host = Host({}, terminated=("6",))
    reaped = {"5": signalled(9), "6": Observation(C.DONE, ended=True, cancelled=True)}
    family = sge.SgeFamily(host)
    got = family.complete_ends(["5", "6"], reaped)
    assert got["5"].status == C.RUNNING and not got["5"].ended  # qacct's lag: its last live status
    assert "6" in reaped and family.awaits("5")  # killed by us: DRMAA's end stands, no qacct
    assert [list(c.argv) for c in host.runner.calls_of("qacct")] == [["qacct", "-j", "5"]]


def test_lost_execd_non_rerunnable_job_is_aborted_with_sges_reason() -> None:
    # sge_execd killed with the job, restarted: libdrmaa says neither exited nor signalled
    host = Host({"1": qacct("lost-host-not-rerunnable")})
    got = complete(host, {"1": Observation(C.DONE, ended=True, aborted="DRMAA reports neither an exit code nor a signal")})
    assert got["1"].aborted == "SGE accounting: failed 19  : before writing exit_status"
