"""Rank 0 of the ``mpi`` backend: the job table and the one thread making every MPI call.

A :class:`Dispatcher` is shared by the :class:`~.mpi_scheduler.MPIScheduler` instances of a
process (see :mod:`.mpi_scheduler` for the design); the API side only touches the table under
``cond`` and never waits for a worker.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import constants as C
from ..errors import SchedulerUnavailableError
from ..exit_info import ExitInfo
from ..job import Job
from ..job_table import JobRecord
from ..process import KILL_GRACE, ProcessSpec
from .mpi_protocol import (
    IDLE_POLL,
    POLL_MAX,
    POLL_MIN,
    STOP_TIMEOUT,
    Channel,
    Tag,
    encode,
)

if TYPE_CHECKING:
    from .mpi_scheduler import MPIScheduler

__all__ = ["Dispatcher", "Record", "WorkerSlots"]

logger = logging.getLogger("soma_schedulers.schedulers.mpi_scheduler")  # one logger for the backend

# --------------------------------------------------------------------------- rank 0


class Record(JobRecord):
    """One job on rank 0: its owner, its description, the worker it went to, its end."""

    __slots__ = ("dispatched", "job", "kill_sent", "owner", "rank", "spec")

    def __init__(self, job_id: str, owner: MPIScheduler, job: Job, spec: dict[str, Any], signal_end: bool) -> None:
        super().__init__(job_id, C.USER_ON_HOLD if job.hold else C.QUEUED_ACTIVE, signal_end and job.signal_end)
        self.owner = owner
        self.job = job
        self.spec = spec
        self.rank = 0
        self.dispatched = False  # sent to worker ``rank`` (it may still wait there for a slot)
        self.kill_sent = False


@dataclass(eq=False)
class WorkerSlots:
    """A worker rank as rank 0 sees it: its host, its slots, the jobs sent to it."""

    rank: int
    host: str
    slots: int
    assigned: set[str] = field(default_factory=set)  # dispatched, not ended

    def free(self, prefetch: bool) -> int:
        return self.slots * (2 if prefetch else 1) - len(self.assigned)


class Dispatcher:
    """Rank 0's job queue and MPI thread, shared by the MPIScheduler instances of a process."""

    def __init__(self, mpi: Any, comm: Any, slots: int, max_slots: int) -> None:
        self.MPI = mpi
        self.comm = comm
        self.size = int(comm.Get_size())
        self.slots = slots
        self.max_slots = max_slots
        self.cond = threading.Condition()
        self.records: dict[str, Record] = {}
        self.queue: deque[Record] = deque()
        self.workers: dict[int, WorkerSlots] = {}
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
            rec = Record(str(next(self.ids)), owner, job, spec, signal_end)
            self.records[rec.id] = rec
            owner.job_table.add(rec)
            if not job.hold:
                self.queue.append(rec)
                self.cond.notify_all()
            return rec.id

    def unavailable_locked(self) -> str:
        if self.failure:
            return f"the MPI dispatcher failed: {self.failure}"
        return "the MPI workers were stopped; start a new mpirun"

    def kill(self, owner: MPIScheduler, job_id: str) -> None:
        with self.cond:
            rec = owner.job_table.get(job_id)
            if rec.ended:
                return
            if not rec.dispatched:  # on rank 0's queue, or held
                if rec in self.queue:
                    self.queue.remove(rec)
                self._end_locked(rec, C.FAILED, ExitInfo.not_run())
            elif not rec.kill_sent:  # the worker ends it: not started, or killed
                rec.kill_sent = True
                self.outbox.append((rec.rank, Tag.KILL, {"id": rec.id}))
                self.cond.notify_all()

    def release(self, owner: MPIScheduler) -> tuple[dict[str, Record], bool]:
        """Kill the jobs of ``owner``, wait (bounded) for their ends, forget the ended ones; returns
        them, and whether ``owner`` was the last one (the caller then stops the workers, unless the
        runner owns them)."""
        with self.cond:
            pending = [r.id for r in self.records.values() if r.owner is owner and r.status not in C.END_STATES]
        for jid in pending:
            self.kill(owner, jid)
        deadline = time.monotonic() + KILL_GRACE + 5.0
        with self.cond:
            while not self.stopped and any(
                self.records[j].status not in C.END_STATES for j in pending
            ) and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            # Forget the owner's ended jobs (the shared table would grow with every instance of a
            # long engine); one still running (its worker did not answer the kill) keeps its
            # record, which its worker's report ends.
            ended = {j: r for j, r in self.records.items() if r.owner is owner and r.status in C.END_STATES}
            for jid in ended:
                del self.records[jid]
            self.owners.discard(owner)
            last = not self.owners
        return ended, last

    def shutdown(self, timeout: float = STOP_TIMEOUT + 5.0) -> None:
        """Stop every worker (their running jobs are killed) and the MPI thread."""
        with self.cond:
            if not self.stopping:
                self.stopping = True
                for rec in list(self.queue):
                    self._end_locked(rec, C.FAILED, ExitInfo.not_run())
                self.queue.clear()
                for rec in self.records.values():
                    if rec.status in C.WAITING_STATES and not rec.dispatched:  # held
                        self._end_locked(rec, C.FAILED, ExitInfo.not_run())
                self.cond.notify_all()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def workers_info(self) -> list[tuple[int, str, int]]:
        with self.cond:
            return [(w.rank, w.host, w.slots) for w in sorted(self.workers.values(), key=lambda w: w.rank)]

    # -- book-keeping (under the lock) ---------------------------------------------------
    def _end_locked(self, rec: Record, state: str, info: ExitInfo, error: str | None = None) -> None:
        rec.end(state, info, error)
        if rec.dispatched and rec.rank in self.workers:
            self.workers[rec.rank].assigned.discard(rec.id)
        if error:
            logger.error("job %s: %s", rec.id, error)
        if rec.signal_end:
            rec.owner.jobs_finished_event.set()
        self.cond.notify_all()

    def _free_worker_locked(self) -> WorkerSlots | None:
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
                out.extend((r, Tag.STOP, {}) for r in range(1, self.size) if r not in self.dead)
            return out
        while self.queue:
            w = self._free_worker_locked()
            if w is None:
                break
            rec = self.queue.popleft()
            rec.dispatched = True
            rec.rank = w.rank
            w.assigned.add(rec.id)
            out.append((w.rank, Tag.JOB, {"id": rec.id, "spec": rec.spec}))
        return out

    def _has_work_locked(self) -> bool:
        if self.outbox or (self.stopping and not self.stop_sent):
            return True
        return bool(self.queue) and self._free_worker_locked() is not None

    def _busy_locked(self) -> bool:
        return (any(w.assigned for w in self.workers.values()) or self.stopping
                or len(self.workers) + len(self.dead) < self.size - 1)

    def _handle_locked(self, src: int, tag: int, doc: Any) -> None:
        if tag == Tag.HELLO:
            cpus = int(doc.get("cpus") or 1)
            slots = self.slots or cpus
            if self.max_slots:
                slots = min(slots, self.max_slots)
            self.workers[src] = WorkerSlots(src, str(doc.get("host", "?")), max(1, slots))
            self.outbox.append((src, Tag.CONFIG, {"slots": max(1, slots)}))
            logger.debug("MPI worker rank %d on %s: %d slot(s)", src, doc.get("host"), slots)
        elif tag == Tag.STARTED:
            rec = self.records.get(str(doc.get("id")))
            if rec is not None and rec.dispatched and rec.rank == src and rec.status == C.QUEUED_ACTIVE:
                rec.status = C.RUNNING
        elif tag == Tag.RESULT:
            rec = self.records.get(str(doc.get("id")))
            if rec is None or not rec.dispatched or rec.rank != src or rec.status in C.END_STATES:
                logger.warning("MPI worker rank %d reported an unexpected job %r", src, doc.get("id"))
                return
            status, value, sig, usage = doc["exit"]
            info = ExitInfo(status, value, sig, usage.encode("ascii") if usage is not None else None)
            self._end_locked(rec, doc["status"], info, doc.get("error"))
        elif tag == Tag.BYE:
            self.byes.add(src)
        elif tag == Tag.FATAL:
            self._worker_lost_locked(src, f"MPI worker rank {src} failed: {doc.get('error')}")
        else:
            logger.warning("MPI rank 0: unexpected message tag %d from rank %d", tag, src)

    def _worker_lost_locked(self, rank: int, why: str) -> None:
        self.dead[rank] = why
        self.byes.add(rank)
        logger.error("%s", why)
        for rec in self.records.values():
            if rec.dispatched and rec.rank == rank and rec.status not in C.END_STATES:
                self._end_locked(rec, C.FAILED, ExitInfo.aborted(), why)

    # -- the MPI thread ----------------------------------------------------------------
    def _run(self) -> None:
        chan = Channel(self.MPI, self.comm)
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
                    if rec.status not in C.END_STATES:
                        self._end_locked(rec, C.FAILED, ExitInfo.aborted(),
                                         f"MPI dispatcher failed: {text}")
            try:  # best effort: let the workers go
                for rank in range(1, self.size):
                    self.comm.Isend([encode({}), self.MPI.BYTE], dest=rank, tag=Tag.STOP)
            except Exception:
                pass
        finally:
            with self.cond:
                self.stopping = True
                self.stopped = True
                self.cond.notify_all()

