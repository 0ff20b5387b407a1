"""Run jobs on the other ranks of an MPI world (type ``mpi``), with mpi4py.

The program using the scheduler is rank 0 of an ``mpirun``; ranks >= 1 run
:func:`worker_loop`. This module's runner gives both::

    mpirun -np 3 -H n1,n2,n3 python3 -m soma_schedulers.schedulers.mpi_scheduler -m my_engine ARGS...
    mpirun -np 3 -H n1,n2,n3 python3 -m soma_schedulers.schedulers.mpi_scheduler my_script.py ARGS...

Rank 0 runs the module or script (which calls ``build_scheduler("mpi")``);
the other ranks run jobs. When the program ends, normally or by an
exception, the runner stops every worker, so all ranks exit.

Design (see ``docs/mpi.md``):

* Rank 0: one background thread, the dispatcher, makes every MPI call, all
  of them non-blocking (``Improbe``, ``Isend``, ``Test``). The API methods only
  touch the job table under a lock and never wait for a worker. Several
  :class:`MPIScheduler` instances in one process share the dispatcher and the
  workers. Under this module's runner the workers live as long as rank 0's
  program (the runner stops them at its end, normally or on an error);
  otherwise ``clean()`` of the last instance stops them (and ``atexit`` does,
  if nobody called it). Once they are stopped, building an instance raises
  :class:`~soma_schedulers.errors.SchedulerUnavailableError`.
* Ranks >= 1 run up to ``slots`` jobs at once (``CPU_NB``; default the
  node's CPU count), each in a thread blocked in ``wait4``
  (:class:`soma_schedulers.process.JobProcess`, shared with the local
  backend), and report each end at once with its rusage. Each worker also
  holds up to ``slots`` more jobs, started the moment a slot frees (no round
  trip to rank 0 per job); a job is ``running`` once its worker says so.
* Queued jobs wait on rank 0 until a worker has room: killing one there
  needs no worker (``aborted_before_running``). Killing a job already sent
  to a worker sends it a kill message: a job still waiting there ends
  ``aborted_before_running``; a running one has its process group signalled
  (``killed_by_user``).
* Messages are JSON documents (argv, env, paths, exit info) sent as bytes:
  nothing is pickled, no engine object crosses the wire.
* MPI cannot wait for a message and a Python event together, and OpenMPI's
  blocking receives spin a core; so both sides poll with ``Improbe``, backing
  off from 0.2 ms to 1 ms (rank 0 while jobs are out) or 5 ms (workers).
  Idle, rank 0 sleeps in a condition variable that API calls wake.
* Jobs do not inherit the launcher's variables (``PMIX_*``,
  ``OMPI_COMM_WORLD_*`` ...): a job may itself be an MPI program.

Importing this module never imports mpi4py; building the scheduler does, and
raises :class:`~soma_schedulers.errors.SchedulerUnavailableError` without it.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import json
import logging
import os
import queue
import runpy
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import constants as C
from ..errors import DRMError, SchedulerUnavailableError, UnknownJobError
from ..job import Job
from ..process import KILL_GRACE, JobProcess, ProcessResult, ProcessSpec
from ..scheduler import ExitInfo, Scheduler

__all__ = ["MPIScheduler", "main", "shutdown_workers", "worker_loop"]

logger = logging.getLogger(__name__)

# Message tags.
TAG_HELLO = 61  # worker -> 0: {"host", "cpus", "pid"}
TAG_JOB = 62  # 0 -> worker: {"id", "spec": ProcessSpec.to_message()}
TAG_KILL = 63  # 0 -> worker: {"id"}
TAG_STOP = 64  # 0 -> worker: {}
TAG_RESULT = 65  # worker -> 0: {"id", "status", "exit": [exit_status, value, sig, usage], "error"}
TAG_BYE = 66  # worker -> 0: {} (last message of a worker)
TAG_FATAL = 67  # worker -> 0: {"error"} (the worker loop broke; its jobs are killed)
TAG_CONFIG = 68  # 0 -> worker: {"slots"} (answer to hello, before any job)
TAG_STARTED = 69  # worker -> 0: {"id"} (the job's process is being started)

#: Polling (seconds): first delay after activity, and the back-off ceilings.
POLL_MIN = 0.0002
POLL_MAX = 0.001
WORKER_POLL_MAX = 0.005
IDLE_POLL = 0.1
#: Seconds rank 0 waits for the workers' goodbyes when stopping them.
STOP_TIMEOUT = KILL_GRACE + 10.0

#: Variables set by MPI launchers that jobs must not inherit.
_LAUNCHER_PREFIXES = ("PMIX_", "PMI_", "OMPI_COMM_WORLD_", "OMPI_MCA_orte_", "OMPI_MCA_ess",
                      "OMPI_MCA_pmix", "HYDRA_", "HYDI_")
_LAUNCHER_NAMES = frozenset({
    "OMPI_APP_CTX_NUM_PROCS", "OMPI_ARGV", "OMPI_COMMAND", "OMPI_FILE_LOCATION", "OMPI_FIRST_RANKS",
    "OMPI_NUM_APP_CTX", "OMPI_UNIVERSE_SIZE", "OMPI_MCA_initial_wdir", "OMPI_MCA_plm", "OMPI_MCA_routed",
    "OMPI_MCA_shmem_RUNTIME_QUERY_hint", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
})


def job_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) without the MPI launcher's variables."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k not in _LAUNCHER_NAMES and not k.startswith(_LAUNCHER_PREFIXES)}


def _import_mpi() -> Any:
    """mpi4py's ``MPI`` module (initialises MPI), or SchedulerUnavailableError."""
    try:
        from mpi4py import MPI
    except Exception as exc:  # ImportError, or RuntimeError when libmpi is missing
        raise SchedulerUnavailableError(
            f"scheduler type 'mpi' needs mpi4py and an MPI library ({type(exc).__name__}: {exc}); "
            "install python3-mpi4py (Debian) or 'pip install mpi4py'"
        ) from None
    return MPI


def _encode(obj: Any) -> bytearray:
    return bytearray(json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii"))


class _Channel:
    """Non-blocking JSON messages over one communicator (one thread uses it)."""

    def __init__(self, mpi: Any, comm: Any) -> None:
        self.MPI = mpi
        self.comm = comm
        self._status = mpi.Status()
        self._pending: list[tuple[Any, bytearray]] = []

    def send(self, dest: int, tag: int, obj: Any) -> None:
        buf = _encode(obj)
        req = self.comm.Isend([buf, self.MPI.BYTE], dest=dest, tag=tag)
        self._pending.append((req, buf))  # the buffer lives until the send completes

    def receive(self, source: int) -> tuple[int, int, Any] | None:
        """``(source, tag, document)`` of one arrived message, or None."""
        msg = self.comm.Improbe(source=source, tag=self.MPI.ANY_TAG, status=self._status)
        if msg is None:
            return None
        buf = bytearray(self._status.Get_count(self.MPI.BYTE))
        src, tag = self._status.Get_source(), self._status.Get_tag()
        msg.Recv([buf, self.MPI.BYTE])
        return src, tag, json.loads(buf.decode("ascii")) if buf else {}

    def progress(self) -> bool:
        """Complete finished sends; True when none is pending."""
        if self._pending:
            self._pending = [(r, b) for r, b in self._pending if not r.Test()]
        return not self._pending


# --------------------------------------------------------------------------- rank 0


@dataclass(eq=False)
class _Record:
    id: str
    owner: MPIScheduler
    job: Job
    spec: dict[str, Any]
    state: str
    signal_end: bool
    rank: int = 0
    dispatched: bool = False  # sent to worker ``rank`` (it may still wait there for a slot)
    kill_sent: bool = False
    exit_info: ExitInfo | None = None
    error: str | None = None


@dataclass(eq=False)
class _Worker:
    rank: int
    host: str
    slots: int
    assigned: set[str] = field(default_factory=set)  # dispatched, not ended

    def free(self, prefetch: bool) -> int:
        return self.slots * (2 if prefetch else 1) - len(self.assigned)


class _Dispatcher:
    """Rank 0's job queue and MPI thread, shared by the MPIScheduler instances of a process."""

    def __init__(self, mpi: Any, comm: Any, slots: int, max_slots: int) -> None:
        self.MPI = mpi
        self.comm = comm
        self.size = int(comm.Get_size())
        self.slots = slots
        self.max_slots = max_slots
        self.cond = threading.Condition()
        self.records: dict[str, _Record] = {}
        self.queue: deque[_Record] = deque()
        self.workers: dict[int, _Worker] = {}
        self.dead: dict[int, str] = {}
        self.byes: set[int] = set()
        self.owners: set[MPIScheduler] = set()
        self.outbox: list[tuple[int, int, dict[str, Any]]] = []
        self.ids = itertools.count(1)
        self.stopping = False
        self.stop_sent = False
        self.stopped = False
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._run, name="soma-mpi-dispatcher", daemon=True)
        self.thread.start()

    # -- API side (any thread, never blocks on MPI) ----------------------------------
    def unavailable(self) -> str | None:
        with self.cond:
            if self.failure:
                return f"the MPI dispatcher failed: {self.failure}"
            if self.stopping:
                return ("the MPI workers were stopped (clean() of the last MPIScheduler outside the runner, "
                        "or shutdown_workers()); start a new mpirun")
            return None

    def submit(self, owner: MPIScheduler, job: Job, signal_end: bool) -> str:
        spec = ProcessSpec.from_job(job).to_message()
        with self.cond:
            if self.failure or self.stopping:
                raise SchedulerUnavailableError(self.unavailable_locked())
            rec = _Record(str(next(self.ids)), owner, job, spec,
                          C.USER_ON_HOLD if job.hold else C.QUEUED_ACTIVE, signal_end and job.signal_end)
            self.records[rec.id] = rec
            if not job.hold:
                self.queue.append(rec)
                self.cond.notify_all()
            return rec.id

    def unavailable_locked(self) -> str:
        if self.failure:
            return f"the MPI dispatcher failed: {self.failure}"
        return "the MPI workers were stopped; start a new mpirun"

    def record(self, owner: MPIScheduler, job_id: str) -> _Record:
        rec = self.records.get(job_id) if isinstance(job_id, str) else None
        if rec is None or rec.owner is not owner:
            raise UnknownJobError(job_id)
        return rec

    def kill(self, owner: MPIScheduler, job_id: str) -> None:
        with self.cond:
            rec = self.record(owner, job_id)
            if rec.state in C.END_STATES:
                return
            if not rec.dispatched:  # on rank 0's queue, or held
                if rec in self.queue:
                    self.queue.remove(rec)
                self._end_locked(rec, C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None))
            elif not rec.kill_sent:  # the worker ends it: not started, or killed
                rec.kill_sent = True
                self.outbox.append((rec.rank, TAG_KILL, {"id": rec.id}))
                self.cond.notify_all()

    def release(self, owner: MPIScheduler) -> dict[str, _Record]:
        """Kill the jobs of ``owner``, wait (bounded) for their ends, forget the ended ones (returned);
        the last owner stops the workers."""
        with self.cond:
            pending = [r.id for r in self.records.values() if r.owner is owner and r.state not in C.END_STATES]
        for jid in pending:
            self.kill(owner, jid)
        deadline = time.monotonic() + KILL_GRACE + 5.0
        with self.cond:
            while not self.stopped and any(
                self.records[j].state not in C.END_STATES for j in pending
            ) and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            # Forget the owner's ended jobs (the shared table would grow with every instance of a
            # long engine); one still running (its worker did not answer the kill) keeps its
            # record, which its worker's report ends.
            ended = {j: r for j, r in self.records.items() if r.owner is owner and r.state in C.END_STATES}
            for jid in ended:
                del self.records[jid]
            self.owners.discard(owner)
            last = not self.owners
        if last and not _RUNNER_OWNS_WORKERS:
            self.shutdown()
        return ended

    def shutdown(self, timeout: float = STOP_TIMEOUT + 5.0) -> None:
        """Stop every worker (their running jobs are killed) and the MPI thread."""
        with self.cond:
            if not self.stopping:
                self.stopping = True
                for rec in list(self.queue):
                    self._end_locked(rec, C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None))
                self.queue.clear()
                for rec in self.records.values():
                    if rec.state in C.WAITING_STATES and not rec.dispatched:  # held
                        self._end_locked(rec, C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None))
                self.cond.notify_all()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def workers_info(self) -> list[tuple[int, str, int]]:
        with self.cond:
            return [(w.rank, w.host, w.slots) for w in sorted(self.workers.values(), key=lambda w: w.rank)]

    # -- book-keeping (under the lock) ---------------------------------------------------
    def _end_locked(self, rec: _Record, state: str, info: ExitInfo, error: str | None = None) -> None:
        rec.state = state
        rec.exit_info = info
        rec.error = error
        if rec.dispatched and rec.rank in self.workers:
            self.workers[rec.rank].assigned.discard(rec.id)
        if error:
            logger.error("job %s: %s", rec.id, error)
        if rec.signal_end:
            rec.owner.jobs_finished_event.set()
        self.cond.notify_all()

    def _free_worker_locked(self) -> _Worker | None:
        """The worker with the most free slots; if none has one, the one with the most room
        in its prefetch queue (as many jobs as slots wait there, ready to start the moment a
        slot frees, so throughput does not pay a round trip to rank 0 per job)."""
        for prefetch in (False, True):
            best = max((w for w in self.workers.values() if w.rank not in self.dead),
                       key=lambda w: w.free(prefetch), default=None)
            if best is not None and best.free(prefetch) > 0:
                return best
        return None

    def _plan_locked(self) -> list[tuple[int, int, dict[str, Any]]]:
        out, self.outbox = self.outbox, []
        if self.stopping:
            if not self.stop_sent:
                self.stop_sent = True
                out.extend((r, TAG_STOP, {}) for r in range(1, self.size) if r not in self.dead)
            return out
        while self.queue:
            w = self._free_worker_locked()
            if w is None:
                break
            rec = self.queue.popleft()
            rec.dispatched = True
            rec.rank = w.rank
            w.assigned.add(rec.id)
            out.append((w.rank, TAG_JOB, {"id": rec.id, "spec": rec.spec}))
        return out

    def _has_work_locked(self) -> bool:
        if self.outbox or (self.stopping and not self.stop_sent):
            return True
        return bool(self.queue) and self._free_worker_locked() is not None

    def _busy_locked(self) -> bool:
        return (any(w.assigned for w in self.workers.values()) or self.stopping
                or len(self.workers) + len(self.dead) < self.size - 1)

    def _handle_locked(self, src: int, tag: int, doc: Any) -> None:
        if tag == TAG_HELLO:
            cpus = int(doc.get("cpus") or 1)
            slots = self.slots or cpus
            if self.max_slots:
                slots = min(slots, self.max_slots)
            self.workers[src] = _Worker(src, str(doc.get("host", "?")), max(1, slots))
            self.outbox.append((src, TAG_CONFIG, {"slots": max(1, slots)}))
            logger.debug("MPI worker rank %d on %s: %d slot(s)", src, doc.get("host"), slots)
        elif tag == TAG_STARTED:
            rec = self.records.get(str(doc.get("id")))
            if rec is not None and rec.dispatched and rec.rank == src and rec.state == C.QUEUED_ACTIVE:
                rec.state = C.RUNNING
        elif tag == TAG_RESULT:
            rec = self.records.get(str(doc.get("id")))
            if rec is None or not rec.dispatched or rec.rank != src or rec.state in C.END_STATES:
                logger.warning("MPI worker rank %d reported an unexpected job %r", src, doc.get("id"))
                return
            status, value, sig, usage = doc["exit"]
            info = ExitInfo(status, value, sig, usage.encode("ascii") if usage is not None else None)
            self._end_locked(rec, doc["status"], info, doc.get("error"))
        elif tag == TAG_BYE:
            self.byes.add(src)
        elif tag == TAG_FATAL:
            self._worker_lost_locked(src, f"MPI worker rank {src} failed: {doc.get('error')}")
        else:
            logger.warning("MPI rank 0: unexpected message tag %d from rank %d", tag, src)

    def _worker_lost_locked(self, rank: int, why: str) -> None:
        self.dead[rank] = why
        self.byes.add(rank)
        logger.error("%s", why)
        for rec in self.records.values():
            if rec.dispatched and rec.rank == rank and rec.state not in C.END_STATES:
                self._end_locked(rec, C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None), why)

    # -- the MPI thread ----------------------------------------------------------------
    def _run(self) -> None:
        chan = _Channel(self.MPI, self.comm)
        delay = POLL_MIN
        stop_deadline = None
        try:
            while True:
                arrived = []
                while (got := chan.receive(self.MPI.ANY_SOURCE)) is not None:
                    arrived.append(got)
                activity = bool(arrived)
                with self.cond:
                    for got in arrived:
                        self._handle_locked(*got)
                    out = self._plan_locked()
                for dest, tag, doc in out:
                    chan.send(dest, tag, doc)
                    activity = True
                sends_done = chan.progress()
                with self.cond:
                    if self.stop_sent:
                        if stop_deadline is None:
                            stop_deadline = time.monotonic() + STOP_TIMEOUT
                        everyone = set(range(1, self.size)) <= self.byes
                        if (everyone and sends_done) or time.monotonic() > stop_deadline:
                            if not everyone:
                                missing = sorted(set(range(1, self.size)) - self.byes)
                                logger.warning("MPI workers %s did not answer the stop request", missing)
                            for rank in range(1, self.size):
                                if rank not in self.byes:
                                    self._worker_lost_locked(rank, f"MPI worker rank {rank} did not stop")
                            return
                    delay = POLL_MIN if activity else min(delay * 2, POLL_MAX if self._busy_locked() else IDLE_POLL)
                    if not self._has_work_locked():
                        self.cond.wait(delay)
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
            logger.error("MPI dispatcher thread failed: %s\n%s", text, traceback.format_exc())
            with self.cond:
                self.failure = text
                for rec in self.records.values():
                    if rec.state not in C.END_STATES:
                        self._end_locked(rec, C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None),
                                         f"MPI dispatcher failed: {text}")
            try:  # best effort: let the workers go
                for rank in range(1, self.size):
                    self.comm.Isend([_encode({}), self.MPI.BYTE], dest=rank, tag=TAG_STOP)
            except Exception:
                pass
        finally:
            with self.cond:
                self.stopping = True
                self.stopped = True
                self.cond.notify_all()


_DISPATCHER: _Dispatcher | None = None
_DISPATCHER_LOCK = threading.Lock()
#: Set by :func:`main`: the workers live as long as rank 0's program, whatever the
#: instances do (without it, clean() of the last instance stops them).
_RUNNER_OWNS_WORKERS = False


def _dispatcher(slots: int = 0, max_slots: int = 0, comm: Any = None) -> _Dispatcher:
    """The process's dispatcher, created on first use (checks the MPI world)."""
    global _DISPATCHER
    with _DISPATCHER_LOCK:
        if _DISPATCHER is not None:
            why = _DISPATCHER.unavailable()
            if why:
                raise SchedulerUnavailableError(why)
            return _DISPATCHER
        mpi = _import_mpi()
        comm = comm if comm is not None else mpi.COMM_WORLD
        rank, size = int(comm.Get_rank()), int(comm.Get_size())
        if rank != 0:
            raise SchedulerUnavailableError(f"MPIScheduler runs on rank 0 only (this is rank {rank}); "
                                            "other ranks run worker_loop()")
        if size < 2:
            raise SchedulerUnavailableError(
                "MPIScheduler needs worker ranks: start the program with 'mpirun -np N' (N >= 2), e.g. "
                "mpirun -np 3 python3 -m soma_schedulers.schedulers.mpi_scheduler -m your_module"
            )
        if mpi.Query_thread() < mpi.THREAD_SERIALIZED:
            raise SchedulerUnavailableError(
                "MPIScheduler needs MPI_THREAD_SERIALIZED or better (its MPI calls come from a "
                f"background thread); this MPI library gives level {mpi.Query_thread()}"
            )
        _DISPATCHER = _Dispatcher(mpi, comm, slots, max_slots)
        atexit.register(shutdown_workers)
        return _DISPATCHER


def shutdown_workers() -> None:
    """Stop the worker ranks (rank 0, at the end of a program; idempotent).

    Jobs still queued end ``aborted_before_running``, running ones are killed.
    """
    if "mpi4py.MPI" not in sys.modules and _DISPATCHER is None:
        return  # MPI was never initialised here: nothing to stop
    try:
        disp = _DISPATCHER or _dispatcher()
    except SchedulerUnavailableError:
        return  # already stopped, or not rank 0 / no workers
    disp.shutdown()


class MPIScheduler(Scheduler):
    """Jobs run as subprocesses of the worker ranks (>= 1) of the MPI world; this is rank 0.

    ``slots_per_worker``: jobs at once per worker (0: the worker node's CPU
    count); ``max_slots_per_worker`` caps it (0: no cap). ``comm``: the
    communicator (default ``MPI.COMM_WORLD``). Only the first instance of a
    process sets these; later ones share its workers.
    """

    scheduler_type = "mpi"

    def __init__(self, slots_per_worker: int = 0, max_slots_per_worker: int = 0, comm: Any = None) -> None:
        super().__init__()
        self._dispatcher = _dispatcher(slots_per_worker, max_slots_per_worker, comm)
        with self._dispatcher.cond:
            self._dispatcher.owners.add(self)
        self._cleaned = False
        #: After clean(): this instance's ended jobs, which the shared dispatcher forgot (kept for
        #: inspection: the job methods raise SchedulerClosedError after clean()).
        self._final: dict[str, _Record] = {}

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """mpi4py missing (found without importing it: importing it starts MPI)."""
        if importlib.util.find_spec("mpi4py") is None:
            return "mpi4py is not installed (install python3-mpi4py on Debian, or 'pip install mpi4py')"
        return None

    def _record(self, job_id: str) -> _Record:
        return self._dispatcher.record(self, job_id)

    @property
    def workers(self) -> list[tuple[int, str, int]]:
        """``(rank, hostname, slots)`` of the workers that have said hello."""
        return self._dispatcher.workers_info()

    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        return self.submit_each(jobs, lambda job: self._dispatcher.submit(self, job, signal_end))

    def get_job_status(self, scheduler_job_id: str) -> str:
        with self._dispatcher.cond:
            return self._record(scheduler_job_id).state

    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        with self._dispatcher.cond:
            return {i: self._record(i).state for i in scheduler_job_ids}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        with self._dispatcher.cond:
            rec = self._record(scheduler_job_id)
            return rec.exit_info or ExitInfo(C.EXIT_UNDETERMINED, None, None, None)

    def get_job_error(self, scheduler_job_id: str) -> str | None:
        """Why a job could not start, or why it was aborted (worker lost ...), or None."""
        with self._dispatcher.cond:
            return self._record(scheduler_job_id).error

    def kill_job(self, scheduler_job_id: str) -> None:
        self._dispatcher.kill(self, scheduler_job_id)

    def clean(self) -> None:
        """Kill this instance's jobs (waiting up to KILL_GRACE + 5 s for their ends).

        The shared dispatcher forgets them; ``_final`` keeps their ends (until the instance is dropped).

        Outside the runner, the last instance of the process also stops the workers.
        """
        if self._cleaned:
            return
        self._cleaned = True
        self._final = self._dispatcher.release(self)

    @classmethod
    def build_scheduler(cls, config: Any) -> MPIScheduler:
        """``CPU_NB`` is the slots per worker (0: its CPU count), ``MAX_CPU_NB`` caps them."""
        slots = int(getattr(config, "cpu_nb", 0) or 0)
        max_slots = int(getattr(config, "max_cpu_nb", 0) or 0)
        return cls(slots_per_worker=slots, max_slots_per_worker=max_slots)


__main_scheduler__ = MPIScheduler


# --------------------------------------------------------------------------- ranks >= 1


_NOTRUN = ProcessResult(C.FAILED, ExitInfo(C.EXIT_NOTRUN, None, None, None))


class _WorkerRank:
    """The loop of a rank >= 1: a queue of jobs from rank 0, up to ``slots`` of them running."""

    def __init__(self, mpi: Any, comm: Any) -> None:
        self.MPI = mpi
        self.comm = comm
        self.chan = _Channel(mpi, comm)
        self.base_env = job_environment()
        self.slots = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.waiting: deque[tuple[str, ProcessSpec]] = deque()
        self.running: dict[str, JobProcess] = {}
        self.ended: queue.SimpleQueue[tuple[str, ProcessResult]] = queue.SimpleQueue()
        self.stopping = False
        self.terminated = False

    def _execute(self, job_id: str, process: JobProcess) -> None:
        try:
            result = process.run()
        except BaseException as exc:  # never lose a job's end
            result = ProcessResult(C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None), f"worker error: {exc}")
        self.ended.put((job_id, result))

    def _report(self, job_id: str, result: ProcessResult) -> None:
        info = result.exit_info
        usage = info.resource_usage.decode("ascii") if info.resource_usage is not None else None
        self.chan.send(0, TAG_RESULT, {"id": job_id, "status": result.status, "error": result.error,
                                       "exit": [info.exit_status, info.exit_value, info.term_sig, usage]})

    def _start_ready(self) -> None:
        while self.waiting and len(self.running) < self.slots and not self.stopping:
            jid, spec = self.waiting.popleft()
            proc = JobProcess(spec, self.base_env)
            self.running[jid] = proc
            threading.Thread(target=self._execute, args=(jid, proc), name=f"soma-mpi-job-{jid}",
                             daemon=True).start()
            self.chan.send(0, TAG_STARTED, {"id": jid})

    def _finish(self, job_id: str, result: ProcessResult) -> None:
        self.running.pop(job_id, None)
        self._start_ready()  # the next job first, then the news
        self._report(job_id, result)

    def _drop_waiting(self, job_id: str | None = None) -> None:
        """Report waiting jobs (one, or all) as never started."""
        keep: deque[tuple[str, ProcessSpec]] = deque()
        for jid, spec in self.waiting:
            if job_id is None or jid == job_id:
                self._report(jid, _NOTRUN)
            else:
                keep.append((jid, spec))
        self.waiting = keep

    def _handle(self, tag: int, doc: Any) -> None:
        if tag == TAG_JOB:
            jid = str(doc.get("id"))
            try:
                spec = ProcessSpec.from_message(doc.get("spec") or {})
            except ValueError as exc:
                self._report(jid, ProcessResult(C.FAILED, ExitInfo(C.EXIT_ABORTED, None, None, None), str(exc)))
                return
            if self.stopping:
                self._report(jid, _NOTRUN)
                return
            self.waiting.append((jid, spec))
            self._start_ready()
        elif tag == TAG_KILL:
            jid = str(doc.get("id"))
            if jid in self.running:
                self.running[jid].kill()
            else:
                self._drop_waiting(jid)
        elif tag == TAG_CONFIG:
            self.slots = max(1, int(doc.get("slots") or 1))
            self._start_ready()
        elif tag == TAG_STOP:
            self.stopping = True
            self._drop_waiting()
            for p in list(self.running.values()):
                p.kill()

    def on_sigterm(self, _signo: int, _frame: Any) -> None:
        self.terminated = True
        for p in list(self.running.values()):
            p.kill()

    def run(self) -> int:
        self.chan.send(0, TAG_HELLO, {"host": socket.gethostname(), "pid": os.getpid(), "cpus": self.slots})
        delay = POLL_MIN
        while True:
            activity = False
            while not self.terminated and (got := self.chan.receive(0)) is not None:
                self._handle(got[1], got[2])
                activity = True
            while True:
                try:
                    self._finish(*self.ended.get_nowait())
                    activity = True
                except queue.Empty:
                    break
            sends_done = self.chan.progress()
            if self.terminated:  # SIGTERM (mpirun is being stopped): jobs are killed, no goodbye
                deadline = time.monotonic() + KILL_GRACE + 1.0
                while self.running and time.monotonic() < deadline:
                    try:
                        self.running.pop(self.ended.get(timeout=max(0.0, deadline - time.monotonic()))[0], None)
                    except queue.Empty:
                        break
                return 143
            if self.stopping and not self.running and sends_done:
                self.comm.Send([_encode({}), self.MPI.BYTE], dest=0, tag=TAG_BYE)
                return 0
            delay = POLL_MIN if activity else min(delay * 2, WORKER_POLL_MAX)
            try:  # a job's end wakes this at once
                self._finish(*self.ended.get(timeout=delay))
                delay = POLL_MIN
            except queue.Empty:
                pass


def worker_loop(comm: Any = None) -> int:
    """Run jobs for rank 0 until it says stop; returns an exit code (0: stopped cleanly)."""
    mpi = _import_mpi()
    comm = comm if comm is not None else mpi.COMM_WORLD
    if int(comm.Get_rank()) == 0:
        raise DRMError("worker_loop() runs on ranks >= 1; rank 0 builds the MPIScheduler")
    worker = _WorkerRank(mpi, comm)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, worker.on_sigterm)
    try:
        return worker.run()
    except BaseException as exc:
        for p in list(worker.running.values()):
            p.kill()
        text = f"{type(exc).__name__}: {exc}"
        print(f"soma_schedulers MPI worker rank {comm.Get_rank()}: {text}\n{traceback.format_exc()}",
              file=sys.stderr, flush=True)
        try:
            comm.Send([_encode({"error": text}), mpi.BYTE], dest=0, tag=TAG_FATAL)
        except Exception:
            pass
        return 1


# --------------------------------------------------------------------------- runner


def main(argv: Sequence[str] | None = None) -> int:
    """``mpirun ... python -m soma_schedulers.schedulers.mpi_scheduler (-m MODULE | SCRIPT) [ARGS...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: mpirun ... python -m soma_schedulers.schedulers.mpi_scheduler (-m MODULE | SCRIPT) [ARGS...]\n"
             "Rank 0 runs MODULE or SCRIPT (which builds the 'mpi' scheduler); ranks >= 1 run its jobs;\n"
             "the workers are stopped when rank 0's program ends, normally or not.")
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        print(usage, file=sys.stdout if args and args[0] in ("-h", "--help") else sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    module, script = (args[1], None) if args[0] == "-m" else (None, args[0])
    rest = args[2:] if module else args[1:]
    try:
        mpi = _import_mpi()
    except SchedulerUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if mpi.COMM_WORLD.Get_rank() != 0:
        return worker_loop()
    global _RUNNER_OWNS_WORKERS
    _RUNNER_OWNS_WORKERS = True
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
    code: int = 0
    try:
        if module:
            sys.argv = [module, *rest]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            assert script is not None
            sys.argv = [script, *rest]
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        shutdown_workers()
    return code


if __name__ == "__main__":
    from soma_schedulers.schedulers.mpi_scheduler import main as _main  # the importable copy, not __main__

    sys.exit(_main())
