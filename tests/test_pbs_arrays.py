"""PBSProScheduler's job arrays without daemons: ``qsub -J`` (OpenPBS) / ``-t`` (Torque), task ids,
the one poll, kills and launch errors of tasks, the token, on outputs recorded from the real OpenPBS
23.06.06 and Torque 6.1-dev images (tests/fixtures/pbs/, made by its capture_arrays.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers import constants as C
from soma_schedulers.errors import CommandTimeoutError
from soma_schedulers.schedulers import pbspro_scheduler as pbs
from soma_schedulers.testing.fakes import Answer, Call, ScriptedRunner

FIXTURES = Path(__file__).parent / "fixtures" / "pbs"
FLAVOURS = {"openpbs": ("pbspro", ".json", pbs.parse_qstat_json), "torque": ("torque", ".txt", pbs.parse_qstat_text)}
CLUSTERS = pytest.mark.parametrize("cluster", list(FLAVOURS))
#: The jobs capture_arrays.py submitted, in its order: five ended, two held, two running.
JOBS = [Job(command=["/bin/sh", "-c", f"exit {n}"]) for n in range(3)] + [
    Job(command=["/nonexistent/soma-missing"]), Job(command=["/bin/true"], working_directory="/no/such/dir")]


def recorded(cluster: str, name: str) -> str:
    return (FIXTURES / cluster / name).read_text()


def ids_of(cluster: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(recorded(cluster, "array_ids.json"))
    return data


def scheduler(cluster: str, answers: dict[str, Answer | list[Answer]], **options: str) -> pbs.PBSProScheduler:
    s = pbs.PBSProScheduler(SchedulerConfig(status_cache_seconds=0, arrays="auto", array_min_size=1,
                                            options={"flavour": FLAVOURS[cluster][0], "mom_lost_after": "0",
                                                     **options}))
    s.runner = ScriptedRunner({"qmgr": recorded(cluster, "array_server.txt"), **answers}, ensure_newline=False)
    return s


def fake(s: pbs.PBSProScheduler) -> ScriptedRunner:
    assert isinstance(s.runner, ScriptedRunner)
    return s.runner


def array_answers(cluster: str) -> list[Answer]:
    """qsub's answers for the three arrays of the capture: their ids (``18[].openpbs``)."""
    ids = ids_of(cluster)
    return [f"{pbs.OPENPBS.array_of(ids[k][0])}\n" for k in ("ended", "held", "running")]


@CLUSTERS
def test_max_array_size_is_the_servers(cluster: str) -> None:
    s = scheduler(cluster, {})
    # OpenPBS sets max_array_size (10000); Torque leaves max_job_array_size unset (indices up to
    # 99999) but makes at most idle_slot_limit (300) tasks at once: arrays stop there
    assert s.max_array_size() == {"openpbs": 10000, "torque": 300}[cluster]
    assert s.max_array_size() == s.max_array_size() and len(fake(s).calls_of("qmgr")) == 1


@CLUSTERS
def test_submit_array_is_one_qsub_with_the_tasks_scripts(cluster: str) -> None:
    s = scheduler(cluster, {"qsub": array_answers(cluster)[:1]})
    ids = s.job_submission(JOBS)
    assert ids == ids_of(cluster)["ended"]
    [qsub] = fake(s).calls_of("qsub")
    option, index = {"openpbs": ("-J", "$PBS_ARRAY_INDEX"), "torque": ("-t", "$PBS_ARRAYID")}[cluster]
    assert qsub.argv[qsub.argv.index(option) + 1] == "0-4"
    assert qsub.argv[-2] == "-v" and qsub.argv[-1].startswith(pbs.TOKEN_VAR + "=")
    script = (qsub.input or b"").decode()
    assert f'case "{index}" in' in script and "/nonexistent/soma-missing" in script and "4)" in script
    # a launch error marks the task (Torque) or its array (OpenPBS cannot qalter a subjob)
    mark = {"openpbs": 'qalter -p "$p" "${PBS_ARRAY_ID:-$PBS_JOBID}"', "torque": 'qalter -p "$p" "$PBS_JOBID"'}
    assert mark[cluster] in script


@CLUSTERS
def test_a_group_of_one(cluster: str) -> None:
    s = scheduler(cluster, {"qsub": {"openpbs": "7.openpbs\n", "torque": "7[].torque\n"}[cluster]})
    [job_id] = s.job_submission([Job(command=["/bin/true"])])
    [qsub] = fake(s).calls_of("qsub")
    if cluster == "openpbs":  # "qsub: illegal -J value" for -J 0-0: a single job
        assert job_id == "7.openpbs" and "-J" not in qsub.argv
    else:
        assert job_id == "7[0].torque" and qsub.argv[qsub.argv.index("-t") + 1] == "0-0"


@CLUSTERS
def test_tasks_live_and_end_each_with_their_own_state(cluster: str) -> None:
    ext = FLAVOURS[cluster][1]
    s = scheduler(cluster, {"qsub": array_answers(cluster), "qdel": "",
                            "qstat": [recorded(cluster, f"array_live{ext}"), recorded(cluster, f"array_poll{ext}")]})
    ids = ids_of(cluster)
    assert s.job_submission(JOBS) == ids["ended"]
    held = s.job_submission([Job(command=["/bin/true"], hold=True) for _ in range(2)])
    running = s.job_submission([Job(command=["sleep", "300"]) for _ in range(2)])
    assert (held, running) == (ids["held"], ids["running"])
    live = s.get_jobs_status([*held, *running])  # one qstat: OpenPBS shows a held array's subjobs as Q
    assert list(live.values()) == [C.USER_ON_HOLD] * 2 + [C.RUNNING] * 2
    for job_id in [*held, *running]:
        s.kill_job(job_id)
    every = [*ids["ended"], *held, *running]
    ends = s.get_jobs_exit_info(every)
    assert len(fake(s).calls_of("qstat")) == 2  # one per poll, for every task
    for job_id in every:
        want = ids["ends"][job_id]
        info = ends[job_id]
        assert [info.exit_status, info.exit_value, info.term_sig] == want[:3], job_id
        assert s.get_job_error(job_id) == want[3], job_id
        assert info.resource_usage or info.exit_status == C.EXIT_NOTRUN, job_id
    assert [call.argv[-1] for call in fake(s).calls_of("qdel")] == [*held, *running]


def test_openpbs_polls_name_the_arrays_of_their_tasks() -> None:
    s = scheduler("openpbs", {"qsub": array_answers("openpbs")[:1], "qstat": recorded("openpbs", "array_poll.json")})
    ids = s.job_submission(JOBS)
    s.get_jobs_status(ids)
    [qstat] = fake(s).calls_of("qstat")
    assert qstat.argv[-1] == pbs.OPENPBS.array_of(ids[0]) and "-E" in qstat.argv
    # the array holds one mark, the last: a task may have had another reason
    error = s.get_job_error(ids[4]) or ""
    assert error.startswith("the command could not be started") and "stderr" in error


@CLUSTERS
def test_many_tasks_list_every_job_with_its_tasks(cluster: str) -> None:
    s = scheduler(cluster, {"qsub": array_answers(cluster)[:1],
                            "qstat": recorded(cluster, "array_poll" + FLAVOURS[cluster][1])}, max_named_ids="2")
    ids = s.job_submission(JOBS)
    assert s.get_job_status(ids[1]) == C.DONE
    [qstat] = fake(s).calls_of("qstat")
    assert "-t" in qstat.argv and not any("[" in a for a in qstat.argv)


@CLUSTERS
def test_a_lost_qsub_answer_finds_the_array_by_its_token(cluster: str) -> None:
    listing = recorded(cluster, "array_listing" + FLAVOURS[cluster][1])
    array_id = pbs.OPENPBS.array_of(ids_of(cluster)["ended"][0])
    attrs = pbs.lookup(FLAVOURS[cluster][2](listing), array_id or "")
    assert attrs is not None
    old = attrs["Variable_List"][pbs.TOKEN_VAR] if cluster == "openpbs" else \
        str(attrs["Variable_List"]).split(pbs.TOKEN_VAR + "=")[1].split(",")[0]
    tokens: list[str] = []

    def qsub(call: Call) -> str:
        tokens.append(call.argv[-1].split("=", 1)[1])
        raise CommandTimeoutError(call.argv, 5.0)

    s = scheduler(cluster, {"qsub": qsub, "qstat": lambda call: listing.replace(old, tokens[-1])})
    assert s.job_submission(JOBS) == ids_of(cluster)["ended"]


def test_a_server_without_arrays_gets_single_jobs() -> None:
    s = scheduler("openpbs", {"qmgr": "Server openpbs\n    max_array_size = 1\n", "qsub": ["5.openpbs\n", "6.openpbs\n"]})
    assert s.job_submission(JOBS[:2]) == ["5.openpbs", "6.openpbs"]
    assert s.max_array_size() == 0  # OpenPBS's smallest array has 2 tasks
    assert not any("-J" in call.argv for call in fake(s).calls_of("qsub"))


def test_array_names_and_keys() -> None:
    s = scheduler("torque", {"qsub": ["1[].torque\n", "2[].torque\n"]})
    assert s.array_key(Job(command=["a"], name="x")) == s.array_key(Job(command=["b"], name="y"))
    assert s.array_key(Job(command=["a"])) != s.array_key(Job(command=["a"], native_specification="-v A=1"))
    s.job_submission([Job(command=["a"], name="same"), Job(command=["b"], name="same")])
    s.job_submission([Job(command=["a"], name="one"), Job(command=["b"], name="two")])
    first, second = fake(s).calls_of("qsub")
    assert first.argv[first.argv.index("-N") + 1] == "same" and "-N" not in second.argv
    assert pbs.TORQUE.task_id("12[].srv", 3) == "12[3].srv" and pbs.TORQUE.array_of("12[3].srv") == "12[].srv"
    assert pbs.TORQUE.array_of("12.srv") is None


def test_torque_tasks_not_made_yet_wait_and_a_kill_removes_them() -> None:
    # Torque makes an array's tasks in the background: qstat and qdel do not know them at first
    unknown = (153, "", "qstat: Unknown Job Id Error 9[0].torque\nqstat: Unknown Job Id Error 9[1].torque\n")
    s = scheduler("torque", {"qsub": "9[].torque\n", "qstat": unknown,
                             "qdel": [(153, "", "qdel: nonexistent job id: 9[1].torque\n"), ""]})
    ids = s.job_submission([Job(command=["/bin/true"]), Job(command=["/bin/true"])])
    assert s.get_jobs_status(ids) == dict.fromkeys(ids, C.QUEUED_ACTIVE)
    s.kill_job(ids[1])
    assert [list(call.argv) for call in fake(s).calls_of("qdel")] == [["qdel", "9[1].torque"],
                                                                 ["qdel", "-t", "1", "9[].torque"]]
    # a task deleted before it was made never shows: it ended, never having run
    assert s.get_job_exit_info(ids[1])[0] == C.EXIT_NOTRUN
    assert s.get_job_status(ids[0]) == C.QUEUED_ACTIVE
    assert pbs.TORQUE.max_array_size_in("max_job_array_size = 50\nidle_slot_limit = 80\n") == 50
    assert pbs.OPENPBS.delete_unmade("9[1].openpbs") is None
