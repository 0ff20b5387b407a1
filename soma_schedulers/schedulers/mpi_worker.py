"""The worker ranks (>= 1) of the ``mpi`` backend: up to ``slots`` jobs at once, each in a thread
blocked in ``wait4``, their ends reported to rank 0 at once (see :mod:`.mpi_scheduler`)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

from .. import constants as C
from ..errors import DRMError
from ..exit_info import ExitInfo
from ..process import KILL_GRACE, JobProcess, ProcessResult, ProcessSpec
from .mpi_protocol import (
    POLL_MIN,
    WORKER_POLL_MAX,
    Channel,
    Tag,
    encode,
    import_mpi,
    job_environment,
)

__all__ = ["NOTRUN", "WorkerRank", "worker_loop"]

logger = logging.getLogger("soma_schedulers.schedulers.mpi_scheduler")  # one logger for the backend

NOTRUN = ProcessResult(C.FAILED, ExitInfo.not_run())


class WorkerRank:
    """The loop of a rank >= 1: a queue of jobs from rank 0, up to ``slots`` of them running."""

    def __init__(self, mpi: Any, comm: Any) -> None:
        self.MPI = mpi
        self.comm = comm
        self.chan = Channel(mpi, comm)
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
            result = ProcessResult(C.FAILED, ExitInfo.aborted(), f"worker error: {exc}")
        self.ended.put((job_id, result))

    def _report(self, job_id: str, result: ProcessResult) -> None:
        info = result.exit_info
        usage = info.resource_usage.decode("ascii") if info.resource_usage is not None else None
        self.chan.send(0, Tag.RESULT, {"id": job_id, "status": result.status, "error": result.error,
                                       "exit": [info.exit_status, info.exit_value, info.term_sig, usage]})

    def _start_ready(self) -> None:
        while self.waiting and len(self.running) < self.slots and not self.stopping:
            jid, spec = self.waiting.popleft()
            proc = JobProcess(spec, self.base_env)
            self.running[jid] = proc
            threading.Thread(target=self._execute, args=(jid, proc), name=f"soma-mpi-job-{jid}",
                             daemon=True).start()
            self.chan.send(0, Tag.STARTED, {"id": jid})

    def _finish(self, job_id: str, result: ProcessResult) -> None:
        self.running.pop(job_id, None)
        self._start_ready()  # the next job first, then the news
        self._report(job_id, result)

    def _drop_waiting(self, job_id: str | None = None) -> None:
        """Report waiting jobs (one, or all) as never started."""
        keep: deque[tuple[str, ProcessSpec]] = deque()
        for jid, spec in self.waiting:
            if job_id is None or jid == job_id:
                self._report(jid, NOTRUN)
            else:
                keep.append((jid, spec))
        self.waiting = keep

    def _handle(self, tag: int, doc: Any) -> None:
        if tag == Tag.JOB:
            jid = str(doc.get("id"))
            try:
                spec = ProcessSpec.from_message(doc.get("spec") or {})
            except ValueError as exc:
                self._report(jid, ProcessResult(C.FAILED, ExitInfo.aborted(), str(exc)))
                return
            if self.stopping:
                self._report(jid, NOTRUN)
                return
            self.waiting.append((jid, spec))
            self._start_ready()
        elif tag == Tag.KILL:
            jid = str(doc.get("id"))
            if jid in self.running:
                self.running[jid].kill()
            else:
                self._drop_waiting(jid)
        elif tag == Tag.CONFIG:
            self.slots = max(1, int(doc.get("slots") or 1))
            self._start_ready()
        elif tag == Tag.STOP:
            self.stopping = True
            self._drop_waiting()
            for p in list(self.running.values()):
                p.kill()

    def on_sigterm(self, _signo: int, _frame: Any) -> None:
        self.terminated = True
        for p in list(self.running.values()):
            p.kill()

    def run(self) -> int:
        self.chan.send(0, Tag.HELLO, {"host": socket.gethostname(), "pid": os.getpid(), "cpus": self.slots})
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
                self.comm.Send([encode({}), self.MPI.BYTE], dest=0, tag=Tag.BYE)
                return 0
            delay = POLL_MIN if activity else min(delay * 2, WORKER_POLL_MAX)
            try:  # a job's end wakes this at once
                self._finish(*self.ended.get(timeout=delay))
                delay = POLL_MIN
            except queue.Empty:
                pass


def worker_loop(comm: Any = None) -> int:
    """Run jobs for rank 0 until it says stop; returns an exit code (0: stopped cleanly)."""
    mpi = import_mpi()
    comm = comm if comm is not None else mpi.COMM_WORLD
    if int(comm.Get_rank()) == 0:
        raise DRMError("worker_loop() runs on ranks >= 1; rank 0 builds the MPIScheduler")
    worker = WorkerRank(mpi, comm)
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
            comm.Send([encode({"error": text}), mpi.BYTE], dest=0, tag=Tag.FATAL)
        except Exception:
            pass
        return 1


# --------------------------------------------------------------------------- runner
