"""The wire protocol of the ``mpi`` backend, shared by rank 0 (:mod:`.mpi_dispatcher`) and the
worker ranks (:mod:`.mpi_worker`): message tags, polling delays, JSON messages over a
non-blocking :class:`Channel`, and the environment jobs get (without the launcher's variables).

Importing it never imports mpi4py: :func:`import_mpi` does, when a scheduler or a worker starts.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import SchedulerUnavailableError
from ..process import KILL_GRACE

__all__ = ["IDLE_POLL", "POLL_MAX", "POLL_MIN", "STOP_TIMEOUT", "WORKER_POLL_MAX", "Channel", "Tag", "encode",
           "import_mpi", "job_environment"]

class Tag(enum.IntEnum):
    """The message tags (MPI tags are ints)."""

    HELLO = 61  # worker -> 0: {"host", "cpus", "pid"}
    JOB = 62  # 0 -> worker: {"id", "spec": ProcessSpec.to_message()}
    KILL = 63  # 0 -> worker: {"id"}
    STOP = 64  # 0 -> worker: {}
    RESULT = 65  # worker -> 0: {"id", "status", "exit": [exit_status, value, sig, usage], "error"}
    BYE = 66  # worker -> 0: {} (last message of a worker)
    FATAL = 67  # worker -> 0: {"error"} (the worker loop broke; its jobs are killed)
    CONFIG = 68  # 0 -> worker: {"slots"} (answer to hello, before any job)
    STARTED = 69  # worker -> 0: {"id"} (the job's process is being started)


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


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module (initialises MPI), or SchedulerUnavailableError."""
    try:
        from mpi4py import MPI
    except Exception as exc:  # ImportError, or RuntimeError when libmpi is missing
        raise SchedulerUnavailableError(
            f"scheduler type 'mpi' needs mpi4py and an MPI library ({type(exc).__name__}: {exc}); "
            "install python3-mpi4py (Debian) or 'pip install mpi4py'"
        ) from None
    return MPI


def encode(obj: Any) -> bytearray:
    """``obj`` as the bytes of a message (ASCII JSON)."""
    return bytearray(json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii"))


class Channel:
    """Non-blocking JSON messages over one communicator (one thread uses it)."""

    def __init__(self, mpi: Any, comm: Any) -> None:
        self.MPI = mpi
        self.comm = comm
        self._status = mpi.Status()
        self._pending: list[tuple[Any, bytearray]] = []

    def send(self, dest: int, tag: int, obj: Any) -> None:
        buf = encode(obj)
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
