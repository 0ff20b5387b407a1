"""The conformance cases: every backend must pass them (see ``docs/contract.md``).

Each case takes the ``conformance_target`` fixture. A case that needs an
optional feature calls :func:`require`, which skips it, naming the missing
capability, only when the backend does not declare it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import constants as C
from ..errors import UnknownJobError
from ..job import Job
from ..usage import parse_usage
from .target import Target, wait_for_end, wait_for_status

pytestmark = pytest.mark.conformance

# A job program that writes its argv, chosen env values and cwd as JSON to stdout.
DUMP = (
    "import json, os, sys\n"
    "keys = [k for k in os.environ if k.startswith('SOMA_T_')]\n"
    "json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
    " 'env': {k: os.environ[k] for k in keys}}, sys.stdout)\n"
)
SPECIALS = ["'", '"', "$", "`", "\\", "\n", " ", "\t", "*", "?", "~", "!", "&", ";", "|", "<", ">",
            "(", ")", "{", "}", "#", "%", "é", "中", "😀", "-", "=", "\r"]
ARG = st.one_of(
    st.text(alphabet=st.sampled_from(SPECIALS + list("abcXYZ019")), max_size=12),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12),
    st.sampled_from(["-n", "--", "--help", "-e", "$HOME", "`id`", "$(id)", "end\\", "'", '"', "", " ", "\n"]),
)


#: Rows of the contract's end-state table (docs/contract.md, "End states") the cases check.
END_STATE_ROWS = {
    "exit": "a job that exits with code c is ('done', 'finished_regularly', c, None)",
    "signal": "a job that dies of a signal s it was not sent by kill_job is ('done', 'finished_signal', None, s)",
    "kill_running": "kill_job while running gives ('failed', 'killed_by_user', None, s or None)",
    "kill_queued": "kill_job while queued or held gives ('failed', 'aborted_before_running', None, None)",
    "launch": "a job that could not start (missing executable, bad cwd, unreadable stdin, unwritable output) "
              "is ('failed', 'aborted', ...)",
}


def contract(row: str) -> str:
    """The message of a failed end-state check: what the contract asks, and where it is written."""
    return f"contract (docs/contract.md, 'End states'): {END_STATE_ROWS[row]}"


def require(target: Target, capability: str) -> None:
    if capability not in target.capabilities:
        pytest.skip(f"backend {target.scheduler_type!r} declares no {capability!r} capability")


def py(target: Target, code: str, *args: str, **kw: object) -> Job:
    return Job(command=[target.python, "-c", code, *args], **kw)  # type: ignore[arg-type]


def run(target: Target, *jobs: Job) -> list[str]:
    ids = target.scheduler.job_submission(list(jobs))
    assert None not in ids, f"submission failed: {target.scheduler.last_submission_errors}"
    assert all(isinstance(i, str) for i in ids), f"ids must be str: {ids!r}"
    wait_for_end(target.scheduler, ids, target.timeout, target.poll)  # type: ignore[arg-type]
    return ids  # type: ignore[return-value]


def end_state(target: Target, job_id: str) -> tuple[object, ...]:
    """``(status, exit_status, exit_value, term_sig)`` of an ended job."""
    sched = target.scheduler
    info = tuple(sched.get_job_exit_info(job_id))
    assert len(info) == 4, f"exit info must be a 4-tuple, got {info!r}"
    return (sched.get_job_status(job_id), *info[:3])


def read(path: Path, timeout: float = 10.0) -> str:
    """Read a job's output file (a shared filesystem may show it a moment late)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_bytes().decode("utf-8")


# -- exit states -------------------------------------------------------------------------------

def test_exit_zero(conformance_target: Target) -> None:
    [jid] = run(conformance_target, Job(command=["/bin/true"]))
    assert end_state(conformance_target, jid) == (C.DONE, C.FINISHED_REGULARLY, 0, None), contract("exit")


def test_exit_three(conformance_target: Target) -> None:
    [jid] = run(conformance_target, Job(command=["/bin/sh", "-c", "exit 3"]))
    assert end_state(conformance_target, jid) == (C.DONE, C.FINISHED_REGULARLY, 3, None), contract("exit")


@pytest.mark.parametrize("sig", [15, 9], ids=["SIGTERM", "SIGKILL"])
def test_self_signal(conformance_target: Target, sig: int) -> None:
    require(conformance_target, "exit_signal")
    code = f"import os; os.kill(os.getpid(), {sig})"
    [jid] = run(conformance_target, py(conformance_target, code))
    assert end_state(conformance_target, jid) == (C.DONE, C.FINISHED_TERM_SIG, None, sig), contract("signal")


def test_missing_executable(conformance_target: Target) -> None:
    require(conformance_target, "launch_errors")
    [jid] = run(conformance_target, Job(command=["/nonexistent/soma-missing-program", "x"]))
    status, exit_status, _, _ = end_state(conformance_target, jid)
    assert (status, exit_status) == (C.FAILED, C.EXIT_ABORTED), contract("launch")


def test_bad_working_directory(conformance_target: Target) -> None:
    require(conformance_target, "launch_errors")
    missing = str(conformance_target.workdir / "no such dir")
    [jid] = run(conformance_target, Job(command=["/bin/true"], working_directory=missing))
    status, exit_status, _, _ = end_state(conformance_target, jid)
    assert (status, exit_status) == (C.FAILED, C.EXIT_ABORTED), contract("launch")


def test_exit_info_is_idempotent(conformance_target: Target) -> None:
    [jid] = run(conformance_target, Job(command=["/bin/sh", "-c", "exit 5"]))
    sched = conformance_target.scheduler
    first = tuple(sched.get_job_exit_info(jid))
    assert first == tuple(sched.get_job_exit_info(jid)) == tuple(sched.get_jobs_exit_info([jid])[jid])
    assert sched.get_job_status(jid) == C.DONE


def test_resource_usage_format(conformance_target: Target) -> None:
    require(conformance_target, "resource_usage")
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.2: pass"
    [jid] = run(conformance_target, py(conformance_target, code))
    usage = conformance_target.scheduler.get_job_exit_info(jid)[3]
    assert isinstance(usage, bytes), f"resource_usage must be bytes, got {usage!r}"
    items = parse_usage(usage)
    assert "walltime" in items or "cput" in items, usage
    if "cput" in items:
        h, m, s = (int(x) for x in items["cput"].split(":"))
        assert 0 <= h * 3600 + m * 60 + s <= 60, usage


# -- files, environment, argv ------------------------------------------------------------------

def test_stdout_and_stderr_files(conformance_target: Target) -> None:
    require(conformance_target, "stdout_stderr")
    d = conformance_target.new_dir("out err")
    code = "import sys; sys.stdout.write('to out'); sys.stderr.write('to err')"
    run(conformance_target, py(conformance_target, code, stdout_file=str(d / "o $x.txt"),
                               stderr_file=str(d / "e 'y'.txt")))
    assert read(d / "o $x.txt") == "to out"
    assert read(d / "e 'y'.txt") == "to err"


def test_join_stderr_into_stdout(conformance_target: Target) -> None:
    require(conformance_target, "join")
    d = conformance_target.new_dir("join")
    code = "import sys; sys.stdout.write('A'); sys.stdout.flush(); sys.stderr.write('B')"
    run(conformance_target, py(conformance_target, code, stdout_file=str(d / "out"), join_stderrout=True))
    assert read(d / "out") == "AB"


def test_stdin_file(conformance_target: Target) -> None:
    require(conformance_target, "stdin")
    d = conformance_target.new_dir("stdin")
    (d / "in put").write_bytes("line 1\n$x `y` é\n".encode())
    code = "import sys; sys.stdout.write(sys.stdin.read())"
    run(conformance_target, py(conformance_target, code, stdin=str(d / "in put"), stdout_file=str(d / "out")))
    assert read(d / "out") == "line 1\n$x `y` é\n"


def test_working_directory(conformance_target: Target) -> None:
    require(conformance_target, "working_directory")
    d = conformance_target.new_dir("cwd $a `b` 'c'")
    run(conformance_target, py(conformance_target, DUMP, working_directory=str(d), stdout_file=str(d / "o")))
    assert os.path.realpath(json.loads(read(d / "o"))["cwd"]) == os.path.realpath(d)


def test_env_values(conformance_target: Target) -> None:
    require(conformance_target, "env")
    d = conformance_target.new_dir("env")
    env = {
        "SOMA_T_SPACES": "a b  c ",
        "SOMA_T_SPECIAL": "$HOME `id` $(id) \"dq\" 'sq' \\ ; & | * end\\",
        "SOMA_T_NEWLINE": "one\ntwo",
        "SOMA_T_UNICODE": "été 中文 😀",
        "SOMA_T_EMPTY": "",
        "SOMA_T_DASH": "-n",
    }
    run(conformance_target, py(conformance_target, DUMP, env=env, stdout_file=str(d / "o")))
    assert json.loads(read(d / "o"))["env"] == env


def test_argv_round_trip(conformance_target: Target) -> None:
    target = conformance_target
    d = target.new_dir("argv")

    @settings(max_examples=target.examples, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.lists(ARG, max_size=6), min_size=1, max_size=4))
    def check(argvs: list[list[str]]) -> None:
        outs = [d / f"o{time.monotonic_ns()}-{i}" for i in range(len(argvs))]
        run(target, *(py(target, DUMP, *argv, stdout_file=str(o)) for argv, o in zip(argvs, outs, strict=True)))
        for argv, out in zip(argvs, outs, strict=True):
            assert json.loads(read(out))["argv"] == argv

    check()


def test_odd_job_name(conformance_target: Target) -> None:
    require(conformance_target, "job_name")
    name = "odd name (1) & ; 'q' \"d\" $x `y` /a:b,c.é"
    [jid] = run(conformance_target, Job(command=["/bin/true"], name=name))
    assert end_state(conformance_target, jid) == (C.DONE, C.FINISHED_REGULARLY, 0, None), contract("exit")


# -- kill -----------------------------------------------------------------------------------------

def test_kill_queued(conformance_target: Target) -> None:
    require(conformance_target, "hold")
    sched = conformance_target.scheduler
    [jid] = sched.job_submission([Job(command=["/bin/true"], hold=True)])
    assert jid is not None, sched.last_submission_errors
    assert wait_for_status(sched, jid, C.WAITING_STATES, 30) in C.WAITING_STATES
    sched.kill_job(jid)
    wait_for_end(sched, [jid], conformance_target.timeout, conformance_target.poll)
    assert end_state(conformance_target, jid) == (C.FAILED, C.EXIT_NOTRUN, None, None), contract("kill_queued")


def test_kill_running(conformance_target: Target) -> None:
    sched = conformance_target.scheduler
    [jid] = sched.job_submission([Job(command=["/bin/sleep", "300"])])
    assert jid is not None, sched.last_submission_errors
    assert wait_for_status(sched, jid, frozenset({C.RUNNING}), conformance_target.timeout) == C.RUNNING
    t0 = time.monotonic()
    sched.kill_job(jid)
    wait_for_end(sched, [jid], conformance_target.timeout, conformance_target.poll)
    assert time.monotonic() - t0 < 60
    status, exit_status, value, sig = end_state(conformance_target, jid)
    assert (status, exit_status, value) == (C.FAILED, C.USER_KILLED, None), contract("kill_running")
    assert sig is None or isinstance(sig, int)


def test_kill_finished_changes_nothing(conformance_target: Target) -> None:
    [jid] = run(conformance_target, Job(command=["/bin/sh", "-c", "exit 4"]))
    before = end_state(conformance_target, jid)
    conformance_target.scheduler.kill_job(jid)
    assert end_state(conformance_target, jid) == before == (C.DONE, C.FINISHED_REGULARLY, 4, None), \
        "contract (docs/contract.md, 'API'): kill_job of a finished job changes nothing"


def test_kill_racing_completion(conformance_target: Target) -> None:
    sched = conformance_target.scheduler
    jobs = [Job(command=["/bin/sleep", f"0.{i % 4}"]) for i in range(12)]
    ids = sched.job_submission(jobs)
    assert None not in ids
    for i, jid in enumerate(ids):
        time.sleep(0.01 * (i % 3))
        sched.kill_job(jid)  # type: ignore[arg-type]
    wait_for_end(sched, ids, conformance_target.timeout, conformance_target.poll)  # type: ignore[arg-type]
    allowed = {
        (C.DONE, C.FINISHED_REGULARLY, 0),
        (C.FAILED, C.USER_KILLED, None),
        (C.FAILED, C.EXIT_NOTRUN, None),
    }
    for jid in ids:
        state = end_state(conformance_target, jid)  # type: ignore[arg-type]
        assert state[:3] in allowed, f"inconsistent end state for {jid}: {state}"
        assert state == end_state(conformance_target, jid)  # type: ignore[arg-type]


# -- ids, lists, errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["get_job_status", "get_job_exit_info", "kill_job"])
def test_unknown_id(conformance_target: Target, method: str) -> None:
    bogus = "no-such-job-4242"
    asks = (f"contract (docs/contract.md, 'API'): {method}({bogus!r}) of an id this scheduler never gave raises "
            "soma_schedulers.errors.UnknownJobError naming the id")
    try:
        answer = getattr(conformance_target.scheduler, method)(bogus)
    except UnknownJobError as exc:
        assert bogus in str(exc), f"{asks}; the message was {str(exc)!r}"
    except Exception as exc:
        pytest.fail(f"{asks}; it raised {type(exc).__name__}: {exc}", pytrace=False)
    else:
        pytest.fail(f"{asks}; it returned {answer!r}", pytrace=False)


def test_submission_list_keeps_order_and_errors(conformance_target: Target) -> None:
    sched = conformance_target.scheduler
    ids = sched.job_submission([Job(command=["/bin/true"]), {"command": []}, Job(command=["/bin/sh", "-c", "exit 2"])])
    assert len(ids) == 3 and ids[1] is None and ids[0] and ids[2] and ids[0] != ids[2]
    errors = sched.last_submission_errors
    assert errors[0] is None and errors[2] is None and errors[1] and "empty" in errors[1]
    ok = [i for i in ids if i is not None]
    wait_for_end(sched, ok, conformance_target.timeout, conformance_target.poll)
    assert end_state(conformance_target, ok[1])[2] == 2


def test_hundred_concurrent_jobs(conformance_target: Target) -> None:
    ids = run(conformance_target, *(Job(command=["/bin/sh", "-c", f"exit {i % 3}"]) for i in range(100)))
    assert len(set(ids)) == 100
    infos = conformance_target.scheduler.get_jobs_exit_info(ids)
    for i, jid in enumerate(ids):
        assert tuple(infos[jid])[:3] == (C.FINISHED_REGULARLY, i % 3, None), jid


def test_threads_submit_and_poll(conformance_target: Target) -> None:
    sched = conformance_target.scheduler
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            ids = sched.job_submission([Job(command=["/bin/sh", "-c", f"exit {n}"]) for _ in range(8)])
            assert None not in ids
            for _ in range(3):
                sched.get_jobs_status(ids)  # type: ignore[arg-type]
                for jid in ids:
                    sched.get_job_status(jid)  # type: ignore[arg-type]
            wait_for_end(sched, ids, conformance_target.timeout, conformance_target.poll)  # type: ignore[arg-type]
            results[n] = ids  # type: ignore[assignment]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    all_ids = [i for ids in results.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 32
    for n, ids in results.items():
        for jid in ids:
            assert end_state(conformance_target, jid) == (C.DONE, C.FINISHED_REGULARLY, n, None), contract("exit")


def test_jobs_finished_event(conformance_target: Target) -> None:
    sched = conformance_target.scheduler
    sched.jobs_finished_event.clear()
    run(conformance_target, Job(command=["/bin/true"]))
    assert sched.jobs_finished_event.is_set(), (
        "contract (docs/contract.md, 'API'): when a job submitted with signal_end=True ends, the scheduler "
        "sets jobs_finished_event (the threading.Event the base class makes); it was not set")


class _EngineJobLike:
    """What Soma-Workflow's engine hands over for a barrier job: an EngineJob whose command is empty."""

    is_engine_execution = True
    signal_end = True
    name = "barrier"
    env = None
    queue = None
    native_specification = None
    parallel_job_info = None

    def plain_command(self) -> list[str]:
        return []

    def plain_stdout(self) -> str | None:
        return None

    def plain_stderr(self) -> str | None:
        return None

    def plain_stdin(self) -> str | None:
        return None

    def plain_working_directory(self) -> str | None:
        return None


def test_engine_execution_jobs(conformance_target: Target) -> None:
    target = conformance_target
    sched = target.scheduler
    asks = ("contract (docs/contract.md, 'Engine-execution jobs'): a job with is_engine_execution true (a Job, "
            "a dict, a Soma-Workflow EngineJob; empty command) gets an id and is ('done', 'finished_regularly', "
            "0, None) at once, without running; kill_job changes nothing")
    sched.jobs_finished_event.clear()
    jobs = [Job(command=[], is_engine_execution=True), Job(command=["/bin/sh", "-c", "exit 3"]),
            {"command": [], "is_engine_execution": True}, _EngineJobLike(), {"command": []}]
    ids = sched.job_submission(jobs)
    errors = sched.last_submission_errors
    assert len(ids) == 5 and ids[4] is None and all(isinstance(i, str) for i in ids[:4]), f"{asks}; ids {ids!r}"
    assert len(set(ids[:4])) == 4, f"{asks}; ids must differ: {ids!r}"
    assert errors[:4] == [None] * 4 and "empty" in (errors[4] or ""), f"errors not aligned with the jobs: {errors!r}"
    engine = [ids[0], ids[2], ids[3]]
    assert sched.get_jobs_status(engine) == dict.fromkeys(engine, C.DONE), asks  # type: ignore[arg-type]
    assert sched.jobs_finished_event.is_set(), f"{asks}; and sets jobs_finished_event"
    real: str = ids[1]  # type: ignore[assignment]
    wait_for_end(sched, [real, *engine], target.timeout, target.poll)  # type: ignore[list-item]
    infos = sched.get_jobs_exit_info(ids[:4])  # type: ignore[arg-type]
    assert tuple(infos[real])[:3] == (C.FINISHED_REGULARLY, 3, None), contract("exit")
    for jid in engine:
        assert tuple(infos[jid]) == (C.FINISHED_REGULARLY, 0, None, None), asks  # type: ignore[index]
        sched.kill_job(jid)  # type: ignore[arg-type]
        assert end_state(target, jid) == (C.DONE, C.FINISHED_REGULARLY, 0, None), asks  # type: ignore[arg-type]
    bogus = "engine-00000000-424242"
    with pytest.raises(UnknownJobError):
        sched.get_job_status(bogus)


def test_context_manager_and_clean(conformance_target: Target) -> None:
    with conformance_target.make_scheduler() as sched:
        [jid] = sched.job_submission([Job(command=["/bin/true"])])
        assert jid is not None
        wait_for_end(sched, [jid], conformance_target.timeout, conformance_target.poll)
        assert sched.get_job_status(jid) == C.DONE


# -- bad input: each gives its documented outcome (docs/contract.md, "Bad input") ---------------

def _refused(target: Target, job: object, *words: str) -> None:
    sched = target.scheduler
    ids = sched.job_submission([job])
    assert ids == [None], f"expected a refusal at submission, got id {ids[0]!r}"
    error = sched.last_submission_errors[0] or ""
    for word in words:
        assert word in error, f"the error should name {word!r}: {error!r}"


def _aborted(target: Target, job: Job) -> None:
    [jid] = run(target, job)
    status, exit_status, _, _ = end_state(target, jid)
    assert (status, exit_status) == (C.FAILED, C.EXIT_ABORTED), contract("launch")


def test_bad_input_unknown_queue(conformance_target: Target) -> None:
    require(conformance_target, "queues")
    _refused(conformance_target, Job(command=["/bin/true"], queue="no_such_queue_42"), "no_such_queue_42")


def test_bad_input_malformed_native_specification(conformance_target: Target) -> None:
    require(conformance_target, "native_specification")
    _refused(conformance_target, Job(command=["/bin/true"], native_specification="--no-such-option-42"),
             "no-such-option-42")


def test_bad_input_unwritable_stdout(conformance_target: Target) -> None:
    require(conformance_target, "launch_errors")
    out = conformance_target.workdir / "no such dir" / "out"
    _aborted(conformance_target, Job(command=["/bin/true"], stdout_file=str(out)))


def test_bad_input_missing_stdin(conformance_target: Target) -> None:
    require(conformance_target, "launch_errors")
    require(conformance_target, "stdin")
    _aborted(conformance_target, Job(command=["/bin/cat"], stdin=str(conformance_target.workdir / "missing in")))


@pytest.mark.parametrize("kwargs, word", [
    ({"command": []}, "empty"),
    ({"command": ["/bin/echo", "x" * 200_000]}, "limit"),
    ({"command": ["/bin/true"], "env": {"SOMA_T_BIG": "y" * 200_000}}, "limit"),
    ({"command": ["/bin/true"], "env": {"SOMA_T_BYTES": b"\xff"}}, "env"),
], ids=["empty-command", "huge-argv", "huge-env", "bytes-env"])
def test_bad_input_refused_with_a_typed_error(conformance_target: Target, kwargs: dict[str, object],
                                              word: str) -> None:
    _refused(conformance_target, kwargs, word)


def test_non_utf8_env_and_argv_reach_the_job_as_bytes(conformance_target: Target) -> None:
    require(conformance_target, "env")
    d = conformance_target.new_dir("bytes")
    data = b"caf\xe9-\xff"
    raw = os.fsdecode(data)  # not UTF-8: surrogate escapes, as os.environ holds such values
    code = ("import os, sys; sys.stdout.write(os.environb[b'SOMA_T_RAW'].hex() + ' ' "
            "+ os.fsencode(sys.argv[1]).hex())")
    run(conformance_target, py(conformance_target, code, raw, env={"SOMA_T_RAW": raw}, stdout_file=str(d / "o")))
    assert read(d / "o") == f"{data.hex()} {data.hex()}"
