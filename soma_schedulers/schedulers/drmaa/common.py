"""What every part of the ``drmaa`` backend shares: loading the ``drmaa`` package, job names,
DRMAA's resource usage and signals, a job's end as an Observation, the states of a live job, the errors."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import re
import signal
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from ... import constants as C
from ...errors import DRMError, SchedulerUnavailableError
from ...polled import Observation
from ...scripts import LAUNCH_ERROR_EXIT
from ...usage import format_usage, memory_to_kb, parse_hms

__all__ = [
    "LIVE", "TOKEN_MARK", "TRANSIENT_ERRORS", "LookupFailed", "drmaa_unavailable_reason", "end_observation",
    "import_drmaa",
    "job_name", "number", "one_line", "signal_number", "usage_from_rusage",
]

#: The contract statuses of a job that has not ended (what ``jobStatus`` gives while it lives).
LIVE = frozenset({
    C.QUEUED_ACTIVE, C.SYSTEM_ON_HOLD, C.USER_ON_HOLD, C.USER_SYSTEM_ON_HOLD, C.RUNNING,
    C.SYSTEM_SUSPENDED, C.USER_SUSPENDED, C.USER_SYSTEM_SUSPENDED,
})
#: DRMAA errors after which a call may or may not have reached the DRMS (class names).
TRANSIENT_ERRORS = ("DrmCommunicationException", "TryLaterException")
#: What a job name carries before the submission's token (families whose jobs can be found by name).
TOKEN_MARK = ".soma"

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.,+=-]")


class LookupFailed(DRMError):
    """Whether the DRMS has a job (looked for by its name) could not be found out."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its class name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def import_drmaa() -> ModuleType:
    """Import the ``drmaa`` package (which loads libdrmaa), or raise SchedulerUnavailableError."""
    try:
        import drmaa
    except ImportError as exc:
        raise SchedulerUnavailableError(
            "the drmaa scheduler needs the 'drmaa' Python package (pip install drmaa) and the DRMS's "
            f"libdrmaa named by DRMAA_LIBRARY_PATH: {one_line(exc)}"
        ) from None
    except (RuntimeError, OSError) as exc:
        raise SchedulerUnavailableError(
            f"no usable DRMAA library: set DRMAA_LIBRARY_PATH to the DRMS's libdrmaa.so ({one_line(exc)})"
        ) from None
    module: ModuleType = drmaa
    return module


def drmaa_unavailable_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """What :meth:`DrmaaScheduler.unavailable_reason` says (``environ``: default ``os.environ``)."""
    env = os.environ if environ is None else environ
    if importlib.util.find_spec("drmaa") is None:
        return "the 'drmaa' Python package is not installed (pip install drmaa)"
    path = env.get("DRMAA_LIBRARY_PATH")
    if path:
        if not os.path.isfile(path):
            return f"DRMAA_LIBRARY_PATH names {path}, which is not a file"
        return None
    if ctypes.util.find_library("drmaa") is None:
        return "no libdrmaa: set DRMAA_LIBRARY_PATH to the DRMS's libdrmaa.so"
    return None


def job_name(name: str) -> str:
    """A job name every DRMAA implementation accepts (SGE refuses spaces, ``/:@\\*?``,
    non-ASCII text and a leading digit)."""
    clean = _NAME_BAD.sub("_", name)[:128] or "job"
    return "j" + clean if clean[0].isdigit() else clean


def number(value: object) -> float | None:
    """``value`` as a float, None when it is not a number."""
    try:
        return float(str(value))
    except ValueError:
        return None


def usage_from_rusage(rusage: Mapping[str, str]) -> bytes | None:
    """DRMAA's ``resourceUsage`` dict in the contract's format (None when it says nothing).

    SGE gives ``cpu`` (s), ``ru_wallclock`` (s), ``ru_maxrss`` (kB) and
    ``maxvmem`` (bytes); others give ``cpu``/``cput``, ``walltime``, ``mem``
    and ``vmem`` with units. SGE's ``mem`` (GB s) and ``vmem`` (current) are not
    the peaks the contract asks for, so they are used only without the SGE keys.
    """
    def seconds(*keys: str) -> float | None:
        for key in keys:
            if key in rusage:
                value = parse_hms(str(rusage[key]))
                if value is not None:
                    return value
        return None

    cput = seconds("cpu", "cput")
    wall = seconds("ru_wallclock", "walltime")
    if "ru_maxrss" in rusage:
        mem = int(number(rusage["ru_maxrss"]) or 0)
    else:
        mem = memory_to_kb(str(rusage.get("mem", ""))) or 0
    if "maxvmem" in rusage:
        vmem = int((number(rusage["maxvmem"]) or 0) / 1024)
    else:
        vmem = memory_to_kb(str(rusage.get("vmem", ""))) or 0
    text = format_usage(cput=cput, mem_kb=mem or None, vmem_kb=vmem or None, walltime=wall)
    return text or None


def signal_number(name: str) -> int | None:
    """``"SIGTERM"`` (or ``"15"``) as 15; None when unknown."""
    name = name.strip()
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        return None


def end_observation(info: Any, killed: bool, launch_error: Callable[[], str | None]) -> Observation:
    """A DRMAA ``JobInfo`` as an ended Observation: ``killed`` when this scheduler terminated the
    job; ``launch_error()`` says why the script could not start its command (exit 127)."""
    rusage = dict(getattr(info, "resourceUsage", None) or {})
    start = number(rusage.get("start_time", ""))
    started = None if start is None else start > 0
    obs = Observation(C.DONE, ended=True, started=started,
                      usage=usage_from_rusage(rusage) if started is not False else None)
    # slurm-drmaa runs the command under a bash that turns a death by signal N into exit
    # 128+N, and reports that as exited *and* signalled: the signal wins.
    sig = signal_number(str(info.terminatedSignal)) if info.hasSignal else None
    if killed or info.wasAborted:
        obs.cancelled = True
    elif sig is not None:
        obs.term_sig = sig
    elif info.hasExited:
        obs.exit_code = int(info.exitStatus)
        if obs.exit_code == LAUNCH_ERROR_EXIT:
            obs.launch_error = launch_error()
    elif info.hasSignal:
        obs.aborted = f"the job died of signal {info.terminatedSignal!r}"
    else:
        obs.aborted = "DRMAA reports neither an exit code nor a signal"
    return obs
