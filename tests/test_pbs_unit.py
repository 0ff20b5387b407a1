"""PBSProScheduler without daemons: parsers and policies on qstat outputs recorded from the real
OpenPBS 23.06.06 and Torque 6.1-dev images (tests/fixtures/pbs/, made by its capture.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from pathlib import Path

import pytest
from recorded_cases import ENDS  # tests/recorded_cases.py

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.errors import CommandTimeoutError, DRMError, UnknownJobError
from soma_schedulers.runner import in_container
from soma_schedulers.scheduler import get_scheduler_implementation
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.schedulers.pbs import scheduler as pbs_scheduler
from soma_schedulers.testing.fakes import Answer, Call, ScriptedRunner
from soma_schedulers.usage import parse_usage

FIXTURES = Path(__file__).parent / "fixtures" / "pbs"
FLAVOURS = {"openpbs": ("pbspro", ".json", pbs.parse_qstat_json), "torque": ("torque", ".txt", pbs.parse_qstat_text)}


def fixture(cluster: str, case: str) -> str:
    return (FIXTURES / cluster / (case + FLAVOURS[cluster][1])).read_text()


def raw(cluster: str, name: str) -> str:
    return (FIXTURES / cluster / name).read_text()


def job_id_of(cluster: str, case: str) -> str:
    [job_id] = FLAVOURS[cluster][2](fixture(cluster, case))
    return job_id


def scheduler(cluster: str, answers: dict[str, Answer], **options: str) -> pbs.PBSProScheduler:
    """A scheduler whose DRMS commands are answered from ``answers``, exactly as given (a recorded
    output, or one cut short: no newline added)."""
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0,
                                            options={"flavour": FLAVOURS[cluster][0], "mom_lost_after": "0",
                                                     **options}))  # MOM reports: test_pbs_momcheck
    s.runner = ScriptedRunner(answers, ensure_newline=False)
    return s


def fake(s: pbs.PBSProScheduler) -> ScriptedRunner:
    assert isinstance(s.runner, ScriptedRunner)
    return s.runner


def qstat_calls(s: pbs.PBSProScheduler) -> list[list[str]]:
    return fake(s).argvs("qstat")


CLUSTERS = pytest.mark.parametrize("cluster", list(FLAVOURS))

# case -> (status, exit_status, exit_value, term_sig) without any kill_job
END_STATES = {
    **ENDS,
    "walltime_killed": (C.FAILED, C.EXIT_ABORTED, None, None),
    "usage": (C.DONE, C.FINISHED_REGULARLY, 0, None),
    # deleted by someone else: the DRMS ended it
    "killed_running": (C.FAILED, C.EXIT_ABORTED, None, 15),
    "killed_held": (C.FAILED, C.EXIT_ABORTED, None, None),
}
LIVE = {"queued": C.QUEUED_ACTIVE, "running": C.RUNNING, "held": C.USER_ON_HOLD}


# -- parsers -----------------------------------------------------------------------------------

@CLUSTERS
def test_version(cluster: str) -> None:
    impl, version = pbs.parse_version(raw(cluster, "version.txt"))
    assert (impl, version) == {"openpbs": ("pbspro", "23.06.06"), "torque": ("torque", "6.1-dev")}[cluster]


def test_version_unknown() -> None:
    with pytest.raises(DRMError, match="neither"):
        pbs.parse_version("qstat: command not found")


@CLUSTERS
@pytest.mark.parametrize("case", [*END_STATES, *LIVE])
def test_every_fixture_parses_to_one_job(cluster: str, case: str) -> None:
    jobs = FLAVOURS[cluster][2](fixture(cluster, case))
    assert len(jobs) == 1
    attrs = next(iter(jobs.values()))
    assert attrs["job_state"] in "QRHFC"
    assert isinstance(attrs.get("resources_used"), dict) or case in LIVE or case == "killed_held"
    assert str(attrs["Job_Owner"]).startswith("alice@")


def test_text_parser_joins_continuation_lines() -> None:
    [attrs] = pbs.parse_qstat_text(fixture("torque", "killed_running")).values()
    assert "PBS_O_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin,PBS_O_LANG" in attrs["Variable_List"]
    assert attrs["exit_status"] == 271 and attrs["resources_used"]["walltime"] == "00:00:04"
    text = "Job Id: 5.h\n    empty =\n    a.b = 1\n    c = x\n\ty z\n"
    assert pbs.parse_qstat_text(text) == {"5.h": {"empty": "", "a": {"b": 1}, "c": "xy z"}}
    assert pbs.parse_qstat_text("") == {} and pbs.parse_qstat_json("") == {}


def test_json_parser_tolerates_control_characters() -> None:
    text = '{"Jobs": {"1.h": {"job_state": "R", "Job_Name": "a\tb"}}}'
    assert pbs.parse_qstat_json(text)["1.h"]["Job_Name"] == "a\tb"


@CLUSTERS
def test_usage_is_measured_resources_used(cluster: str) -> None:
    [attrs] = FLAVOURS[cluster][2](fixture(cluster, "usage")).values()
    usage = pbs.usage_of(attrs)
    assert usage is not None
    items = parse_usage(usage)
    assert items["walltime"] >= "00:00:07" and items["cput"] >= "00:00:02", usage
    assert int(items["mem"].removesuffix("kb")) > 10000, usage
    assert pbs.usage_of({"resources_used": {}}) is None and pbs.usage_of({}) is None


def test_exit_status_forms() -> None:
    def obs(**attrs: object) -> pbs.Observation:
        return pbs.job_observation({"job_state": "F", "stime": "x", **attrs}, "pbspro")

    assert obs(Exit_status=256 + 9).term_sig == 9 and obs(Exit_status=265).cancelled
    assert obs(Exit_status=128 + 15).term_sig == 15 and not obs(Exit_status=143).cancelled
    assert obs(Exit_status=143, substate=91).cancelled  # OpenPBS: deleted (qdel), shell reported 128+s
    assert obs(Exit_status=200).exit_code == 200 and obs(Exit_status=128).exit_code == 128
    assert "walltime" in (obs(Exit_status=-29).aborted or "")
    assert "walltime" in (pbs.job_observation({"job_state": "C", "exit_status": "-11"}, "torque").aborted or "")
    assert "-99" in (obs(Exit_status=-99).aborted or "")
    assert obs(Exit_status=127).launch_error is None
    assert obs(Exit_status=127, Priority=-1020).launch_error == "cannot change to working directory"
    queued_deleted = pbs.job_observation({"job_state": "F"}, "pbspro")
    assert queued_deleted.cancelled and queued_deleted.started is False
    assert pbs.job_observation({"job_state": "H", "Hold_Types": "uo"}, "pbspro").status == C.USER_SYSTEM_ON_HOLD
    assert pbs.job_observation({"job_state": "H", "Hold_Types": "s"}, "torque").status == C.SYSTEM_ON_HOLD
    assert pbs.job_observation({"job_state": "E"}, "torque").status == C.RUNNING
    assert pbs.job_observation({"job_state": "?"}, "torque").status == C.UNDETERMINED


# -- the backend on recorded outputs --------------------------------------------------------

@CLUSTERS
@pytest.mark.parametrize("case", list(END_STATES))
def test_end_states_from_recorded_outputs(cluster: str, case: str) -> None:
    job_id = job_id_of(cluster, case)
    s = scheduler(cluster, {"qstat": fixture(cluster, case)})
    s.track_job(job_id)
    state = (s.get_job_status(job_id), *s.get_job_exit_info(job_id)[:3])
    assert state == END_STATES[case]
    assert s.get_job_exit_info(job_id) == s.get_jobs_exit_info([job_id])[job_id]
    assert len(qstat_calls(s)) == 1  # ended: never asked again
    error = s.get_job_error(job_id) or ""
    if case == "launch_error":
        assert error == "command not found"
    if case == "walltime_killed":
        assert "walltime limit exceeded" in error
    usage = s.get_job_exit_info(job_id)[3]
    assert (usage is None) == (case == "killed_held"), usage


@CLUSTERS
@pytest.mark.parametrize(("case", "before", "expected"), [
    ("killed_running", "running", (C.FAILED, C.USER_KILLED, None, 15)),
    ("killed_held", "held", (C.FAILED, C.EXIT_NOTRUN, None, None)),
])
def test_kill_from_recorded_outputs(cluster: str, case: str, before: str, expected: tuple[object, ...]) -> None:
    job_id = job_id_of(cluster, case)
    assert job_id == job_id_of(cluster, before)
    s = scheduler(cluster, {"qstat": fixture(cluster, before), "qdel": ""})
    s.track_job(job_id)
    assert s.get_job_status(job_id) == LIVE[before]
    s.kill_job(job_id)
    fake(s).script("qstat", fixture(cluster, case))
    assert (s.get_job_status(job_id), *s.get_job_exit_info(job_id)[:3]) == expected
    assert ["qdel", job_id] in fake(s).argvs()
    s.kill_job(job_id)  # finished: nothing
    assert fake(s).argvs("qdel") == [["qdel", job_id]]


@CLUSTERS
def test_one_poll_is_one_qstat(cluster: str) -> None:
    jobs = FLAVOURS[cluster][2](fixture(cluster, "poll"))
    assert len(jobs) == 10
    s = scheduler(cluster, {"qstat": fixture(cluster, "poll")})
    for job_id in jobs:
        s.track_job(job_id)
    status = s.get_jobs_status(list(jobs))
    assert len(qstat_calls(s)) == 1
    call = qstat_calls(s)[0]
    assert call[-10:] == list(jobs)  # the ids named: one request for all of them
    assert call[:2] == (["qstat", "-f"] if cluster == "torque" else ["qstat", "-x"])
    if cluster == "openpbs":
        assert call[:7] == ["qstat", "-x", "-f", "-F", "json", "-E", call[6]]
    # killed_held, killed_running (deleted by someone else for this instance), launch error, walltime
    assert sorted(status.values()) == [C.DONE] * 6 + [C.FAILED] * 4, status
    # the same answers from the single-id methods, no new qstat: everything ended
    for job_id in jobs:
        s.get_job_status(job_id)
        s.get_job_exit_info(job_id)
    assert len(qstat_calls(s)) == 1


@CLUSTERS
def test_live_poll(cluster: str) -> None:
    jobs = FLAVOURS[cluster][2](fixture(cluster, "poll_live"))
    s = scheduler(cluster, {"qstat": fixture(cluster, "poll_live")})
    for job_id in jobs:
        s.track_job(job_id)
    assert sorted(s.get_jobs_status(list(jobs)).values()) == sorted(LIVE.values())


@CLUSTERS
def test_many_ids_list_every_job(cluster: str) -> None:
    s = scheduler(cluster, {"qstat": fixture(cluster, "poll")}, max_named_ids="3")
    ids = list(FLAVOURS[cluster][2](fixture(cluster, "poll")))
    for job_id in ids:
        s.track_job(job_id)
    s.get_jobs_status(ids)
    [call] = qstat_calls(s)
    assert not any(i in call for i in ids) and "-E" not in call


@CLUSTERS
def test_unknown_id_is_not_an_error(cluster: str) -> None:
    text = raw(cluster, "unknown_id.txt")
    rc = int(text.split("\n", 1)[0].removeprefix("rc="))
    out, _, err = text.split("\n", 1)[1].removeprefix("--stdout\n").partition("--stderr\n")
    assert rc == 153 and "Unknown Job Id" in err
    s = scheduler(cluster, {"qstat": (rc, out, err)}, )
    s.track_job("99999.x")
    assert s.get_job_status("99999.x") == C.UNDETERMINED  # no longer known: undetermined, then failed
    fake(s).script("qstat", (15010, "", "Connection refused\nqstat: cannot connect to server x (errno=15010)"))
    assert s.get_job_status("99999.x") == C.UNDETERMINED


def test_undetermined_for_too_long_is_failed() -> None:
    s = scheduler("torque", {"qstat": (15010, "", "qstat: cannot connect to server")}, )
    s.config = SchedulerConfig(status_cache_seconds=0, undetermined_timeout=0.1)
    s.track_job("3.x")
    assert s.get_job_status("3.x") == C.UNDETERMINED
    time.sleep(0.15)
    assert s.get_job_status("3.x") == C.FAILED
    assert "cannot connect" in (s.get_job_error("3.x") or "")


def test_unreadable_json_falls_back_to_text() -> None:
    text = fixture("torque", "exit3").replace("exit_status", "Exit_status")
    job_id = job_id_of("torque", "exit3")

    def qstat(call: Call) -> str:
        return "{not json" if "json" in call.argv else text

    s = scheduler("openpbs", {"qstat": qstat})
    s.track_job(job_id)
    assert s.get_job_exit_info(job_id)[:2] == (C.FINISHED_REGULARLY, 3)
    assert [c[:3] for c in qstat_calls(s)] == [["qstat", "-x", "-f"], ["qstat", "-x", "-f"]]
    assert "json" not in qstat_calls(s)[1]


@CLUSTERS
def test_extended_status_is_a_dict(cluster: str) -> None:
    job_id = job_id_of(cluster, "exit3")
    s = scheduler(cluster, {"qstat": fixture(cluster, "exit3")})
    s.track_job(job_id)
    ext = s.get_job_extended_status(job_id)
    assert ext["job_state"] in ("F", "C") and isinstance(ext["resources_used"], dict)
    assert ext[{"openpbs": "Exit_status", "torque": "exit_status"}[cluster]] == 3
    ext["job_state"] = "changed"
    assert s.get_job_extended_status(job_id)["job_state"] != "changed"  # a copy
    # an id this instance did not submit: asked directly
    other = job_id_of(cluster, "finished_ok")
    fake(s).script("qstat", fixture(cluster, "finished_ok"))
    assert s.get_job_extended_status(other)["job_state"] in ("F", "C")
    fake(s).script("qstat", (153, "", f"qstat: Unknown Job Id {other}"))
    with pytest.raises(UnknownJobError):
        s.get_job_extended_status("424242.nowhere")


def test_force_path_when_a_running_job_lingers() -> None:
    for cluster, force in (("openpbs", ["qdel", "-W", "force"]), ("torque", ["qdel", "-W", "0"])):
        job_id = job_id_of(cluster, "running")
        s = scheduler(cluster, {"qstat": fixture(cluster, "running"), "qdel": ""}, force_kill_after="0.05")
        s.track_job(job_id)
        assert s.get_job_status(job_id) == C.RUNNING
        s.kill_job(job_id)
        assert s.get_job_status(job_id) == C.RUNNING
        time.sleep(0.1)
        for _ in range(3):
            s.get_job_status(job_id)
        qdels = fake(s).argvs("qdel")
        assert qdels == [["qdel", job_id], [*force, job_id]], (cluster, qdels)  # forced once


def test_qdel_of_a_job_that_just_ended_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    job_id = job_id_of("openpbs", "running")
    s = scheduler("openpbs", {"qstat": fixture("openpbs", "running"),
                              "qdel": (35, "", f"qdel: Job has finished {job_id}")})
    s.track_job(job_id)
    s.get_job_status(job_id)
    s.kill_job(job_id)
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


# -- submission ------------------------------------------------------------------------------

def test_qsub_argv_and_script() -> None:
    s = scheduler("openpbs", {"qsub": "12.server\n"}, )
    s.config = SchedulerConfig(native_specification=("-l walltime=00:10:00", "-l mem=1gb"))
    job = Job(command=["echo", "$x", "`id`", "end\\"], env={"A": "it's $B"}, name="1 odd (name);'é'",
              queue="workq", hold=True, stdin="/in put", join_stderrout=True, working_directory="/w d")
    argv = s.qsub_argv(job)
    assert argv == ["qsub", "-o", "/dev/null", "-e", "/dev/null", "-N", "j1_odd__name_____", "-q", "workq", "-h"]
    script = s.job_script(job)
    lines = script.splitlines()
    assert lines[:3] == ["#!/bin/sh", "#PBS -l walltime=00:10:00", "#PBS -l mem=1gb"]
    assert "export A='it'\"'\"'s $B'" in script and "exec 2>&1" in script and "cd -- '/w d'" in script
    assert shlex.split(lines[-1])[1:] == ["echo", "$x", "`id`", "end\\"]
    assert "qalter -p" in script and "$PBS_JOBID" in script
    assert s.job_submission([job]) == ["12.server"]
    [qsub] = fake(s).argvs("qsub")
    assert qsub[:-2] == argv and qsub[-2] == "-v"  # the script went on stdin, no file
    assert re.fullmatch(r"SOMA_SCHEDULERS_TOKEN=[0-9a-f]{32}", qsub[-1])
    spec_as_str = scheduler("torque", {})
    spec_as_str.config = SchedulerConfig(native_specification="-l nodes=1:ppn=2")
    assert spec_as_str.job_script(Job(command=["true"])).splitlines()[1] == "#PBS -l nodes=1:ppn=2"
    per_job = spec_as_str.job_script(Job(command=["true"], native_specification=["-l a=1", "-l b=2"]))
    assert per_job.splitlines()[1:3] == ["#PBS -l a=1", "#PBS -l b=2"]


def test_parallel_job_info_per_flavour() -> None:
    info = {"config_name": "native", "nodes_number": 2, "cpu_per_node": 3}
    assert scheduler("openpbs", {}).qsub_argv(Job(command=["x"], parallel_job_info=info))[-4:] == [
        "-l", "select=2:ncpus=3:mpiprocs=3", "-l", "place=scatter"]
    omp = {"config_name": "OpenMP", "nodes_number": 1, "cpu_per_node": 4}
    assert "select=1:ncpus=4:ompthreads=4:mpiprocs=1" in scheduler("openpbs", {}).qsub_argv(
        Job(command=["x"], parallel_job_info=omp))
    assert scheduler("torque", {}).qsub_argv(Job(command=["x"], parallel_job_info=info))[-2:] == ["-l", "nodes=2:ppn=3"]


def _listing(cluster: str, token: str) -> str:
    if cluster == "openpbs":
        other = {"Variable_List": {"SOMA_SCHEDULERS_TOKEN": "0" * 32}}
        mine = {"Variable_List": {"PBS_O_HOME": "/home/alice", "SOMA_SCHEDULERS_TOKEN": token}}
        return json.dumps({"Jobs": {"41.openpbs": other, "42.openpbs": mine}})
    return (f"Job Id: 41.torque\n    Variable_List = PBS_O_HOME=/home/alice,SOMA_SCHEDULERS_TOKEN={'0' * 32}\n\n"
            f"Job Id: 42.torque\n    Variable_List = PBS_O_HOME=/home/alice,\n\tSOMA_SCHEDULERS_TOKEN={token}\n\n")


@CLUSTERS
def test_lost_qsub_answer_is_found_by_its_token(cluster: str) -> None:
    tokens: list[str] = []

    def qsub(call: Call) -> str:  # qsub made the job, then its answer was lost
        tokens.append(call.argv[-1].split("=", 1)[1])
        raise CommandTimeoutError(call.argv, 5.0)

    s = scheduler(cluster, {"qsub": qsub, "qstat": lambda call: _listing(cluster, tokens[-1])})
    assert s.job_submission([Job(command=["true"])]) == [f"42.{cluster}"]
    assert s.get_job_status(f"42.{cluster}") is not None
    # Nothing carries the token: refused, with the reason.
    s = scheduler(cluster, {"qsub": qsub, "qstat": ""})
    assert s.job_submission([Job(command=["true"])]) == [None]
    assert "no job carries its token" in (s.last_submission_errors[0] or "")


@CLUSTERS
def test_qsub_answer_cut_short_is_no_answer(cluster: str) -> None:
    tokens: list[str] = []

    def qsub(call: Call) -> str:
        tokens.append(call.argv[-1].split("=", 1)[1])
        return "4"  # "42.server\n" cut: never taken as job 4

    s = scheduler(cluster, {"qsub": qsub, "qstat": lambda call: _listing(cluster, tokens[-1])})
    assert s.job_submission([Job(command=["true"])]) == [f"42.{cluster}"]
    # A listing cut short is asked again; a JSON one cut short does not parse.
    calls = []

    def cut_then_whole(call: Call) -> str:
        calls.append(call)
        whole = _listing(cluster, tokens[-1])
        return whole[:-5] if len(calls) == 1 else whole

    s = scheduler(cluster, {"qsub": qsub, "qstat": cut_then_whole})
    assert s.job_submission([Job(command=["true"])]) == [f"42.{cluster}"] and len(calls) == 2


def test_native_variables_merge_with_the_token() -> None:
    s = scheduler("openpbs", {"qsub": "7.openpbs\n"})
    job = Job(command=["true"], native_specification=["-l walltime=1:00", "-v A=1,B=two words", "-vC=3"])
    assert s.job_submission([job]) == ["7.openpbs"]
    qsub = fake(s).argvs()[-1]
    assert qsub[-1].startswith("A=1,B=two words,C=3,SOMA_SCHEDULERS_TOKEN=")
    script = s.job_script(job)
    assert "#PBS -l walltime=1:00" in script and "#PBS -v" not in script


def test_text_listing_cut_inside_a_job_drops_that_job() -> None:
    text = fixture("torque", "poll")
    whole = pbs.complete_records(text, pbs.parse_qstat_text(text))
    assert len(whole) >= 2
    cut = text[: text.rindex("Exit_status") if "Exit_status" in text else len(text) - 3]
    parsed = pbs.complete_records(cut, pbs.parse_qstat_text(cut))
    assert list(parsed) == list(whole)[:-1]  # the last job waits for the next poll


def test_submission_errors_are_kept() -> None:
    s = scheduler("torque", {"qsub": (1, "", "qsub: submit error (Unknown queue MSG=cannot locate queue)")})
    assert s.job_submission([Job(command=["true"], queue="nope"), Job(command=["true"])]) == [None, None]
    assert "Unknown queue" in (s.last_submission_errors[0] or "") and "(queue nope)" in (s.last_submission_errors[0] or "")
    nonutf8 = Job(command=["echo", os.fsdecode(b"caf\xe9")], env={"B": os.fsdecode(b"\xff")})
    fake(s).script("qsub", "5.h\n")
    assert s.job_submission([nonutf8]) == ["5.h"]
    script = fake(s).history[-1].input or b""
    assert b"echo 'caf\xe9'" in script and b"export B='\xff'" in script  # surrogate escapes: the bytes
    fake(s).script("qsub", "garbage output\n")
    fake(s).script("qstat", "")  # and no job carries the token
    assert s.job_submission([Job(command=["true"])]) == [None]
    assert "no job id" in (s.last_submission_errors[0] or "")


def test_launch_report_marks_each_kind() -> None:
    import subprocess

    report = pbs.launch_report()
    for reason, prio in pbs.LAUNCH_PRIORITIES.items():
        script = f'qalter() {{ echo "$@"; }}; soma_reason={shlex.quote(reason + " /x")}; PBS_JOBID=7.h; {report.replace(">/dev/null 2>&1", "")}'
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
        assert out.splitlines()[-1] == f"-p {prio} 7.h", out


# -- detection, version, types ----------------------------------------------------------------

def test_flavour_detection_and_version() -> None:
    s = pbs.PBSProScheduler(SchedulerConfig())
    s.runner = ScriptedRunner({"qstat": (0, "", raw("torque", "version.txt"))}, ensure_newline=False)
    assert s.get_pbs_version() == ("torque", "6.1-dev") and s.flavour == "torque"
    s.get_pbs_version()
    assert fake(s).argvs() == [["qstat", "--version"]]
    with pytest.raises(DRMError, match="FLAVOUR"):
        pbs.PBSProScheduler(SchedulerConfig(options={"flavour": "lsf"}))


def test_types() -> None:
    assert get_scheduler_implementation("pbspro") is pbs.PBSProScheduler
    assert issubclass(get_scheduler_implementation("torque"), pbs.PBSProScheduler)


def test_out_of_container_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pbs_scheduler, "_static_runner", None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no qstat here
    monkeypatch.setenv("CASA_HOST_DIR", "/host")
    monkeypatch.setenv("SOMA_SCHEDULERS_BRIDGE_HOST", "login1")
    prefix = pbs.PBSProScheduler.out_of_container_command()
    assert prefix[0] == "ssh" and "login1" in prefix and "BatchMode=yes" in prefix
    assert pbs.PBSProScheduler.out_of_container_command() == prefix  # cached, as Soma-Workflow's
    monkeypatch.setattr(pbs_scheduler, "_static_runner", None)
    (tmp_path / "qstat").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "qstat", 0o755)
    assert pbs.PBSProScheduler.out_of_container_command() == []  # qstat on PATH: no bridge
    monkeypatch.setattr(pbs_scheduler, "_static_runner", None)
    (tmp_path / "qstat").unlink()
    monkeypatch.delenv("CASA_HOST_DIR")
    if not in_container():
        assert pbs.PBSProScheduler.out_of_container_command() == []  # not in a container


def test_fixtures_are_real_recordings() -> None:
    """The fixtures come from the images (capture.py), not from hand: check their provenance."""
    for cluster in FLAVOURS:
        ids = FLAVOURS[cluster][2](fixture(cluster, "poll"))
        hosts = {i.split(".", 1)[1] for i in ids}
        assert hosts == {cluster}
    assert json.loads(fixture("openpbs", "poll"))["pbs_version"] == "23.06.06"


def test_dialect_is_chosen_once() -> None:
    """TorqueScheduler speaks Torque without asking; PBSProScheduler takes OPTION_FLAVOUR, else detects."""
    s = pbs.TorqueScheduler(SchedulerConfig())
    s.runner = ScriptedRunner({}, ensure_newline=False)
    assert s.dialect is pbs.TORQUE and s.flavour == "torque" and s.qstat_argv(["1.t"]) == ["qstat", "-f", "1.t"]
    assert fake(s).argvs() == []  # no qstat --version
    assert pbs.TorqueScheduler(SchedulerConfig(options={"flavour": "torque"})).dialect is pbs.TORQUE
    with pytest.raises(DRMError, match="speaks Torque"):
        pbs.TorqueScheduler(SchedulerConfig(options={"flavour": "pbspro"}))
    assert scheduler("openpbs", {}).dialect is pbs.OPENPBS
    detected = pbs.PBSProScheduler(SchedulerConfig())
    detected.runner = ScriptedRunner({"qstat": (0, raw("openpbs", "version.txt"), "")}, ensure_newline=False)
    assert detected.dialect is pbs.OPENPBS and detected.get_pbs_version() == ("pbspro", "23.06.06")
    assert fake(detected).argvs() == [["qstat", "--version"]]
