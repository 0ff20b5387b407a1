"""HTCondor's answers read into :class:`~soma_schedulers.polled.Observation`\\ s: the job ClassAds of
``condor_q -json`` and ``condor_history -json`` (one parser for both), and the submit description
that :mod:`.htcondor_scheduler` sends to ``condor_submit``.

Standard library only: the ``htcondor`` Python bindings are not needed (``-json`` is HTCondor's
own serialisation of the ads, and parses with :mod:`json`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import constants as C
from ..batch import Observation
from ..errors import JobSpecError
from ..usage import format_usage

__all__ = ["ATTRIBUTES", "LAUNCH_ATTR", "RUNNER", "TOKEN_ATTR", "job_id_of", "observation", "parse_ads",
           "safe_name", "submit_header"]

#: The job attribute that carries a submission's token (``+SomaToken``), found with ``-constraint``.
TOKEN_ATTR = "SomaToken"
#: The job attribute a job script sets (``condor_chirp set_job_attr``) when it cannot launch its
#: command: the reason, base64 (so that no byte of a path reaches ClassAd quoting).
LAUNCH_ATTR = "SomaLaunchError"
#: What the poll asks of every job (``-attributes``).
ATTRIBUTES = ("ClusterId", "ProcId", "JobStatus", "HoldReasonCode", "HoldReason", "ExitCode", "ExitBySignal",
              "ExitSignal", "NumJobStarts", "JobCurrentStartDate", "JobStartDate", "RemoteWallClockTime",
              "RemoteUserCpu", "RemoteSysCpu", "ResidentSetSize", "MemoryUsage", "RequestCpus", "RemoveReason",
              "LastHoldReason", "LastHoldReasonCode", "Owner", LAUNCH_ATTR)

#: The job's command: ``/bin/sh -c`` decoding and running the job script, which travels base64
#: in the job's environment (``SOMA_JOB``). The script never touches a disk and no byte of the job
#: (argv, paths, env) meets HTCondor's argument or environment quoting: base64 has no quote, space
#: or ``$``. The argument string below is constant.
RUNNER = ("executable = /bin/sh",
          "arguments = \"-c 'eval \"\"$(printf %s \"\"$SOMA_JOB\"\" | base64 -d)\"\"'\"")

#: User holds: ``condor_hold`` (1), ``hold = true`` at submission (15); every other code is HTCondor's.
_USER_HOLDS = frozenset({1, 15})
_LIVE = {1: C.QUEUED_ACTIVE, 2: C.RUNNING, 6: C.RUNNING, 7: C.SYSTEM_SUSPENDED}
_REMOVED, _COMPLETED, _HELD = 3, 4, 5
_TERSE = re.compile(r"(\d+)\.(\d+) - (\d+)\.(\d+)")
_BY_USER = re.compile(r"\(by user ([^)]+)\)")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(name: str | None) -> str:
    """A job name as HTCondor's ``batch_name``: one word of letters, digits and ``_.-`` (the rest
    becomes ``_``), so it is safe on a ``queue ... from`` line and in the submit language."""
    return _NAME_BAD.sub("_", name)[:200] if name else "soma_job"


def submit_header(token: str, hold: bool, cpus: int, native: Sequence[str]) -> list[str]:
    """The submit-description lines every job of one ``condor_submit`` shares."""
    for item in native:
        if "\n" in item or "\r" in item:
            raise JobSpecError(f"a native specification item contains a newline: {item!r}")
    lines = ["universe = vanilla", *RUNNER, "initialdir = /tmp", "output = /dev/null", "error = /dev/null",
             "should_transfer_files = NO", "+WantIOProxy = true", f'+{TOKEN_ATTR} = "{token}"',
             f"request_cpus = {cpus}"]
    if hold:
        lines.append("hold = true")
    return [*lines, *native]


def encode_script(script: str) -> str:
    """The job script as the one base64 word the runner decodes (no line breaks)."""
    return base64.b64encode(script.encode("utf-8", "surrogateescape")).decode("ascii")


def job_id_of(terse: str) -> str | None:
    """The ClusterId in ``condor_submit -terse``'s answer (``12.0 - 12.4``), None if there is none."""
    found = _TERSE.fullmatch(terse.strip())
    return found.group(1) if found else None


def parse_ads(text: str) -> list[dict[str, Any]]:
    """The ads of a ``-json`` listing (nothing at all when no job matched). ``ValueError`` when the
    output is not complete JSON (cut short: a poll must not take a partial listing as the truth)."""
    if not text.strip():
        return []
    ads = json.loads(text)
    if not isinstance(ads, list) or not all(isinstance(ad, dict) for ad in ads):
        raise ValueError("condor -json output is not a list of ads")
    return ads


def ad_id(ad: Mapping[str, Any]) -> str | None:
    """``ClusterId.ProcId`` of an ad."""
    cluster, proc = ad.get("ClusterId"), ad.get("ProcId")
    if isinstance(cluster, int) and isinstance(proc, int):
        return f"{cluster}.{proc}"
    return None


def _number(ad: Mapping[str, Any], name: str) -> float | None:
    value = ad.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def started(ad: Mapping[str, Any]) -> bool:
    """Whether the job ever ran (a start recorded)."""
    return bool(_number(ad, "NumJobStarts") or _number(ad, "JobCurrentStartDate") or _number(ad, "JobStartDate"))


def usage(ad: Mapping[str, Any]) -> bytes | None:
    """``resource_usage`` of an ended job that ran: CPU (user + system), resident memory, wall time."""
    if not started(ad):
        return None
    user, system = _number(ad, "RemoteUserCpu"), _number(ad, "RemoteSysCpu")
    cput = None if user is None and system is None else (user or 0.0) + (system or 0.0)
    rss = _number(ad, "ResidentSetSize")  # KiB
    mem_mb = _number(ad, "MemoryUsage")
    mem = int(rss) if rss is not None else (int(mem_mb * 1024) if mem_mb is not None else None)
    cpus = _number(ad, "RequestCpus")
    return format_usage(cput=cput, mem_kb=mem, walltime=_number(ad, "RemoteWallClockTime"),
                        ncpus=int(cpus) if cpus is not None else None)


def launch_error(ad: Mapping[str, Any]) -> str | None:
    """The reason the job script gave for not launching its command (:data:`LAUNCH_ATTR`), or None."""
    raw = ad.get(LAUNCH_ATTR)
    if not isinstance(raw, str) or ad.get("ExitCode") != 127:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", "replace") or "the command could not be started"
    except (binascii.Error, ValueError):
        return "the command could not be started"


def _held_before(ad: Mapping[str, Any]) -> str:
    """``" (held before: <reason>)"`` when HTCondor itself held the job before removing it (a limit,
    such as ``allowed_job_duration``, holds the job; a ``periodic_remove`` on that hold removes it,
    and only the history's ``LastHoldReason`` then names the limit); empty otherwise."""
    reason, code = ad.get("LastHoldReason"), ad.get("LastHoldReasonCode")
    if not isinstance(reason, str) or not reason or code in _USER_HOLDS:
        return ""
    return f" (held before: {reason})"


def observation(ad: Mapping[str, Any]) -> Observation:
    """What one job ad says, from ``condor_q`` or ``condor_history`` alike."""
    status = ad.get("JobStatus")
    owner = ad.get("Owner") if isinstance(ad.get("Owner"), str) else None
    if status == _COMPLETED:
        by_signal = ad.get("ExitBySignal") is True
        sig = ad.get("ExitSignal") if by_signal else None
        code = ad.get("ExitCode") if not by_signal else None
        return Observation(C.DONE, ended=True, exit_code=code if isinstance(code, int) else None,
                           term_sig=sig if isinstance(sig, int) else None, launch_error=launch_error(ad),
                           started=True, usage=usage(ad), owner=owner)
    if status == _REMOVED:
        raw = ad.get("RemoveReason")
        reason = raw if isinstance(raw, str) else ""
        by = _BY_USER.search(reason) if reason.startswith("via condor_rm") else None
        by_rm = reason.startswith("via condor_rm") or not reason
        return Observation(C.DONE, ended=True, cancelled=by_rm,
                           aborted=None if by_rm else f"HTCondor removed the job: {reason}{_held_before(ad)}",
                           started=started(ad), usage=usage(ad), owner=owner,
                           cancelled_by=by.group(1) if by else None)
    if status == _HELD:
        code = ad.get("HoldReasonCode")
        held = C.USER_ON_HOLD if code in _USER_HOLDS else C.SYSTEM_ON_HOLD
        return Observation(held, owner=owner)
    return Observation(_LIVE.get(status, C.UNDETERMINED) if isinstance(status, int) else C.UNDETERMINED,
                       owner=owner)
