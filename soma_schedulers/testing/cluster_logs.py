"""Logs of a test cluster for a failure report: each container's own share, the failing jobs first.

A report used to keep the last 20,000 characters of every container's logs put together, so
one chatty container could hide another's lines, and a job's story was cut where it mattered.
Here each container gets its own budget: its ``docker logs`` tail, then each daemon log file
(``ClusterSpec.log_paths``) with, first, the lines that name one of the ``focus`` job ids
(``grep -w``, with context), then the file's tail. Cut text starts at a line boundary.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

__all__ = ["DOCKER_LOG_BUDGET", "FILE_BUDGET", "cluster_logs", "file_report_script"]

#: Characters kept of each container's ``docker logs`` and of each daemon log file.
DOCKER_LOG_BUDGET = 3000
FILE_BUDGET = 5000


def _tail(text: str, budget: int) -> str:
    """The end of ``text`` within ``budget`` characters, starting at a line."""
    if len(text) <= budget:
        return text
    cut = text[-budget:]
    return "[...]\n" + cut[cut.find("\n") + 1:] if "\n" in cut else cut


def file_report_script(globs: Sequence[str], focus: Sequence[str], budget: int = FILE_BUDGET) -> str:
    """A ``sh`` script printing, per log file, the lines about ``focus`` then the tail, in ``budget``."""
    ids = [i for i in dict.fromkeys(focus) if i][:40]
    greps = " ".join(f"-e {shlex.quote(i)}" for i in ids)
    half = budget // 2 if ids else 0
    lines = [f'for f in {" ".join(globs)}; do', '  [ -f "$f" ] || continue']
    if ids:
        named = shlex.quote(": lines naming job " + ", ".join(ids[:8]))
        lines += [f'  echo "---- $f"{named}',
                  f'  grep -n -w -F -C 2 {greps} "$f" | tail -c {half} | sed "1{{/^[^0-9]/d}}"']
    lines += ['  echo "---- $f: last lines"', f'  tail -c {budget - half} "$f" | sed 1d', "done", "true"]
    return "\n".join(lines) + "\n"


def cluster_logs(cluster: Any, focus: Sequence[str] = ()) -> str:
    """Every container's logs within its own budget (``cluster`` is a ``DrmsCluster``)."""
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
                _, out = cluster.exec(["sh", "-c", file_report_script(cluster.spec.log_paths, focus)], container=ctr)
            except Exception as exc:  # logs are a help, never a second failure
                out = f"unavailable: {exc}"
            parts.append(f"==== {ctr.name} daemon logs\n{out.rstrip()}")
    return "\n".join(parts)
