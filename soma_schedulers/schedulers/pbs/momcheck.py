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

The same ``pbsnodes`` tells when a MOM stopped: its node ``down``, or the same report (``rectime``)
seen for ``silent_after`` seconds (default twice ``lost_after``; a MOM reports every
``$status_update_time`` s, 45 by default; a server with MOM nodes of their own may keep a dead
MOM's node ``free``: measured on the torque-cluster). A job ``R`` on such a node is remembered
(:meth:`LostJobs.outage`). A Torque MOM restarted while its job ran no longer is the
parent of the job's session: it records the job's end with exit status 0 whatever the job did
(``scan_non_child_tasks``: "actually unknown"), so such an end is not the job's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["LostJobs", "mom_reports", "mother_superior", "node_states"]

_NODE = re.compile(r"^(\S+)\s*$")
_ATTRIBUTE = re.compile(r"^\s+(\w+) = (.*)$")


def _node_attribute(text: str, name: str) -> Iterator[tuple[str, str]]:
    """``(node, value)`` of each ``name = value`` line of ``pbsnodes`` text."""
    node = None
    for line in text.splitlines():
        head = _NODE.match(line)
        if head:
            node = head.group(1)
            continue
        attribute = _ATTRIBUTE.match(line)
        if attribute and node and attribute.group(1) == name:
            yield node, attribute.group(2).strip()


def mom_reports(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """``pbsnodes`` text -> ``{node: (rectime, jobs its MOM reported)}``; nodes without a
    ``status`` (never reported) are left out."""
    reports: dict[str, tuple[str, frozenset[str]]] = {}
    for node, status in _node_attribute(text, "status"):
        items = dict(item.partition("=")[::2] for item in status.split(","))
        if "rectime" in items and "jobs" in items:
            reports[node] = (items["rectime"].strip(), frozenset(items["jobs"].split()))
    return reports


def node_states(text: str) -> dict[str, str]:
    """``pbsnodes`` text -> ``{node: its state}`` (``free``, ``down``, ``job-exclusive,busy``...)."""
    return dict(_node_attribute(text, "state"))


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
    two ``pbsnodes`` (a poll asks only when due and some job runs); ``silent_after``: seconds
    without a new report after which a MOM is taken as stopped (default ``2 * lost_after``).
    """

    def __init__(self, lost_after: float = 60.0, every: float = 15.0, silent_after: float | None = None) -> None:
        self.lost_after = lost_after
        self.every = every
        self.silent_after = 2 * lost_after if silent_after is None else silent_after
        self._asked_at = float("-inf")
        self._missing: dict[str, _Missing] = {}
        self._outages: dict[str, str] = {}
        self._rectimes: dict[str, tuple[str, float]] = {}  # node -> its last report, when first seen
        self._stopped_nodes: dict[str, str] = {}  # as the last check saw them

    def due(self, now: float) -> bool:
        """Whether a poll at ``now`` should ask ``pbsnodes``."""
        return now - self._asked_at >= self.every

    def check(self, running: Mapping[str, str], reports: Mapping[str, tuple[str, frozenset[str]]],
              now: float, states: Mapping[str, str] | None = None) -> dict[str, str]:
        """``running``: ``{job id: its mother superior}`` of the jobs ``R`` on the server;
        ``reports``: :func:`mom_reports`; ``states``: :func:`node_states` (a job whose node is
        ``down`` is remembered: :meth:`outage`). Returns ``{job id: why it is lost}`` for the jobs
        missing long enough (then forgotten)."""
        self._asked_at = now
        self._stopped_nodes = {}
        for node in set(running.values()):
            stopped = self._stopped(node, reports.get(node), (states or {}).get(node, ""), now)
            if stopped:
                self._stopped_nodes[node] = stopped
        for job_id, node in running.items():
            if node in self._stopped_nodes:
                self._outages.setdefault(job_id, f"its MOM on {node} {self._stopped_nodes[node]} while it ran")
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

    def _stopped(self, node: str, report: tuple[str, frozenset[str]] | None, state: str, now: float) -> str | None:
        """How the MOM on ``node`` is seen stopped (node ``down``, or silent), else None."""
        if "down" in state.split(","):
            return "was down"
        if report is None:
            return None
        rectime, since = self._rectimes.get(node, ("", now))
        if rectime != report[0]:
            self._rectimes[node] = (report[0], now)
            return None
        return f"sent no status report for {now - since:.0f} s" if now - since >= self.silent_after else None

    def stopped(self, node: str | None, now: float) -> str | None:
        """How the last check saw the MOM on ``node`` stopped (``was down``, ``sent no status report
        for 40 s``), None when it did not or that check is older than two periods (no job ran)."""
        return self._stopped_nodes.get(node or "") if now - self._asked_at <= 2 * self.every else None

    def outage(self, job_id: str) -> str | None:
        """Why the MOM of ``job_id`` is known to have been down while the job ran, else None;
        forgotten once asked (ask when the job ends)."""
        return self._outages.pop(job_id, None)

    def forget(self) -> None:
        """Drop every job followed (the scheduler's ``clean``)."""
        self._missing.clear()
        self._outages.clear()
        self._rectimes.clear()
        self._stopped_nodes.clear()
