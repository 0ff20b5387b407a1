"""Unit tests of the Slurm backend: exit codes, one poll, outputs cut short, lost answers, job scripts,
and each case's end replayed from squeue/sacct outputs recorded on Slurm 22.05 and 24.11
(tests/fixtures/slurm/, made by its capture.py)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from recorded_cases import ENDS  # tests/recorded_cases.py

from soma_schedulers import constants as C
from soma_schedulers.batch import Observation
from soma_schedulers.config import SchedulerConfig
from soma_schedulers.job import Job
from soma_schedulers.schedulers import slurm_scheduler as slurm
from soma_schedulers.testing.fakes import Answer, Call, ScriptedRunner, times_out
from soma_schedulers.usage import parse_hms, parse_usage


def test_slurm_exit_codes() -> None:
    assert slurm.parse_exit_code("3:0") == (3, None)
    assert slurm.parse_exit_code("0:9") == (None, 9)
    assert slurm.decode_wait_status(768) == (3, None)
    assert slurm.decode_wait_status(9) == (None, 9)


def _not_squeue_o(call: Call) -> bool:
    return "-O" not in call.argv


def _slurm_with(answers: Mapping[str, Answer], **cfg: object) -> tuple[slurm.SlurmScheduler, ScriptedRunner]:
    """A Slurm scheduler whose commands are answered from ``answers`` (for parsing and policy tests).

    ``squeue`` answers the plain squeue only: an ``squeue -O`` (exit codes when accounting cannot
    tell) stays unscripted, so a test that does not expect it fails.
    """
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, **cfg))  # type: ignore[arg-type]
    fake = ScriptedRunner()
    for command, answer in answers.items():
        fake.script(command, answer, when=_not_squeue_o if command == "squeue" else None)
    s.runner = fake
    return s, fake


def test_slurm_poll_is_one_squeue_plus_one_sacct() -> None:
    squeue = "\n".join([
        "1|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|", "2|2026-01-01T00:00:00|RUNNING|None|2026-01-01T00:00:00|", "3|2026-01-01T00:00:00|COMPLETED|None|x|", "8|2026-01-01T00:00:00|FAILED|JobLaunchFailure|x|(null)",
        "4|2026-01-01T00:00:00|FAILED|NonZeroExitCode|x|soma_launch_error: command not found: /x",
    ])
    sacct = "\n".join([
        "3|2026-01-01T00:00:00|COMPLETED|0:0|2026-01-01T00:00:00|2|00:01.500||1|n1|None|", "3.batch|2026-01-01T00:00:00|COMPLETED|0:0|x|2|00:01.500|91232K|1|n1||",
        "4|2026-01-01T00:00:00|FAILED|127:0|2026-01-01T00:00:00|1|00:00:00||1|n1|None|",
        "5|2026-01-01T00:00:00|CANCELLED by 1000|0:15|2026-01-01T00:00:00|9|00:00:00||1|n1|None|",
        "6|2026-01-01T00:00:00|TIMEOUT|0:0|2026-01-01T00:00:00|60|00:00:59||1|n1|None|",
        "7|2026-01-01T00:00:00|CANCELLED by 0|0:0|2026-01-01T00:00:00|0|00:00:00||1|None assigned|None|",
        "8|2026-01-01T00:00:00|FAILED|0:9|2026-01-01T00:00:00|0|00:00:00||1|n1|None|",
    ])
    s, fake = _slurm_with({"squeue": squeue, "sacct": sacct, "scancel": ""})
    for i in "12345678":
        s.track_job(i)
    s.kill_job("7")
    status = s.get_jobs_status(list("12345678"))
    assert status == {"1": C.USER_ON_HOLD, "2": C.RUNNING, "3": C.DONE, "4": C.FAILED, "5": C.FAILED,
                      "6": C.FAILED, "7": C.FAILED, "8": C.DONE}
    assert [c.command for c in fake.history] == ["scancel", "squeue", "sacct"]
    assert s.get_job_exit_info("3") == (C.FINISHED_REGULARLY, 0, None, b"cput=00:00:02 mem=91232kb ncpus=1 walltime=00:00:02")
    assert s.get_job_exit_info("4")[:2] == (C.EXIT_ABORTED, 127)
    assert "command not found" in (s.get_job_error("4") or "")
    assert s.get_job_exit_info("5")[:3] == (C.EXIT_ABORTED, None, 15)  # cancelled by someone else
    assert s.get_job_exit_info("6")[0] == C.EXIT_ABORTED and "TIMEOUT" in (s.get_job_error("6") or "")
    assert s.get_job_exit_info("7") == (C.EXIT_NOTRUN, None, None, None)
    # 22.05 says JobLaunchFailure for a batch shell killed by a signal: still the job's own end
    assert s.get_job_exit_info("8")[:3] == (C.FINISHED_TERM_SIG, None, 9)


def test_slurm_output_cut_short_is_not_believed() -> None:
    # "13:0" cut to "1": the last line has no newline, so it is ignored, not read as exit 1
    s, fake = _slurm_with({"squeue": "", "sacct": "5|2026-01-01T00:00:00|COMPLETED|0:0|x|1|00:00:00||1|n1|None|\n6|2026-01-01T00:00:00|FAILED|1"})
    fake.ensure_newline = False
    s.track_job("5")
    s.track_job("6")
    assert s.get_jobs_status(["5", "6"]) == {"5": C.DONE, "6": C.UNDETERMINED}


def test_slurm_output_cut_at_any_byte_never_gives_a_wrong_end() -> None:
    """The fault test's ``truncate``, exhaustively: recorded squeue, sacct and ``squeue -O`` answers
    cut at every byte (one at a time) may leave jobs unknown for this poll, never ended wrongly."""
    import json

    rec = json.loads((Path(__file__).parent / "fixtures" / "slurm" / "poll-22.05.json").read_text())
    truth = {str(i): (i - 1) % 4 for i in range(1, 9)}  # job 9 still runs
    ids = [str(i) for i in range(1, 10)]

    def poll(squeue: str, sacct: str, squeue_o: str, late: bool) -> dict[str, Observation]:
        s = slurm.SlurmScheduler(SchedulerConfig(options={"accounting_grace": 0.0 if late else 10.0}))
        s._accounting = True if late else None
        fake = ScriptedRunner({"squeue": squeue, "sacct": sacct}, ensure_newline=False)  # as recorded, or cut
        fake.script("squeue", squeue_o, when="-O")
        s.runner = fake
        return s.query_jobs(ids)

    full = poll(rec["squeue"], rec["sacct"], rec["squeueO"], late=False)
    assert {j: o.exit_code for j, o in full.items() if o.ended} == truth and not full["9"].ended
    late = poll(rec["squeue"], "", rec["squeueO"], late=True)  # accounting has nothing yet
    assert {j: o.exit_code for j, o in late.items() if o.ended} == truth
    cases = 0
    for key in ("squeue", "sacct", "squeueO"):
        for n in range(len(rec[key])):
            answers = {**rec, key: rec[key][:n]}
            for obs in (poll(answers["squeue"], answers["sacct"], answers["squeueO"], late=False),
                        poll(answers["squeue"], "", answers["squeueO"], late=True)):
                for j, o in obs.items():
                    assert not o.ended or (o.exit_code, o.term_sig) == (truth[j], None), (key, n, j, o)
                cases += 1
    assert cases > 2000


def test_slurm_half_written_accounting_record_is_not_believed() -> None:
    """Recorded in a CI run (Slurm 22.05 under load): sacct had the job's end but not yet its exit
    code (``FAILED|0:0``, ``.batch`` still ``RUNNING``); slurmctld had logged WEXITSTATUS 1."""
    half = ("128|2026-01-01T00:00:00|FAILED|0:0|2026-11-25T03:53:24|1|00:00:00||1|slurm|None|\n"
            "128.batch|2026-01-01T00:00:00|RUNNING|0:0|2026-11-25T03:53:24|1|00:00:00||1|slurm||\n")
    full = ("128|2026-01-01T00:00:00|FAILED|1:0|2026-11-25T03:53:24|1|00:00:00||1|slurm|None|\n"
            "128.batch|2026-01-01T00:00:00|FAILED|1:0|2026-11-25T03:53:24|1|00:00:00||1|slurm||\n")
    fake = ScriptedRunner({"squeue": "128|2026-01-01T00:00:00|FAILED|NonZeroExitCode|2026-11-25T03:53:24|soma_token:x\n",
                           "sacct": half}, ensure_newline=False)
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, options={"accounting_grace": 0.3}))
    s.runner = fake
    s.track_job("128")
    assert s.get_job_status("128") == C.RUNNING  # not done with exit code 0
    fake.script("sacct", full)
    assert s.get_job_exit_info("128")[:3] == (C.FINISHED_REGULARLY, 1, None)
    # a step that stays live (its end never recorded): the job's line is believed after the grace
    s2 = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, options={"accounting_grace": 0.3}))
    s2.runner = fake
    fake.script("squeue", "")
    fake.script("sacct", half.replace("FAILED|0:0", "FAILED|1:0", 1))
    s2.track_job("128")
    assert s2.get_job_status("128") == C.UNDETERMINED
    time.sleep(0.35)
    assert s2.get_job_exit_info("128")[:3] == (C.FINISHED_REGULARLY, 1, None)


def test_slurm_record_without_its_batch_step_is_not_believed() -> None:
    """Recorded on slurm-cluster with 4 clients under load (2026-11-29): squeue said
    ``FAILED|NonZeroExitCode`` while sacct had ``FAILED|0:0`` and no ``.batch`` line yet; the job
    ran ``exit 3``. Reported done/0 before; now squeue's exit code after the grace."""
    squeue = "1441|2026-01-01T00:00:00|FAILED|NonZeroExitCode|2026-11-29T20:16:13|soma_token:65ae9bcc\n"
    half = "1441|2026-01-01T00:00:00|FAILED|0:0|2026-11-29T20:16:13|1|00:00:00||1|c2|None|\n"
    fake = ScriptedRunner({"squeue": squeue, "sacct": half}, ensure_newline=False)
    fake.script("squeue", "1441             768             0:00                    c2\n", when="-O")
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, options={"accounting_grace": 0.3}))
    s.runner = fake
    s.track_job("1441")
    assert s.get_job_status("1441") == C.RUNNING  # not done with exit code 0
    time.sleep(0.35)
    assert s.get_job_exit_info("1441")[:3] == (C.FINISHED_REGULARLY, 3, None)
    # the complete record, when it comes in time, is believed at once
    full = half.replace("FAILED|0:0", "FAILED|3:0") + "1441.batch|2026-01-01T00:00:00|FAILED|3:0|x|1|00:00:00||1|c2||\n"
    s2 = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0, options={"accounting_grace": 30}))
    s2.runner = ScriptedRunner({"squeue": squeue, "sacct": full}, ensure_newline=False)
    s2.track_job("1441")
    assert s2.get_job_exit_info("1441")[:3] == (C.FINISHED_REGULARLY, 3, None)


def test_slurm_lost_sbatch_answer_is_found_by_token() -> None:
    def squeue(call: Call) -> str:
        token = next(a for a in fake.history[0].argv if a.startswith("--comment=")).split("=", 1)[1]
        return f"41|other\n42|{token}\n"

    s, fake = _slurm_with({"sbatch": times_out(1.0), "squeue": squeue})
    assert s.job_submission([Job(command=["true"])]) == ["42"]
    assert fake.argvs()[1][:4] == ["squeue", "-h", "--me", "-t"]


def test_slurm_undetermined_then_failed_after_timeout() -> None:
    s, _ = _slurm_with({"squeue": (1, "", "slurm_load_jobs error: Unable to contact slurm controller")},
                       undetermined_timeout=0.2)
    s.track_job("9")
    assert s.get_job_status("9") == C.UNDETERMINED
    time.sleep(0.25)
    assert s.get_job_status("9") == C.FAILED
    assert s.get_job_exit_info("9") == (C.EXIT_ABORTED, None, None, None)
    assert "contact slurm controller" in (s.get_job_error("9") or "")


def test_slurm_script_quotes_everything() -> None:
    s = slurm.SlurmScheduler(SchedulerConfig(native_specification="--time=5"))
    assert "\r" not in s.job_script(Job(command=["echo", "a\r\nb"], env={"CR": "\r"}))  # sbatch refuses CRs
    job = Job(command=["echo", "$x", "`id`"], env={"A": "it's"}, name="n\nx", hold=True,
              parallel_job_info={"config_name": "MPI", "nodes_number": 2, "cpu_per_node": 3})
    script = s.job_script(job)
    assert script.splitlines()[1] == "#SBATCH --time=5"
    assert "exec echo '$x' '`id`'" in script and "export A='it'\"'\"'s'" in script
    argv = s.sbatch_argv(job)
    assert "--hold" in argv and "--job-name=n_x" in argv and "--nodes=2" in argv and "--ntasks-per-node=3" in argv
    assert shlex.split(script.splitlines()[-1])[1:] == ["echo", "$x", "`id`"]


# -- the backend on outputs recorded from the 22.05 and 24.11 images (tests/fixtures/slurm/capture.py) --

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
VERSIONS = ["22.05", "24.11"]
#: case -> (status, exit_status, exit_value, term_sig) the contract gives, whichever Slurm version.
END_STATES = {
    **ENDS,
    "time_limit": (C.FAILED, C.EXIT_ABORTED, 0, None),
    "usage": (C.DONE, C.FINISHED_REGULARLY, 0, None),
    "killed_held": (C.FAILED, C.EXIT_NOTRUN, None, None),  # kill_job while held
    "killed_running": (C.FAILED, C.USER_KILLED, None, None),  # kill_job while running
}


def recorded(version: str, case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / version / f"{case}.json").read_text())
    return data


def replaying(calls: list[dict[str, Any]]) -> ScriptedRunner:
    """A runner answering each recorded command (same argv) with its recorded exit status, stdout
    and stderr, exactly as they were; any other command fails the test."""
    replies: dict[tuple[str, ...], list[tuple[int, str, str]]] = {}
    for c in calls:
        replies.setdefault(tuple(c["argv"]), []).append((c["returncode"], c["stdout"], c["stderr"]))

    def answer(call: Call) -> tuple[int, str, str] | AssertionError:
        left = replies.get(call.argv)
        if not left:
            return AssertionError(f"not recorded: {shlex.join(call.argv)} (re-run tests/fixtures/slurm/capture.py)")
        return left.pop(0) if len(left) > 1 else left[0]

    fake = ScriptedRunner(ensure_newline=False)
    for command in {c["argv"][0] for c in calls}:
        fake.script(command, answer)
    return fake


def replay(rec: dict[str, Any], ids: list[str]) -> slurm.SlurmScheduler:
    """A scheduler following ``ids`` through the recorded steps: each poll (or ``kill_job``) runs the
    recorded commands, in order, and gives the statuses the real scheduler gave."""
    s = slurm.SlurmScheduler(SchedulerConfig(status_cache_seconds=0))
    for job_id in ids:
        s.track_job(job_id)
    for step in rec["steps"]:
        fake = replaying(step["calls"])
        s.runner = fake
        if step["action"] == "kill":
            s.kill_job(step["job_id"])
            assert {i: s.last_status(i) for i in ids} == step["status"]
        else:
            assert s.get_jobs_status(ids) == step["status"]
        assert fake.argvs() == [c["argv"] for c in step["calls"]]
    s.runner = ScriptedRunner()  # an ended job is never asked about again
    return s


def end_of(s: slurm.SlurmScheduler, job_id: str) -> dict[str, Any]:
    status = s.get_job_status(job_id)
    code, value, sig, usage = s.get_job_exit_info(job_id)
    return {"status": status, "exit_info": [code, value, sig, usage.decode() if usage is not None else None],
            "error": s.get_job_error(job_id)}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", list(END_STATES))
def test_recorded_end_states(version: str, case: str) -> None:
    """Replaying the real outputs gives the end the real scheduler reported, the contract's."""
    rec = recorded(version, case)
    s = replay(rec, [rec["job_id"]])
    end = end_of(s, rec["job_id"])
    assert end == rec["end"]
    assert (end["status"], *end["exit_info"][:3]) == END_STATES[case]
    if case == "launch_error":
        assert end["error"] == "command not found: /nonexistent/soma-missing-program"
    if case == "time_limit":
        assert "TIMEOUT" in end["error"]
    usage = parse_usage((end["exit_info"][3] or "").encode())
    if case == "killed_held":
        assert usage == {}
    else:
        assert usage["ncpus"] == "1" and "walltime" in usage
    if case == "usage":  # 5 s of a busy loop (sharing the CPUs: 3 s of CPU seen on 24.11)
        assert (parse_hms(usage["cput"]) or 0) >= 1 and (parse_hms(usage["walltime"]) or 0) >= 4


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_poll_of_every_job(version: str) -> None:
    """One poll of every case (ended), replayed: one squeue and one sacct, each job's own end (a
    cancelled job was not killed by this scheduler: aborted). squeue no longer lists most jobs
    (``MinJobAge`` is 30 s in the images): their ends come from sacct alone."""
    rec = recorded(version, "poll_all")
    ids = list(rec["cases"].values())
    s = replay(rec, ids)
    [poll] = rec["steps"]
    assert [c["argv"][0] for c in poll["calls"]] == ["squeue", "sacct"]
    listed = {line.split("|")[0] for line in poll["calls"][0]["stdout"].splitlines()}
    assert rec["cases"]["launch_error"] not in listed  # forgotten by squeue (MinJobAge)
    for case, job_id in rec["cases"].items():
        end = end_of(s, job_id)
        if case.startswith("killed_"):
            assert end["exit_info"][0] == C.EXIT_ABORTED and end["error"] == "cancelled outside this scheduler"
        elif case != "launch_error":  # see the next test
            assert end == recorded(version, case)["end"], case


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_unknown_id_is_undetermined(version: str) -> None:
    rec = recorded(version, "unknown_id")
    squeue = rec["steps"][0]["calls"][0]
    assert squeue["returncode"] != 0 and "Invalid job id" in squeue["stderr"]
    s = replay(rec, [rec["job_id"]])
    s.runner = replaying(rec["steps"][0]["calls"])  # and at the next poll too
    assert s.get_job_exit_info(rec["job_id"]) == (C.EXIT_UNDETERMINED, None, None, None)


@pytest.mark.parametrize("version", VERSIONS)
def test_fixtures_are_real_recordings(version: str) -> None:
    """Every fixture of a version comes from one capture on that version's image."""
    info = recorded(version, "version")
    assert info["sinfo --version"].split()[1].startswith(f"{version}.")
    assert any(line.startswith("MaxArraySize") for line in info["scontrol show config"])
    for path in (FIXTURES / version).glob("*.json"):
        assert json.loads(path.read_text())["recorded"] == info["recorded"], path.name
    assert {p.stem for p in (FIXTURES / version).glob("*.json")} == {*END_STATES, "poll_all", "unknown_id",
                                                                      "version"}


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_launch_error_after_min_job_age(version: str) -> None:
    """The launch error's Comment is in sacct too (the images keep Comments in accounting:
    ``AccountingStoreFlags=job_comment``): once MinJobAge has passed, sacct's FAILED 127:0 is
    still read as a launch error, not as the program's exit 127."""
    rec = recorded(version, "poll_all")
    job_id = rec["cases"]["launch_error"]
    s = replay(rec, list(rec["cases"].values()))
    assert end_of(s, job_id) == recorded(version, "launch_error")["end"]


# -- job arrays -----------------------------------------------------------------------------------
_CONFIG = "MaxArraySize            = 1001\nMaxJobCount             = 10000\n"


def test_slurm_array_submission_is_one_sbatch_with_one_id_per_task() -> None:
    s, fake = _slurm_with({"scontrol": _CONFIG, "sbatch": "57\n"})
    ids = s.job_submission([Job(command=["echo", str(n)], name="same") for n in range(3)])
    assert ids == ["57_0", "57_1", "57_2"]
    [sbatch] = fake.calls_of("sbatch")
    assert "--array=0-2" in sbatch.argv and "--job-name=same" in sbatch.argv
    script = (sbatch.input or b"").decode()
    assert 'case "$SLURM_ARRAY_TASK_ID" in' in script and "exec echo 2" in script


def test_slurm_lost_array_answer_is_found_by_its_token() -> None:
    def squeue(call: Call) -> str:
        token = next(a for a in fake.calls_of("sbatch")[0].argv if a.startswith("--comment=")).split("=", 1)[1]
        return f"41|other\n57_[1-2]|{token}\n57_0|{token}\n"  # pending tasks as one range, without -r

    s, fake = _slurm_with({"scontrol": _CONFIG, "sbatch": times_out(1.0), "squeue": squeue})
    assert s.job_submission([Job(command=["true"]), Job(command=["false"])]) == ["57_0", "57_1"]
    assert len(fake.calls_of("sbatch")) == 1  # never submitted twice


def test_slurm_pending_task_cancelled_alone_ends_before_running() -> None:
    # squeue -r lists the pending task; after scancel it is in neither squeue nor sacct (22.05)
    s, fake = _slurm_with({"scontrol": _CONFIG, "sbatch": "7\n", "scancel": "",
                           "squeue": ["7_0|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|tok\n7_1|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|tok\n",
                                      "7_1|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|tok\n", "7_1|2026-01-01T00:00:00|PENDING|JobHeldUser|N/A|tok\n"],
                           "sacct": ""})
    ids = s.job_submission([Job(command=["true"], hold=True), Job(command=["true"], hold=True)])
    assert s.get_jobs_status(ids) == dict.fromkeys(ids, C.USER_ON_HOLD)
    assert "-r" in fake.calls_of("squeue")[0].argv
    s.kill_job("7_0")
    assert s.get_job_status("7_0") == C.FAILED
    assert s.get_job_exit_info("7_0") == (C.EXIT_NOTRUN, None, None, None)
    assert s.get_job_status("7_1") == C.USER_ON_HOLD


def test_slurm_max_array_size_zero_means_single_submissions(caplog: pytest.LogCaptureFixture) -> None:
    s, fake = _slurm_with({"scontrol": "MaxArraySize            = 0\n", "sbatch": ["5\n", "6\n"]})
    assert s.job_submission([Job(command=["true"]), Job(command=["true"])]) == ["5", "6"]
    assert s.arrays_refused and "MaxArraySize is 0" in s.arrays_refused
    assert all("--array" not in " ".join(c.argv) for c in fake.calls_of("sbatch"))
