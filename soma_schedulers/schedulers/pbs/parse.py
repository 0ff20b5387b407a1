"""Reading what PBS's commands print: pure functions, the same for OpenPBS and Torque.

``qstat -f`` comes as OpenPBS's JSON (``-F json``) or as text (Torque, and OpenPBS's fallback);
both parse to one shape, ``{job id: attributes}`` with OpenPBS's JSON nesting, so everything past
the parser reads one form. Tested on outputs recorded from the real daemons (tests/fixtures/pbs/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ...usage import format_usage, memory_to_kb, parse_hms

__all__ = [
    "JOB_ID",
    "TOKEN_VAR",
    "UNKNOWN_JOB",
    "as_int",
    "carries_token",
    "complete_records",
    "exit_status_of",
    "job_name",
    "lookup",
    "parse_qstat_json",
    "parse_qstat_text",
    "usage_of",
]

#: The environment variable whose value finds a job again when ``qsub``'s answer is lost.
TOKEN_VAR = "SOMA_SCHEDULERS_TOKEN"
#: A job id as ``qsub`` prints it: ``42``, ``42.server``, ``42[].server`` (an array).
JOB_ID = re.compile(r"\d+(\[\d*\])?(\.[\w.-]+)?")
#: How ``qstat``/``qdel`` say a job is unknown or already over (both flavours' wordings).
UNKNOWN_JOB = re.compile(r"Unknown Job Id|nonexistent job id|Job has finished|invalid state for job", re.I)

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.+-]")


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """OpenPBS ``qstat -f -F json`` -> ``{job id: attributes}`` (empty output: no jobs).

    Raise :class:`ValueError` when the text is no such JSON (output cut short, say).
    """
    if not text.strip():
        return {}
    # strict=False: 23.06 does not escape control characters inside values.
    data = json.loads(text, strict=False)
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise ValueError("qstat JSON has no 'Jobs' object")
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def _convert(value: str) -> Any:
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def parse_qstat_text(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f`` text (Torque; OpenPBS without ``-F``) -> ``{job id: attributes}``.

    Attributes have the shape of OpenPBS's JSON: ``resources_used.cput = 00:00:02`` becomes
    ``{"resources_used": {"cput": "00:00:02"}}``, integers become ``int``. Continuation lines
    (starting with a TAB) are joined to the previous value.
    """
    jobs: dict[str, dict[str, Any]] = {}
    current: dict[str, str] | None = None
    raw: list[tuple[str, str]] = []
    key = ""

    def flush() -> None:
        if current is None:
            return
        attrs: dict[str, Any] = {}
        for k, v in raw:
            parent, dot, child = k.partition(".")
            if dot:
                sub = attrs.setdefault(parent, {})
                if isinstance(sub, dict):
                    sub[child] = _convert(v)
            else:
                attrs[k] = _convert(v)
        jobs[current["id"]] = attrs

    for line in text.splitlines():
        if line.startswith("Job Id:"):
            flush()
            current = {"id": line.split(":", 1)[1].strip()}
            raw = []
            key = ""
        elif current is None or not line.strip():
            continue
        elif line.startswith("\t") and raw:
            raw[-1] = (key, raw[-1][1] + line[1:])
        elif " = " in line:
            key, _, value = line.strip().partition(" = ")
            raw.append((key, value))
        elif line.strip().endswith(" =") or line.strip().endswith("="):
            key = line.strip().rstrip("=").strip()
            raw.append((key, ""))
    flush()
    return jobs


def complete_records(text: str, jobs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``jobs`` parsed from ``qstat -f`` text, without the last one unless the text is complete.

    ``qstat -f`` ends every job with an empty line: output cut short (a dropped connection)
    may end inside the last job, whose attributes would then be missing (an ended job without
    its exit status). A job left out is asked about again at the next poll.
    """
    if jobs and not text.endswith("\n\n"):
        jobs = dict(jobs)
        jobs.pop(next(reversed(jobs)))
    return jobs


def carries_token(attrs: Mapping[str, Any], token: str) -> bool:
    """Whether a job's ``Variable_List`` (OpenPBS: a JSON object; text: ``A=1,B=2``) has ``token``."""
    variables = attrs.get("Variable_List")
    if isinstance(variables, dict):
        return variables.get(TOKEN_VAR) == token
    return isinstance(variables, str) and f"{TOKEN_VAR}={token}" in variables.split(",")


def as_int(value: Any) -> int | None:
    """An attribute's value as an ``int`` (JSON number or text digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def exit_status_of(attrs: Mapping[str, Any]) -> int | None:
    """The recorded exit status: ``Exit_status`` (OpenPBS) or ``exit_status`` (Torque)."""
    for key in ("Exit_status", "exit_status"):
        if key in attrs:
            return as_int(attrs[key])
    return None


def usage_of(attrs: Mapping[str, Any]) -> bytes | None:
    """``resources_used`` as the contract's usage bytes (measured items only)."""
    used = attrs.get("resources_used")
    if not isinstance(used, dict) or not used:
        return None

    def seconds(key: str) -> float | None:
        v = used.get(key)
        return parse_hms(str(v)) if v is not None else None

    def kb(key: str) -> int | None:
        v = used.get(key)
        return memory_to_kb(str(v)) if v is not None else None

    usage = format_usage(
        cpupercent=as_int(used.get("cpupercent")), cput=seconds("cput"), mem_kb=kb("mem"),
        vmem_kb=kb("vmem"), ncpus=as_int(used.get("ncpus")), walltime=seconds("walltime"),
    )
    return usage or None


def lookup(jobs: Mapping[str, dict[str, Any]], job_id: str) -> dict[str, Any] | None:
    """The attributes of ``job_id``; server names may differ (short vs full host name)."""
    attrs = jobs.get(job_id)
    if attrs is not None:
        return attrs
    seq = job_id.split(".", 1)[0]
    for key, value in jobs.items():
        if key.split(".", 1)[0] == seq:
            return value
    return None


def job_name(name: str) -> str:
    """A name PBS accepts (``-N``): letters, digits, ``_.+-``, first a letter, at most 200."""
    clean = _NAME_BAD.sub("_", name)
    if not clean[:1].isalpha():
        clean = "j" + clean
    return clean[:200]
