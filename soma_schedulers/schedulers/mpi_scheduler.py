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
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from ..errors import SchedulerUnavailableError
from ..job_table import TableScheduler
from .mpi_dispatcher import Dispatcher, Record
from .mpi_protocol import import_mpi, job_environment
from .mpi_worker import worker_loop

__all__ = ["MPIScheduler", "job_environment", "main", "shutdown_workers", "worker_loop"]

_DISPATCHER: Dispatcher | None = None
_DISPATCHER_LOCK = threading.Lock()
#: Set by :func:`main`: the workers live as long as rank 0's program, whatever the
#: instances do (without it, clean() of the last instance stops them).
_RUNNER_OWNS_WORKERS = False


def _dispatcher(slots: int = 0, max_slots: int = 0, comm: Any = None) -> Dispatcher:
    """The process's dispatcher, created on first use (checks the MPI world)."""
    global _DISPATCHER
    with _DISPATCHER_LOCK:
        if _DISPATCHER is not None:
            why = _DISPATCHER.unavailable()
            if why:
                raise SchedulerUnavailableError(why)
            return _DISPATCHER
        mpi = import_mpi()
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
        _DISPATCHER = Dispatcher(mpi, comm, slots, max_slots)
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


class MPIScheduler(TableScheduler[Record]):
    """Jobs run as subprocesses of the worker ranks (>= 1) of the MPI world; this is rank 0.

    ``slots_per_worker``: jobs at once per worker (0: the worker node's CPU
    count); ``max_slots_per_worker`` caps it (0: no cap). ``comm``: the
    communicator (default ``MPI.COMM_WORLD``). Only the first instance of a
    process sets these; later ones share its workers.
    """

    scheduler_type = "mpi"

    def __init__(self, slots_per_worker: int = 0, max_slots_per_worker: int = 0, comm: Any = None) -> None:
        dispatcher = _dispatcher(slots_per_worker, max_slots_per_worker, comm)
        super().__init__(dispatcher.cond)  # the job table shares the dispatcher's lock
        self._dispatcher = dispatcher
        with self._dispatcher.cond:
            self._dispatcher.owners.add(self)
        self._cleaned = False

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """mpi4py missing (found without importing it: importing it starts MPI)."""
        if importlib.util.find_spec("mpi4py") is None:
            return "mpi4py is not installed (install python3-mpi4py on Debian, or 'pip install mpi4py')"
        return None

    @property
    def workers(self) -> list[tuple[int, str, int]]:
        """``(rank, hostname, slots)`` of the workers that have said hello."""
        return self._dispatcher.workers_info()

    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        return self.submit_each(jobs, lambda job: self._dispatcher.submit(self, job, signal_end))

    def kill_job(self, scheduler_job_id: str) -> None:
        self._dispatcher.kill(self, scheduler_job_id)

    def clean(self) -> None:
        """Kill this instance's jobs (waiting up to KILL_GRACE + 5 s for their ends).

        The shared dispatcher forgets them; :attr:`job_table` keeps their ends (until the instance
        is dropped).

        Outside the runner, the last instance of the process also stops the workers.
        """
        if self._cleaned:
            return
        self._cleaned = True
        _ended, last = self._dispatcher.release(self)
        if last and not _RUNNER_OWNS_WORKERS:
            self._dispatcher.shutdown()

    @classmethod
    def build_scheduler(cls, config: Any) -> MPIScheduler:
        """``CPU_NB`` is the slots per worker (0: its CPU count), ``MAX_CPU_NB`` caps them."""
        slots = int(getattr(config, "cpu_nb", 0) or 0)
        max_slots = int(getattr(config, "max_cpu_nb", 0) or 0)
        return cls(slots_per_worker=slots, max_slots_per_worker=max_slots)


__main_scheduler__ = MPIScheduler


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
        mpi = import_mpi()
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
