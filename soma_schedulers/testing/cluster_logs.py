"""Logs of a test cluster for a failure report: each container's own share, the failing jobs first.

A report used to keep the last 20,000 characters of every container's logs put together, so
one chatty container could hide another's lines, and a job's story was cut where it mattered.
Here each container gets its own budget: its ``docker logs`` tail, then each daemon log file
(``ClusterSpec.log_paths``) with, first, the lines naming a job still pending when the case
failed (the ids the failure names as not ended: a stalled job's lines, wherever they are), then
those naming the case's other jobs (``grep -w``, with context), then the file's tail. Cut text
starts at a line boundary. Lines matching :data:`NOISE` are left out of all three, and counted.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["DOCKER_LOG_BUDGET", "FILE_BUDGET", "NOISE", "cluster_logs", "file_report_script", "report_focus"]

#: Characters kept of each container's ``docker logs`` and of each daemon log file.
DOCKER_LOG_BUDGET = 3000
FILE_BUDGET = 5000
#: At most this many pending jobs get their own section (the others join the case's ids).
MAX_PENDING = 8
#: Lines left out of every log file (``grep -E``), with what they are. Torque's server logs a
#: debug line for every lock and unlock of a job: 97% of its 400,000 lines after 25 runs of 100
#: jobs on torque-cluster, enough to fill any budget with nothing.
NOISE: dict[str, str] = {r";(un)?locking .* in method ": "Torque's job locking/unlocking debug lines"}


def _tail(text: str, budget: int) -> str:
    """The end of ``text`` within ``budget`` characters, starting at a line."""
    if len(text) <= budget:
        return text
    cut = text[-budget:]
    return "[...]\n" + cut[cut.find("\n") + 1:] if "\n" in cut else cut


def report_focus(case_ids: Sequence[str], recent_ids: Sequence[str], failure: str,
                 pending: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """``(pending, others)``: the ids of a failed case whose log lines a report shows first.

    ``pending``: the jobs the failure says are not ended (``target.JobsNotEnded.pending``), at
    most :data:`MAX_PENDING`; ``others``: the case's last 20 jobs (``case_ids``, the last first),
    then those of ``recent_ids`` that ``failure`` names, without the pending ones.
    """
    stuck = list(dict.fromkeys(i for i in pending if i))
    named = [i for i in recent_ids if i in failure][-20:]
    others = [i for i in dict.fromkeys([*stuck[MAX_PENDING:], *reversed(case_ids[-20:]), *named])
              if i not in stuck[:MAX_PENDING]]
    return stuck[:MAX_PENDING], others


def _named(what: str, ids: Sequence[str]) -> str:
    return shlex.quote(f": lines naming {what} " + ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else ""))


def file_report_script(globs: Sequence[str], focus: Sequence[str], budget: int = FILE_BUDGET,
                       pending: Sequence[str] = (), noise: Mapping[str, str] | None = None) -> str:
    """A ``sh`` script printing, per log file, the lines about ``pending`` jobs, then about the
    ``focus`` ones, then the tail, in ``budget``; lines matching ``noise`` (default
    :data:`NOISE`) are left out, and counted."""
    noise = NOISE if noise is None else noise
    stuck = [i for i in dict.fromkeys(pending) if i]
    ids = [i for i in dict.fromkeys(focus) if i and i not in stuck][:40]
    stuck_share = budget * 2 // 5 if stuck else 0
    ids_share = (budget // 5 if stuck else budget // 2) if ids else 0
    patterns = " ".join(f"-e {shlex.quote(p)}" for p in noise)
    keep = f"grep -v -E {patterns}" if noise else "cat"
    lines = [f'for f in {" ".join(globs)}; do', '  [ -f "$f" ] || continue']
    if noise:
        what = shlex.quote(" line(s) left out: " + "; ".join(noise.values()))
        lines += [f'  n=$(grep -c -E {patterns} "$f")', f'  [ "$n" -gt 0 ] && echo "---- $f: $n"{what}']
    for group, what, share in ((stuck, "pending job", stuck_share), (ids, "job", ids_share)):
        if group:
            greps = " ".join(f"-e {shlex.quote(i)}" for i in group)
            lines += [f'  echo "---- $f"{_named(what, group)}',
                      f'  grep -n -w -F -C 2 {greps} "$f" | {keep} | uniq | tail -c {share} | sed "1{{/^[^0-9]/d}}"']
    lines += ['  echo "---- $f: last lines"',
              f'  {keep} "$f" | tail -c {budget - stuck_share - ids_share} | sed 1d', "done", "true"]
    return "\n".join(lines) + "\n"


def cluster_logs(cluster: Any, focus: Sequence[str] = (), pending: Sequence[str] = ()) -> str:
    """Every container's logs within its own budget (``cluster`` is a ``DrmsCluster``), the lines
    naming the ``pending`` jobs, then the ``focus`` ones, first."""
    parts: list[str] = []
    for ctr in cluster.containers:
        try:
            ctr.reload()
            status = ctr.status
            text = ctr.logs(tail=400).decode("utf-8", errors="replace")
        except Exception as exc:  # the container is already gone
            parts.append(f"==== {ctr.name}: unavailable ({exc})")
            continue
        parts.append(f"==== {ctr.name} ({status}) docker logs\n{_tail(text.rstrip(), DOCKER_LOG_BUDGET)}")
        if status == "running" and cluster.spec.log_paths:
            try:
                script = file_report_script(cluster.spec.log_paths, focus, pending=pending)
                _, out = cluster.exec(["sh", "-c", script], container=ctr)
            except Exception as exc:  # logs are a help, never a second failure
                out = f"unavailable: {exc}"
            parts.append(f"==== {ctr.name} daemon logs\n{out.rstrip()}")
    return "\n".join(parts)
