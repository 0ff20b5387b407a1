"""``attach(ids)`` without daemons: Slurm, OpenPBS and Torque on answers scripted with
:class:`~soma_schedulers.testing.fakes.ScriptedRunner` (the PBS ones recorded from the real images,
tests/fixtures/pbs/), and the API every backend shares. DRMAA's are in test_drmaa_unit.py; the
real daemons' in tests/containers/test_attach.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.errors import (
    CommandError,
    NotSupportedError,
    SchedulerClosedError,
    UnknownJobError,
)
from soma_schedulers.scheduler import get_scheduler_implementation
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.schedulers.local_scheduler import LocalScheduler
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler, split_state
from soma_schedulers.testing.fakes import Answer, ScriptedRunner

PBS_FIXTURES = Path(__file__).parent / "fixtures" / "pbs"
NOT_SQUEUE_O = "-o"  # the poll's squeue (-o FORMAT), not the exit-code one (-O)


def slurm(answers: dict[str, Answer], **options: str) -> tuple[SlurmScheduler, ScriptedRunner]:
    s = SlurmScheduler(SchedulerConfig(status_cache_seconds=0, options=dict(options)))
    fake = ScriptedRunner()
    for command, answer in answers.items():
        fake.script(command, answer, when=NOT_SQUEUE_O if command == "squeue" else None)
    s.runner = fake
    return s, fake


def end(s: SlurmScheduler | pbs.PBSProScheduler, job_id: str) -> tuple[object, ...]:
    return (s.get_job_status(job_id), *s.get_job_exit_info(job_id)[:3])


# -- the API ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler_type, attachable", [
    ("slurm", True), ("pbspro", True), ("torque", True), ("drmaa", True), ("local", False), ("mpi", False),
])
def test_attachable_says_which_backends_can(scheduler_type: str, attachable: bool) -> None:
    assert get_scheduler_implementation(scheduler_type).attachable is attachable


def test_a_backend_whose_jobs_live_in_their_process_cannot_attach() -> None:
    with LocalScheduler(proc_nb=1) as s, pytest.raises(NotSupportedError, match="live only in the process"):
        s.attach(["1"])


def test_bad_ids_and_a_cleaned_scheduler() -> None:
    s, fake = slurm({})
    for bad in ("", "  "):
        with pytest.raises(UnknownJobError, match="non-empty str"):
            s.attach([bad])
    with pytest.raises(UnknownJobError):
        s.attach([5])  # type: ignore[list-item]
    s.clean()
    with pytest.raises(SchedulerClosedError):
        s.attach(["5"])
    assert fake.history == []


# -- Slurm ------------------------------------------------------------------------------------

# Recorded from the Slurm 22.05 image: jobs of alice (uid 1000); 3, 6 scancel'ed by alice, 4, 7 by root;
# 6, 7 were held (never ran); 5 runs, 8 is held. squeue -o "%i|%V|%T|%r|%S|%U|%k" (%V added: the start time):
SQUEUE = """\
3|2026-11-29T19:43:50|CANCELLED|None|2026-11-29T19:43:50|1000|(null)
4|2026-11-29T19:43:50|CANCELLED|None|2026-11-29T19:43:50|1000|(null)
1|2026-11-29T19:43:48|COMPLETED|None|2026-11-29T19:43:48|1000|(null)
2|2026-11-29T19:43:49|FAILED|NonZeroExitCode|2026-11-29T19:43:49|1000|(null)
5|2026-11-29T19:43:51|RUNNING|None|2026-11-29T19:43:51|1000|(null)
8|2026-11-25T02:28:00|PENDING|JobHeldUser|N/A|1000|(null)
"""
# sacct -o JobIDRaw,Submit,State,ExitCode,Start,ElapsedRaw,TotalCPU,MaxRSS,NCPUS,NodeList,Reason,UID,Comment
# (recorded before the poll asked for Submit: the start time stands for it)
# (squeue had forgotten 6 and 7: MinJobAge)
SACCT = """\
1|2026-11-29T19:43:48|COMPLETED|0:0|2026-11-29T19:43:48|0|00:00.001||1|slurm|None|1000|
1.batch|2026-11-29T19:43:48|COMPLETED|0:0|2026-11-29T19:43:48|0|00:00.001||1|slurm|||
2|2026-11-29T19:43:49|FAILED|3:0|2026-11-29T19:43:49|0|00:00.001||1|slurm|None|1000|
2.batch|2026-11-29T19:43:49|FAILED|3:0|2026-11-29T19:43:49|0|00:00.001||1|slurm|||
3|2026-11-29T19:43:50|CANCELLED by 1000|0:0|2026-11-29T19:43:50|8|00:00.001||1|slurm|None|1000|
3.batch|2026-11-29T19:43:50|CANCELLED|0:15|2026-11-29T19:43:50|8|00:00.001||1|slurm|||
4|2026-11-29T19:43:50|CANCELLED by 0|0:0|2026-11-29T19:43:50|8|00:00.003||1|slurm|None|1000|
4.batch|2026-11-29T19:43:50|FAILED|15:0|2026-11-29T19:43:50|8|00:00.003||1|slurm|||
6|2026-11-25T02:28:00|CANCELLED by 1000|0:0|None|0|00:00:00||1|None assigned|JobHeldUser|1000|
7|2026-11-25T02:28:00|CANCELLED by 0|0:0|None|0|00:00:00||1|None assigned|JobHeldUser|1000|
"""


def test_slurm_attach_is_one_squeue_and_one_sacct_and_gives_true_ends() -> None:
    s, fake = slurm({"squeue": SQUEUE, "sacct": SACCT})
    ids = [str(i) for i in range(1, 9)]
    s.attach(ids)
    assert [c.command for c in fake.history] == ["squeue", "sacct"]
    squeue, sacct = fake.argvs()
    assert squeue[-1] == "%i|%V|%T|%r|%S|%U|%k" and squeue[squeue.index("-j") + 1] == ",".join(ids)
    assert sacct[-1].endswith(",Reason,UID,Comment") and sacct[sacct.index("-j") + 1] == "1,2,3,4,6,7"
    assert end(s, "1") == (C.DONE, C.FINISHED_REGULARLY, 0, None)
    assert end(s, "2") == (C.DONE, C.FINISHED_REGULARLY, 3, None)
    assert end(s, "3") == (C.FAILED, C.USER_KILLED, None, None)  # cancelled by its owner while running
    assert end(s, "6") == (C.FAILED, C.EXIT_NOTRUN, None, None)  # by its owner while held
    assert end(s, "4") == (C.FAILED, C.EXIT_ABORTED, 0, None)  # by root: the DRMS's doing
    assert s.get_job_error("4") == "cancelled by user 0, not by the job's owner (user 1000)"
    assert end(s, "7") == (C.FAILED, C.EXIT_ABORTED, 0, None)
    assert s.get_job_status("5") == C.RUNNING and s.get_job_status("8") == C.USER_ON_HOLD
    assert all(s.is_attached(i) for i in ids)
    # ended jobs are never asked again: the polls since name 5 and 8 only, and need no sacct
    assert {c.argv[c.argv.index("-j") + 1] for c in fake.history[2:]} == {"5,8"}
    assert {c.command for c in fake.history[2:]} == {"squeue"}


def test_slurm_attached_job_cancelled_later_by_its_owner_or_root() -> None:
    s, fake = slurm({"squeue": "5|2026-01-01T00:00:00|RUNNING|None|x|1000|\n8|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|1000|\n9|2026-01-01T00:00:00|RUNNING|None|x|1000|\n",
                     "sacct": ""})
    s.attach(["5", "8", "9"])
    fake.script("squeue", "5|2026-01-01T00:00:00|CANCELLED|None|x|\n8|2026-01-01T00:00:00|CANCELLED|JobHeldUser|x|\n9|2026-01-01T00:00:00|CANCELLED|None|x|\n", when="-o")
    fake.script("sacct", "5|2026-01-01T00:00:00|CANCELLED by 1000|0:0|x|8|00:00.001||1|slurm|None|\n"
                         "8|2026-01-01T00:00:00|CANCELLED by 1000|0:0|None|0|00:00:00||1|None assigned|JobHeldUser|\n"
                         "9|2026-01-01T00:00:00|CANCELLED by 0|0:0|x|8|00:00.001||1|slurm|None|\n")
    assert s.get_jobs_status(["5", "8", "9"]) == {"5": C.FAILED, "8": C.FAILED, "9": C.FAILED}
    assert s.get_job_exit_info("5")[0] == C.USER_KILLED and s.get_job_exit_info("8")[0] == C.EXIT_NOTRUN
    assert s.get_job_exit_info("9")[0] == C.EXIT_ABORTED
    # the poll's own format (no owner asked again): the uid came with attach
    assert fake.argvs("sacct")[-1][-1].endswith(",Reason,Comment")


def test_slurm_without_accounting_cannot_tell_who_cancelled() -> None:
    disabled = (1, "", "sacct: error: Slurm accounting storage is disabled")
    s, fake = slurm({"squeue": "5|2026-01-01T00:00:00|RUNNING|None|x|1000|\n", "sacct": disabled})
    s.attach(["5"])
    fake.script("squeue", "5|2026-01-01T00:00:00|CANCELLED|None|x|\n", when="-o")
    fake.script("squeue", "5                             0               00:00:08    slurm\n", when="-O")
    assert end(s, "5") == (C.FAILED, C.USER_KILLED, None, None)  # no record of who: its owner
    with pytest.raises(UnknownJobError, match="MinJobAge"):
        s.attach(["6"])  # squeue forgot it (or never had it), and there is no accounting


def test_slurm_unknown_ids_attach_none() -> None:
    s, fake = slurm({"squeue": (1, "", "slurm_load_jobs error: Invalid job id specified"), "sacct": ""})
    with pytest.raises(UnknownJobError) as info:
        s.attach(["999999"])
    assert str(info.value) == ("Slurm does not know job 999999: it never had it, or no longer knows it "
                               "(sacct has no such job either)")
    assert info.value.job_id == "999999" and isinstance(info.value, KeyError)
    fake.script("squeue", "5|2026-01-01T00:00:00|RUNNING|None|x|1000|\n", when="-o")
    with pytest.raises(UnknownJobError, match="jobs 999998, 999999:"):
        s.attach(["5", "999998", "999999"])
    with pytest.raises(UnknownJobError):
        s.get_job_status("5")  # nothing was attached


def test_slurm_half_recorded_end_is_known_not_ended() -> None:
    """The accounting record of an end may lack its exit code a moment (a step still RUNNING): the job
    is known, and its end is taken once complete."""
    half = ("128|2026-01-01T00:00:00|FAILED|0:0|x|1|00:00:00||1|slurm|None|1000|\n"
            "128.batch|2026-01-01T00:00:00|RUNNING|0:0|x|1|00:00:00||1|slurm|||\n")
    s, fake = slurm({"squeue": "", "sacct": half})
    s.attach(["128"])
    assert s.get_job_status("128") == C.UNDETERMINED
    fake.script("sacct", "128|2026-01-01T00:00:00|FAILED|1:0|x|1|00:00:00||1|slurm|None|\n128.batch|2026-01-01T00:00:00|FAILED|1:0|x|1|00:00:00||1|slurm||\n")
    assert end(s, "128") == (C.DONE, C.FINISHED_REGULARLY, 1, None)


def test_slurm_known_ids_are_fine_and_cost_nothing() -> None:
    s, fake = slurm({"sbatch": "42", "squeue": "42|2026-01-01T00:00:00|PENDING|Priority|N/A|\n"})
    [job_id] = s.job_submission([Job(command=["true"])])
    assert job_id is not None
    s.attach([job_id, job_id])
    assert [c.command for c in fake.history] == ["sbatch"] and not s.is_attached(job_id)
    s.attach(job_id)  # one id as a str: not its characters
    assert [c.command for c in fake.history] == ["sbatch"]


def test_slurm_a_failing_drms_attaches_nothing() -> None:
    s, _ = slurm({"squeue": (1, "", "slurm_load_jobs error: Unable to contact slurm controller")})
    with pytest.raises(CommandError, match="Unable to contact slurm controller"):
        s.attach(["5"])
    with pytest.raises(UnknownJobError):
        s.get_job_status("5")


def test_split_state() -> None:
    assert split_state("CANCELLED by 1000") == ("CANCELLED", "1000")
    assert split_state("COMPLETED") == ("COMPLETED", None) and split_state("") == ("", None)


# -- OpenPBS and Torque (qstat outputs recorded from the images) -------------------------------

PBS = {"openpbs": ("pbspro", ".json", pbs.parse_qstat_json), "torque": ("torque", ".txt", pbs.parse_qstat_text)}
CLUSTERS = pytest.mark.parametrize("cluster", list(PBS))


def recorded(cluster: str, case: str) -> str:
    return (PBS_FIXTURES / cluster / (case + PBS[cluster][1])).read_text()


def pbs_with(cluster: str, qstat: Answer) -> tuple[pbs.PBSProScheduler, ScriptedRunner]:
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0, options={"flavour": PBS[cluster][0],
                                                                     "mom_lost_after": "0"}))
    fake = ScriptedRunner({"qstat": qstat}, ensure_newline=False)
    s.runner = fake
    return s, fake


def id_of(cluster: str, case: str) -> str:
    [job_id] = PBS[cluster][2](recorded(cluster, case))
    return job_id


# Recorded: every job was alice's, and alice deleted killed_running and killed_held herself.
ATTACHED_ENDS = {
    "finished_ok": (C.DONE, C.FINISHED_REGULARLY, 0, None),
    "exit3": (C.DONE, C.FINISHED_REGULARLY, 3, None),
    "self_sigkill": (C.DONE, C.FINISHED_TERM_SIG, None, 9),
    "walltime_killed": (C.FAILED, C.EXIT_ABORTED, None, None),
    "killed_running": (C.FAILED, C.USER_KILLED, None, 15),
    "killed_held": (C.FAILED, C.EXIT_NOTRUN, None, None),
}


@CLUSTERS
@pytest.mark.parametrize("case", list(ATTACHED_ENDS))
def test_pbs_attached_ends_from_recorded_outputs(cluster: str, case: str) -> None:
    job_id = id_of(cluster, case)
    s, fake = pbs_with(cluster, recorded(cluster, case))
    s.attach([job_id])
    assert end(s, job_id) == ATTACHED_ENDS[case]
    assert len(fake.argvs("qstat")) == 1  # the attach's qstat (-x: with the history) told the end


@CLUSTERS
@pytest.mark.parametrize("case, status", [("held", C.USER_ON_HOLD), ("running", C.RUNNING), ("queued", C.QUEUED_ACTIVE)])
def test_pbs_attached_live_jobs(cluster: str, case: str, status: str) -> None:
    job_id = id_of(cluster, case)
    s, _ = pbs_with(cluster, recorded(cluster, case))
    s.attach([job_id.split(".")[0]])  # the sequence number alone: the server's name is added by qstat
    assert s.get_job_status(job_id.split(".")[0]) == status


def test_openpbs_deletion_by_another_user_is_aborted() -> None:
    text = recorded("openpbs", "killed_running").replace("terminated by alice@openpbs", "terminated by root@openpbs")
    job_id = id_of("openpbs", "killed_running")
    s, _ = pbs_with("openpbs", text)
    s.attach([job_id])
    assert end(s, job_id) == (C.FAILED, C.EXIT_ABORTED, None, 15)
    assert s.get_job_error(job_id) == "cancelled by user root@openpbs, not by the job's owner (user alice@openpbs)"
    # the owner from another host is the owner
    s2, _ = pbs_with("openpbs", text.replace("root@openpbs", "alice@login2"))
    s2.attach([job_id])
    assert s2.get_job_exit_info(job_id)[0] == C.USER_KILLED


@CLUSTERS
def test_pbs_one_qstat_for_all_ids_and_unknown_ids(cluster: str) -> None:
    jobs = list(PBS[cluster][2](recorded(cluster, "poll")))
    s, fake = pbs_with(cluster, recorded(cluster, "poll"))
    s.attach(jobs)
    [call] = fake.argvs("qstat")
    assert call[-len(jobs):] == jobs and (cluster == "torque" or "-x" in call)
    text = (PBS_FIXTURES / cluster / "unknown_id.txt").read_text()
    out, _, err = text.split("\n", 1)[1].removeprefix("--stdout\n").partition("--stderr\n")
    fake.script("qstat", (153, out, err))
    with pytest.raises(UnknownJobError) as info:
        s.attach(["99999"])
    name, forgets = {"openpbs": ("OpenPBS", "job_history_enable"), "torque": ("Torque", "keep_completed")}[cluster]
    assert str(info.value).startswith(f"{name} does not know job 99999: ") and forgets in str(info.value)


def test_observation_carries_owner_and_deleter() -> None:
    [attrs] = pbs.parse_qstat_json(recorded("openpbs", "killed_running")).values()
    obs = pbs.job_observation(attrs, "pbspro")
    assert (obs.owner, obs.cancelled_by, obs.cancelled) == ("alice@openpbs", "alice@openpbs", True)
    [attrs] = pbs.parse_qstat_text(recorded("torque", "killed_running")).values()
    obs = pbs.job_observation(attrs, "torque")
    assert (obs.owner, obs.cancelled_by) == ("alice@torque", None)  # Torque records no deleter
    [attrs] = pbs.parse_qstat_json(recorded("openpbs", "held")).values()
    assert pbs.job_observation(attrs, "pbspro").owner == "alice@openpbs"


def test_recorded_slurm_poll_still_parses() -> None:
    """The poll's formats are unchanged (the owner is asked for only by attach)."""
    rec = json.loads((Path(__file__).parent / "fixtures" / "slurm" / "poll-22.05.json").read_text())
    s, fake = slurm({"squeue": rec["squeue"], "sacct": rec["sacct"]})
    fake.ensure_newline = False
    for i in range(1, 10):
        s.track_job(str(i))
    assert sum(st in C.END_STATES for st in s.get_jobs_status([str(i) for i in range(1, 10)]).values()) == 8


def test_slurm_accounting_says_root_owns_a_job_that_never_ran() -> None:
    """Slurm 22.05's accounting gives UID 0 (root) for a job that never started, whoever submitted
    it (alice's held job, cancelled by alice: ``CANCELLED by 1000``, UID 0): not an owner."""
    from soma_schedulers.schedulers.slurm_accounting import SacctJob, SacctLine

    fields = ("JobIDRaw", "State", "ExitCode", "Start", "ElapsedRaw", "TotalCPU", "MaxRSS", "NodeList", "UID")

    def record(answer: str) -> SacctJob:  # one recorded sacct line
        return SacctJob(SacctLine(dict(zip(fields, answer.split("|"), strict=True))))

    never_ran = record("1|CANCELLED by 1000|0:0|2026-11-29T21:04:32|0|00:00:00||None assigned|0")
    assert never_ran.owner() is None and never_ran.cancelled_by == "1000"
    assert record("2|CANCELLED by 1000|0:15|2026-11-29T21:04:32|3|00:00:00||c1|1000").owner() == "1000"
