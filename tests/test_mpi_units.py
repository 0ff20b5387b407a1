"""The MPI backend without MPI: import rules, wire data, and the whole protocol over a fake mpi4py.

The fake ``mpi4py.MPI`` below is an in-process world (one message box per
rank) offering the calls the backend makes (``Isend``, ``Send``,
``Improbe``, ``Message.Recv``, ``Status``); worker ranks run
:func:`worker_loop` in threads. The real thing runs in
``python -m soma_schedulers.testing.incontainer mpi``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import Job
from soma_schedulers import constants as C
from soma_schedulers.errors import DRMError, SchedulerClosedError, SchedulerUnavailableError, UnknownJobError
from soma_schedulers.process import JobProcess, ProcessSpec
from soma_schedulers.schedulers import mpi_scheduler as M
from soma_schedulers.testing import suite
from soma_schedulers.testing.target import Target, wait_for_end

# -- no mpi4py needed ------------------------------------------------------------------------------


def test_import_never_needs_mpi4py() -> None:
    code = ("import sys, soma_schedulers, soma_schedulers.scheduler as s, soma_schedulers.schedulers.mpi_scheduler\n"
            "s.get_scheduler_implementation('mpi'); s.get_schedulers_list()\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_without_mpi4py_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from soma_schedulers.scheduler import build_scheduler

    monkeypatch.setitem(sys.modules, "mpi4py", None)  # the import fails even where mpi4py is installed
    monkeypatch.setattr(M, "_DISPATCHER", None)
    with pytest.raises(SchedulerUnavailableError) as info:
        build_scheduler("mpi")
    text = str(info.value)
    assert "\n" not in text and "mpi4py" in text


def test_process_spec_wire_round_trip() -> None:
    job = Job(command=["a b", "$x", "é\n中", "-n"], env={"K": "v 'q' `id`", "E": ""}, working_directory="/d ir",
              stdin="/in", stdout_file="/o $x", stderr_file="/e", join_stderrout=False)
    spec = ProcessSpec.from_job(job)
    wire = json.loads(json.dumps(spec.to_message(), ensure_ascii=True))
    assert ProcessSpec.from_message(wire) == spec
    for bad in ({"argv": []}, {"argv": "ls"}, {"argv": ["ls"], "env": {"A": 1}}, {"argv": ["ls"], "cwd": 3}):
        with pytest.raises(ValueError):
            ProcessSpec.from_message(bad)


def test_jobs_do_not_inherit_the_launcher_environment() -> None:
    env = {"PATH": "/bin", "PMIX_RANK": "1", "OMPI_COMM_WORLD_RANK": "1", "OMPI_MCA_ess": "pmi",
           "OMPI_MCA_btl": "tcp,self", "OMPI_ALLOW_RUN_AS_ROOT": "1", "PMI_FD": "3", "OMPI_MCA_orte_hnp_uri": "x"}
    assert M.job_environment(env) == {"PATH": "/bin", "OMPI_MCA_btl": "tcp,self", "OMPI_ALLOW_RUN_AS_ROOT": "1"}


def test_job_process_killed_before_start_never_starts(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    proc = JobProcess(ProcessSpec(argv=("/bin/sh", "-c", f"touch '{marker}'")))
    proc.kill()
    result = proc.run()
    assert (result.status, result.exit_info[:3]) == (C.FAILED, (C.USER_KILLED, None, None))
    assert not marker.exists()
    proc.kill()  # after the end: nothing


def test_killed_job_leaves_nothing_in_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    proc = JobProcess(ProcessSpec(argv=("/bin/sh", "-c", f"sh -c 'trap \"\" TERM; sleep 300' & echo $! > '{pidfile}'; wait")))
    t = threading.Thread(target=lambda: results.append(proc.run()))
    results: list[Any] = []
    t.start()
    while not pidfile.exists() or not pidfile.read_text().strip():
        time.sleep(0.02)
    child = int(pidfile.read_text())
    proc.kill()
    t.join(10)
    assert results[0].exit_info[:3] == (C.USER_KILLED, None, 15)
    with pytest.raises(ProcessLookupError):  # reaped by us or by init: gone either way
        for _ in range(100):
            os.kill(child, 0)
            time.sleep(0.02)


# -- a fake MPI world --------------------------------------------------------------------------------


class _World:
    def __init__(self, size: int) -> None:
        self.size = size
        self.boxes: dict[int, deque[tuple[int, int, bytes]]] = {r: deque() for r in range(size)}
        self.lock = threading.Lock()


class _Status:
    def __init__(self) -> None:
        self.source = self.tag = self.count = -1

    def Get_count(self, _datatype: Any) -> int:
        return self.count

    def Get_source(self) -> int:
        return self.source

    def Get_tag(self) -> int:
        return self.tag


class _Request:
    def Test(self) -> bool:
        return True


class _Message:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def Recv(self, spec: list[Any]) -> None:
        spec[0][:] = self.data


class _Comm:
    def __init__(self, world: _World, rank: int) -> None:
        self.world, self.rank = world, rank

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.world.size

    def Isend(self, spec: list[Any], dest: int, tag: int) -> _Request:
        with self.world.lock:
            self.world.boxes[dest].append((self.rank, tag, bytes(spec[0])))
        return _Request()

    def Send(self, spec: list[Any], dest: int, tag: int) -> None:
        self.Isend(spec, dest, tag)

    def Improbe(self, source: int, tag: int, status: _Status) -> _Message | None:
        with self.world.lock:
            box = self.world.boxes[self.rank]
            for i, (src, tg, data) in enumerate(box):
                if source in (-1, src) and tag in (-1, tg):
                    del box[i]
                    status.source, status.tag, status.count = src, tg, len(data)
                    return _Message(data)
        return None


def _fake_mpi(comm0: _Comm) -> types.ModuleType:
    mod = types.ModuleType("mpi4py.MPI")
    mod.ANY_SOURCE = -1  # type: ignore[attr-defined]
    mod.ANY_TAG = -1  # type: ignore[attr-defined]
    mod.BYTE = "byte"  # type: ignore[attr-defined]
    mod.THREAD_SERIALIZED, mod.THREAD_MULTIPLE = 2, 3  # type: ignore[attr-defined]
    mod.Status = _Status  # type: ignore[attr-defined]
    mod.COMM_WORLD = comm0  # type: ignore[attr-defined]
    mod.Query_thread = lambda: 3  # type: ignore[attr-defined]
    return mod


@pytest.fixture()
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_World, list[threading.Thread], list[int]]]:
    """Rank 0 here; ranks 1 and 2 run worker_loop() in threads (2 slots each)."""
    w = _World(3)
    mpi = _fake_mpi(_Comm(w, 0))
    pkg = types.ModuleType("mpi4py")
    pkg.MPI = mpi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mpi4py", pkg)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)
    monkeypatch.setattr(M, "_DISPATCHER", None)
    monkeypatch.setattr(M, "_RUNNER_OWNS_WORKERS", False)
    codes: list[int] = []
    threads = [threading.Thread(target=lambda r=r: codes.append(M.worker_loop(_Comm(w, r))), daemon=True)
               for r in (1, 2)]
    for t in threads:
        t.start()
    yield w, threads, codes
    M.shutdown_workers()  # also when no scheduler was built: the runner's path
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)


def test_fake_world_runs_jobs_on_both_workers(world: Any, tmp_path: Path) -> None:
    _w, threads, codes = world
    with M.MPIScheduler(slots_per_worker=2) as sched:
        ids = sched.job_submission([Job(command=["/bin/sh", "-c", f"exit {i % 4}"]) for i in range(40)])
        assert None not in ids
        wait_for_end(sched, ids, 30)  # type: ignore[arg-type]
        for i, jid in enumerate(ids):
            assert sched.get_job_exit_info(jid)[:3] == (C.FINISHED_REGULARLY, i % 4, None)  # type: ignore[arg-type]
        assert sorted(r for r, _h, _s in sched.workers) == [1, 2]
        ranks = {M._DISPATCHER.records[j].rank for j in ids}  # type: ignore[union-attr,index]
        assert ranks == {1, 2}
    # clean() of the last instance (no runner) stopped every worker, cleanly
    for t in threads:
        t.join(10)
    assert codes == [0, 0]
    with pytest.raises(SchedulerUnavailableError, match="stopped"):
        M.MPIScheduler()


def test_fake_world_kill_and_errors(world: Any) -> None:
    with M.MPIScheduler(slots_per_worker=1) as sched:
        [held, running] = sched.job_submission([Job(command=["/bin/true"], hold=True),
                                                 Job(command=["/bin/sleep", "60"])])
        assert sched.get_job_status(held) == C.USER_ON_HOLD  # type: ignore[arg-type]
        suite.wait_for_status(sched, running, frozenset({C.RUNNING}), 10)  # type: ignore[arg-type]
        t0 = time.monotonic()
        sched.kill_job(held)  # type: ignore[arg-type]
        sched.kill_job(running)  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 0.5  # never waits for a worker
        wait_for_end(sched, [held, running], 10)  # type: ignore[list-item]
        assert sched.get_job_exit_info(held)[:3] == (C.EXIT_NOTRUN, None, None)  # type: ignore[arg-type]
        assert sched.get_job_exit_info(running)[:3] == (C.USER_KILLED, None, 15)  # type: ignore[arg-type]
        [bad] = sched.job_submission([Job(command=["/nonexistent/x"])])
        wait_for_end(sched, [bad], 10)  # type: ignore[list-item]
        assert sched.get_job_status(bad) == C.FAILED  # type: ignore[arg-type]
        assert "could not start" in (sched.get_job_error(bad) or "")  # type: ignore[arg-type]
        with pytest.raises(UnknownJobError):
            sched.get_job_status("42424")
        with M.MPIScheduler() as other:  # a second instance shares the workers, not the ids
            with pytest.raises(UnknownJobError):
                other.get_job_status(bad)  # type: ignore[arg-type]
            [mine] = other.job_submission([Job(command=["/bin/true"])])
            wait_for_end(other, [mine], 10)  # type: ignore[list-item]
        [again] = sched.job_submission([Job(command=["/bin/true"])])  # other's clean() did not stop them
        wait_for_end(sched, [again], 10)  # type: ignore[list-item]


def test_fake_world_clean_kills_running_jobs(world: Any, tmp_path: Path) -> None:
    _w, threads, codes = world
    sched = M.MPIScheduler(slots_per_worker=1)
    ids = sched.job_submission([Job(command=["/bin/sleep", "60"]) for _ in range(4)])
    suite.wait_for_status(sched, ids[0], frozenset({C.RUNNING}), 10)  # type: ignore[arg-type]
    t0 = time.monotonic()
    sched.clean()
    assert time.monotonic() - t0 < 5
    states = {sched.job_table.get(j).exit_info[0] for j in ids}  # type: ignore[index]
    assert states <= {C.USER_KILLED, C.EXIT_NOTRUN} and C.EXIT_NOTRUN in states
    with pytest.raises(SchedulerClosedError):  # the instance refuses every job method after clean()
        sched.get_job_exit_info(ids[0])  # type: ignore[arg-type]
    with pytest.raises(SchedulerClosedError):
        sched.job_submission([Job(command=["/bin/true"])])
    # the shared dispatcher forgot them (memory flat in a long engine); the instance keeps their ends
    assert not [r for r in M._DISPATCHER.records.values() if r.owner is sched]  # type: ignore[union-attr]
    for t in threads:
        t.join(10)
    assert codes == [0, 0]


def test_fake_world_conformance_cases(world: Any, tmp_path: Path) -> None:
    """The shipped suite's cases, called directly on the fake world."""
    target = Target(name="mpi-fake", scheduler_type="mpi", make_scheduler=M.MPIScheduler, workdir=tmp_path,
                    python=sys.executable, timeout=30, examples=5)
    try:
        target.scheduler  # the shared instance first, as the plugin does  # noqa: B018
        for name in dir(suite):
            case = getattr(suite, name)
            if not name.startswith("test_") or not callable(case):
                continue
            marks = getattr(case, "pytestmark", [])
            params = [m for m in marks if m.name == "parametrize"]
            if not params:
                case(target)
                continue
            argname, values = params[0].args[0], params[0].args[1]
            for value in values:
                case(target, **{argname: value})
    finally:
        target.close()


def test_worker_loop_refuses_rank_zero(world: Any) -> None:
    w, _threads, _codes = world
    with pytest.raises(DRMError):
        M.worker_loop(_Comm(w, 0))


def test_runner_usage() -> None:
    assert M.main([]) == 2
    assert M.main(["--help"]) == 0
