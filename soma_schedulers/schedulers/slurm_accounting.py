"""Slurm's accounting (``sacct``), read once for every backend that asks it.

The ``slurm`` backend asks it for every job that left ``squeue``'s live states, the ``drmaa``
backend (slurm-drmaa family) for every job libdrmaa reaped, and DRMAA's attach for the jobs of
other processes. All of them go through :func:`query_sacct`, which names the fields it asks for
and gives each job as a :class:`SacctJob` (the job's line and its steps' lines, read by field
name), whose methods carry the rules:

* :meth:`SacctJob.started`: a start time *and* a node (a job cancelled while pending has a Start
  in some versions, never a node);
* :meth:`SacctJob.max_rss_kb`: the largest ``MaxRSS`` of the steps (the job's line has none);
* :meth:`SacctJob.exit`: ``ExitCode`` ``code:signal`` as ``(exit_code, term_sig)``;
* :meth:`SacctJob.half_written`: the record is not complete yet (a live step, or ``FAILED`` with
  exit ``0:0`` on a job that started: slurmdbd has the end but not yet the exit code).

One id may have several records (:func:`query_sacct_records` with ``sacct -D``): each run of a
requeued job (``REQUEUED``, ``PREEMPTED``, ``NODE_FAIL``, then the rerun's), and each job given the
id again after the controller lost its state (ids start again; slurmdbd keeps the old records).
:func:`pick_record` chooses one job's record among them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import CommandError
from ..runner import CommandRunner
from ..usage import format_usage, memory_to_kb, parse_hms

__all__ = [
    "ABORTED", "ENDED", "LIVE", "TOKEN_MARK", "SacctJob", "SacctLine", "complete_lines", "parse_exit_code",
    "pick_record", "query_sacct", "query_sacct_records", "run_sacct", "split_sacct", "split_state",
]

#: The start of the token a submission puts in its job's Comment (``--comment``).
TOKEN_MARK = "soma_token:"

#: End states in which Slurm ended the job itself (a limit, a node failure...): ``aborted``.
ABORTED = frozenset({"TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "REVOKED"})
#: Every end state of a job.
ENDED = ABORTED | {"COMPLETED", "FAILED", "CANCELLED", "SPECIAL_EXIT"}
#: The states of a job (or step) that has not ended.
LIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
                  "SIGNALING", "STAGE_OUT", "STOPPED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})


def complete_lines(text: str) -> list[str]:
    """The lines of a command's output, less a last one cut short (no final newline)."""
    lines = text.split("\n")
    return [line for line in lines[:-1] if line]


def run_sacct(runner: CommandRunner, ids: Sequence[str], fields: str, select: Sequence[str] = ()) -> str | None:
    """``sacct -n -P -j IDS -o FIELDS`` output (``select``: other selecting options instead of
    ``-j IDS``); None when accounting storage is disabled."""
    selection = list(select) or ["-j", ",".join(ids)]
    try:
        out: str = runner.run(["sacct", "-n", "-P", *selection, "-o", fields]).stdout
    except CommandError as exc:
        if "accounting storage is disabled" in (exc.stderr + exc.stdout).lower():
            return None
        raise
    return out


def split_sacct(out: str, nfields: int) -> tuple[dict[str, list[str]], dict[str, list[list[str]]]]:
    """``sacct -P`` lines as ``(jobs, steps)``: job id -> fields, job id -> its steps' fields.

    Lines cut short (fewer than ``nfields`` fields, or no final newline) are dropped.
    """
    jobs: dict[str, list[str]] = {}
    steps: dict[str, list[list[str]]] = {}
    for line in complete_lines(out):
        f = line.split("|", nfields - 1)
        if len(f) < nfields:
            continue
        base, _, step = f[0].partition(".")
        if step:
            steps.setdefault(base, []).append(f)
        else:
            jobs[base] = f
    return jobs, steps


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """Slurm's ``code:signal`` as ``(exit_code, term_sig)`` (a 0 signal is None)."""
    code, _, sig = text.strip().partition(":")
    try:
        c = int(code)
        s = int(sig) if sig else 0
    except ValueError:
        return None, None
    return (None, s) if s else (c, None)


def split_state(text: str) -> tuple[str, str | None]:
    """sacct's ``State`` as ``(state, uid of who cancelled it)``: ``"CANCELLED by 1000"`` gives
    ``("CANCELLED", "1000")``, ``"COMPLETED"`` gives ``("COMPLETED", None)``."""
    words = text.split()
    state = words[0] if words else ""
    by = words[2] if len(words) >= 3 and words[1] == "by" else None
    return state, by


@dataclass(frozen=True)
class SacctLine:
    """One ``sacct -P`` line (a job or one of its steps), its values by sacct field name
    (``JobIDRaw``, ``State``...); a field that was not asked for reads ``""``."""

    values: Mapping[str, str]

    def __getitem__(self, name: str) -> str:
        return self.values.get(name, "")

    @property
    def state(self) -> str:
        """The state's first word (``CANCELLED`` of ``CANCELLED by 1000``)."""
        return split_state(self["State"])[0]

    @property
    def cpu_seconds(self) -> float | None:
        """``TotalCPU`` in seconds (None when empty)."""
        return parse_hms(self["TotalCPU"]) if self["TotalCPU"] else None

    @property
    def rss_kb(self) -> int | None:
        """``MaxRSS`` in kB (None when empty)."""
        return memory_to_kb(self["MaxRSS"]) if self["MaxRSS"] else None


@dataclass
class SacctJob:
    """A job's accounting record: its own line and those of its steps (``.batch``, ``.0``...)."""

    line: SacctLine
    steps: list[SacctLine] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        return self.line[name]

    @property
    def state(self) -> str:
        """The job's state (first word)."""
        return self.line.state

    @property
    def cancelled_by(self) -> str | None:
        """The uid who cancelled the job (``CANCELLED by <uid>``), None when not said."""
        return split_state(self.line["State"])[1]

    @property
    def ended(self) -> bool:
        """Whether the record is of an ended job (any of :data:`ENDED`)."""
        return self.state in ENDED

    @property
    def live(self) -> bool:
        """Whether the record is of a job that has not ended (any of :data:`LIVE`)."""
        return self.state in LIVE

    def owner(self) -> str | None:
        """The uid of the job's owner (``UID``), None when the record cannot tell. Slurm 22.05's
        accounting says ``0`` (root) for a job that never started, whoever submitted it (seen on a
        job alice submitted held and cancelled: ``CANCELLED by 1000``, UID 0, User root)."""
        uid = self.line["UID"]
        if not uid or (uid == "0" and not self.started()):
            return None
        return uid

    def started(self) -> bool:
        """Whether the job ran: it has a start time and a node."""
        return self["Start"] not in ("Unknown", "None", "") and self["NodeList"] not in ("None assigned", "")

    def exit(self) -> tuple[int | None, int | None]:
        """``(exit_code, term_sig)`` from ``ExitCode`` (see :func:`parse_exit_code`)."""
        return parse_exit_code(self["ExitCode"])

    def max_rss_kb(self) -> int | None:
        """The largest ``MaxRSS`` of the steps (the job's own line, when no step has one)."""
        sizes = [kb for kb in (s.rss_kb for s in self.steps) if kb is not None]
        return max(sizes) if sizes else self.line.rss_kb

    def cpu_seconds(self) -> float | None:
        """The job's ``TotalCPU``; when it is empty or 0, the first step's that is not empty."""
        cput = self.line.cpu_seconds
        for step in self.steps:
            if step["TotalCPU"] and cput in (None, 0.0):
                cput = step.cpu_seconds
        return cput

    def usage(self, ncpus: bool = False) -> bytes | None:
        """The job's resource usage in the contract's format (None when it never ran); ``ncpus``:
        with the ``NCPUS`` field."""
        if not self.started():
            return None
        elapsed = self["ElapsedRaw"]
        cpus = self["NCPUS"]
        return format_usage(cput=self.cpu_seconds(), mem_kb=self.max_rss_kb(),
                            walltime=float(elapsed) if elapsed.isdigit() else None,
                            ncpus=int(cpus) if ncpus and cpus.isdigit() else None) or None

    def half_written(self) -> bool:
        """Whether slurmdbd has not completely written the job's end yet: a step is still live,
        or the job is ``FAILED`` with exit ``0:0`` although it started (FAILED means a non-zero
        exit: the exit code is not written yet). Seen under load on Slurm 22.05: the ``.batch``
        step still ``RUNNING``, or no ``.batch`` step at all yet, while slurmctld had logged the
        real exit status."""
        live = any(step.state in LIVE for step in self.steps if step["State"])
        return live or (self.started() and self.state == "FAILED" and self["ExitCode"] in ("0:0", ""))


def query_sacct_records(runner: CommandRunner, ids: Sequence[str], fields: Sequence[str],
                        select: Sequence[str] = ()) -> dict[str, list[SacctJob]] | None:
    """One ``sacct -n -P`` for ``ids`` (``select``: other selecting options, e.g. ``-D -j IDS`` for
    every record of each id), each id's records in sacct's order, each with the steps listed after
    it; None when accounting storage is disabled. ``fields`` are sacct field names, ``JobIDRaw`` (or
    ``JobID``, for array tasks: ``12_3``) first; ``Comment`` (which may hold ``|``) can only be last.
    Lines cut short are dropped, and so are steps without their job's line."""
    if fields[0] not in ("JobIDRaw", "JobID") or "Comment" in fields[:-1]:
        raise ValueError(f"sacct fields must start with JobIDRaw or JobID and end with Comment if any: {fields}")
    out = run_sacct(runner, ids, ",".join(fields), select)
    if out is None:
        return None
    records: dict[str, list[SacctJob]] = {}
    for text in complete_lines(out):
        values = text.split("|", len(fields) - 1)
        if len(values) < len(fields):
            continue
        line = SacctLine(dict(zip(fields, values, strict=True)))
        base, _, step = values[0].partition(".")
        if not step:
            records.setdefault(base, []).append(SacctJob(line))
        elif base in records:
            records[base][-1].steps.append(line)
    return records


def query_sacct(runner: CommandRunner, ids: Sequence[str], fields: Sequence[str],
                select: Sequence[str] = ()) -> dict[str, SacctJob] | None:
    """:func:`query_sacct_records`, the last record of each id (sacct gives only the newest one of
    an id unless asked ``-D``)."""
    records = query_sacct_records(runner, ids, fields, select)
    return None if records is None else {job_id: runs[-1] for job_id, runs in records.items()}


def pick_record(records: Sequence[SacctJob], token: str | None = None, since: str = "",
                before: str = "") -> SacctJob | None:
    """The newest (by ``Submit``, then sacct's order) of one job's ``records`` (``sacct -D``), less
    those of other jobs given its id: a Comment holding another submission's token than ``token``,
    a ``Submit`` before ``since`` (the job's own, as squeue gave it: an older job's record) or from
    ``before`` on (when squeue showed another job under the id, submitted then). A requeued job's
    records all carry its token and its reruns' ``Submit`` times are later than its first. None when
    no record is the job's."""
    ours = [r for r in records
            if not (token and r["Comment"].startswith(TOKEN_MARK) and r["Comment"] != token)
            and (not since or r["Submit"] >= since) and (not before or r["Submit"] < before)]
    ours.sort(key=lambda r: r["Submit"])  # ISO times, the controller's clock; stable for equal ones
    return ours[-1] if ours else None
