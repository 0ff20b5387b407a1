"""Running jobs that their MOM no longer runs (Torque): found from ``pbsnodes``, ended ``aborted``.

A Torque MOM may lose a job: killed and restarted without its ``mom_priv/jobs`` files (a node
rebooted with a wiped spool), or a job that never started for it. The server keeps the job ``R``
until its own check: it asks the MOM about a job only when the MOM has not reported it for
``job_stat_rate`` seconds (300 by default, checked every 100 s), then aborts it ("Job does not
exist on node"): 5 to 7 minutes of a job shown running that runs nowhere.

The MOM says which jobs it runs in every status update (every ``$status_update_time`` s: 45 by
default), which the server shows as ``jobs=`` in the node's ``status`` (``pbsnodes``, with the
report's ``rectime``). A job ``R`` on the server, absent from its mother superior's (first host
of ``exec_host``) reports for ``lost_after`` seconds and at least two fresh reports (``rectime``
changed: a MOM that stopped reporting proves nothing), is lost: its poll says it ended
``aborted`` with the reason. The job is not deleted (Torque aborts it itself later).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LostJobs", "mom_reports", "mother_superior"]

_NODE = re.compile(r"^(\S+)\s*$")
_STATUS = re.compile(r"^\s+status = (.*)$")


def mom_reports(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``pbsnodes`` text -> ``{node: (rectime, jobs its MOM reported)}``; nodes without a
    ``status`` (never reported) are left out."""
    reports: dict[str, tuple[str, frozenset[str]]] = {}
    node = None
    for line in text.splitlines():
        head = _NODE.match(line)
        if head:
            node = head.group(1)
            continue
        status = _STATUS.match(line)
        if status and node:
            items = dict(item.partition("=")[::2] for item in status.group(1).split(","))
            if "rectime" in items and "jobs" in items:
                reports[node] = (items["rectime"].strip(), frozenset(items["jobs"].split()))
    return reports


def mother_superior(exec_host: object) -> str | None:
    """The first host of ``exec_host`` (``c1/0-3+c2/0`` -> ``c1``), None when there is none."""
    host = str(exec_host or "").split("+", 1)[0].split("/", 1)[0].strip()
    return host or None


@dataclass
class _Missing:
    since: float
    reports: set[str] = field(default_factory=set)


class LostJobs:
    """Follows running jobs their MOM does not report; not thread-safe (the poll's lock guards it).

    ``lost_after``: seconds a job may be missing from its MOM's reports; ``every``: seconds between
    two ``pbsnodes`` (a poll asks only when due and some job runs).
    """

    def __init__(self, lost_after: float = 60.0, every: float = 15.0) -> None:
        self.lost_after = lost_after
        self.every = every
        self._asked_at = float("-inf")
        self._missing: dict[str, _Missing] = {}

    def due(self, now: float) -> bool:
        """Whether a poll at ``now`` should ask ``pbsnodes``."""
        return now - self._asked_at >= self.every

    def check(self, running: Mapping[str, str], reports: Mapping[str, tuple[str, frozenset[str]]],
              now: float) -> dict[str, str]:
        """``running``: ``{job id: its mother superior}`` of the jobs ``R`` on the server;
        ``reports``: :func:`mom_reports`. Returns ``{job id: why it is lost}`` for the jobs missing
        long enough (then forgotten)."""
        self._asked_at = now
        for job_id in [j for j in self._missing if j not in running]:
            del self._missing[job_id]  # ended, or no longer running
        lost = {}
        for job_id, node in running.items():
            report = reports.get(node)
            if report is None or job_id in report[1]:
                self._missing.pop(job_id, None)
                continue
            missing = self._missing.setdefault(job_id, _Missing(now))
            missing.reports.add(report[0])
            if now - missing.since >= self.lost_after and len(missing.reports) >= 2:
                del self._missing[job_id]
                lost[job_id] = (f"Torque's MOM on {node} no longer runs the job: it was missing from "
                                f"the MOM's status reports for {now - missing.since:.0f} s "
                                f"({len(missing.reports)} reports) while the server still showed it "
                                "running (lost by the MOM; the server aborts it only after job_stat_rate)")
        return lost

    def forget(self) -> None:
        """Drop every job followed (the scheduler's ``clean``)."""
        self._missing.clear()
