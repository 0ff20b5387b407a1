"""Fault injection for DRMS commands: make a share of calls fail, hang, or lose output.

Used by the reliability tests to check that, under faults, no job is lost or
misreported and no exception reaches the caller::

    plan = FaultPlan(rate=0.2, seed=1)
    inject_faults(scheduler.runner, plan)   # every later DRMS call may fail
    ...
    plan.counts   # {'fail': 12, 'hang': 9, 'truncate': 11, 'ok': 170}

Faults happen inside the runner's single attempt, so its retry policy applies
to them as to real faults. ``fail`` and ``hang`` strike *before* the command
runs (the DRMS never sees it); ``lost`` runs the command and then loses its
answer (the DRMS did it, the caller does not know): the hardest case for a
submission; ``truncate`` runs it and cuts its output at a random byte.

DRMAA calls go through libdrmaa, not the command runner: :func:`inject_drmaa_faults`
wraps the session methods the ``drmaa`` backend calls instead (``runJob``,
``jobStatus``, ``wait``, ``control``), with the same plan (kinds ``fail``,
``hang``, ``lost``; see :data:`DRMAA_KINDS`).
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CommandError, CommandTimeoutError
from ..runner import Attempt, CommandResult, CommandRunner

__all__ = ["DRMAA_CALLS", "DRMAA_KINDS", "KINDS", "CommandLog", "FaultPlan", "inject_drmaa_faults", "inject_faults",
           "record_commands"]

KINDS = ("fail", "hang", "lost", "truncate")


@dataclass
class FaultPlan:
    """What to inject: ``rate`` of the calls, spread over ``kinds``; reproducible with ``seed``.

    ``commands`` limits injection to those command names (empty: all).
    ``hang_seconds`` caps how long a hang sleeps before it times out.
    """

    rate: float = 0.2
    kinds: Sequence[str] = KINDS
    seed: int | None = None
    commands: Sequence[str] = ()
    hang_seconds: float = 1.0
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not 0 <= self.rate <= 1:
            raise ValueError(f"bad fault plan: kinds {sorted(unknown)}, rate {self.rate}")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self, argv: Sequence[str]) -> str:
        """The fault for this call (``"ok"`` for none), counted."""
        with self._lock:
            kind = "ok"
            if (not self.commands or argv[0] in self.commands) and self._random.random() < self.rate:
                kind = self._random.choice(list(self.kinds))
            self.counts[kind] = self.counts.get(kind, 0) + 1
            return kind

    def cut(self, text: str) -> str:
        with self._lock:
            return text[: self._random.randrange(len(text))] if text else text

    def recount(self, drawn: str, kind: str) -> None:
        """Count a fault drawn as ``drawn`` as ``kind`` (what was really injected)."""
        with self._lock:
            self.counts[drawn] -= 1
            self.counts[kind] = self.counts.get(kind, 0) + 1

    @property
    def injected(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "ok")


def inject_faults(runner: CommandRunner, plan: FaultPlan) -> FaultPlan:
    """Make ``runner`` inject ``plan``'s faults into every later command; returns ``plan``."""
    runner.wrap_attempts(lambda real: functools.partial(_faulty, real, plan))
    return plan


def _faulty(real: Attempt, plan: FaultPlan, argv: Sequence[str], input: bytes | None, timeout: float,
            check: bool, retry: bool) -> CommandResult:
    """One attempt of ``real``, with the fault ``plan`` draws for it."""
    kind = plan.draw(argv)
    if kind == "fail":
        raise CommandError(argv, 1, "injected failure: the DRMS refused to answer")
    if kind == "hang":
        time.sleep(min(timeout, plan.hang_seconds))
        raise CommandTimeoutError(argv, timeout)
    result = real(argv, input, timeout, check, retry)
    if kind == "lost":
        raise CommandTimeoutError(argv, timeout)
    if kind == "truncate":
        return replace(result, stdout=plan.cut(result.stdout))
    return result


@dataclass
class CommandLog:
    """Every command a runner ran and what its caller got back (output, or the error raised),
    so a test that finds a misreported job can show which DRMS answer said what."""

    entries: list[tuple[float, tuple[str, ...], str]] = field(default_factory=list)

    def about(self, job_id: str, limit: int = 12) -> list[str]:
        """The last ``limit`` answers with a line naming ``job_id`` (first field, or ``ID.step``)
        and the submission that returned it, each as ``t=SECONDS argv: line``."""
        pattern = re.compile(rf"^\s*{re.escape(job_id)}(?:[.|\s;]|$)")
        found = []
        for t, argv, text in self.entries:
            for line in text.splitlines():
                if pattern.match(line):
                    found.append(f"t={t:.2f} {' '.join(argv)[:60]}: {line.strip()[:160]}")
        return found[-limit:]


def record_commands(runner: CommandRunner) -> CommandLog:
    """Make ``runner`` keep a :class:`CommandLog` of its later commands (after any injected fault:
    what the scheduler saw); returns the log."""
    log = CommandLog()
    t0 = time.monotonic()

    def wrap(inner: Attempt) -> Attempt:
        return functools.partial(recorded, inner)

    def recorded(inner: Attempt, argv: Sequence[str], input: bytes | None, timeout: float, check: bool,
                 retry: bool) -> CommandResult:
        t = time.monotonic() - t0
        try:
            result = inner(argv, input, timeout, check, retry)
        except CommandError as exc:
            log.entries.append((t, tuple(argv), f"<{type(exc).__name__}: {exc}>"))
            raise
        log.entries.append((t, tuple(argv), result.stdout))
        return result

    runner.wrap_attempts(wrap)
    return log


#: The fault kinds that make sense for DRMAA calls (there is no output to cut).
DRMAA_KINDS = ("fail", "hang", "lost")
#: The DRMAA session methods the ``drmaa`` backend calls that reach the DRMS.
DRMAA_CALLS = ("runJob", "runBulkJobs", "jobStatus", "wait", "control")


class _FaultySession:
    """A DRMAA session whose :data:`DRMAA_CALLS` may fail, hang or lose their answer."""

    def __init__(self, session: Any, errors: Any, plan: FaultPlan) -> None:
        self._session = session
        self._errors = errors
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._session, name)
        if name not in DRMAA_CALLS:
            return real
        plan, errors = self._plan, self._errors

        def call(*args: Any) -> Any:
            label = f"drmaa.{name}"
            kind = plan.draw([label])
            if kind == "lost" and name == "wait":
                # wait's answer comes from libdrmaa's own record of the session's ended jobs,
                # which it gives once: no network lies between them, so nothing can be lost
                # there. A failure before the call is what can happen.
                plan.recount("lost", "fail")
                kind = "fail"
            if kind == "fail":
                raise errors.DrmCommunicationException(f"code 2: injected failure: {label} did not reach the DRMS")
            if kind == "hang":
                time.sleep(plan.hang_seconds)
                raise errors.DrmCommunicationException(f"code 2: injected hang: no answer to {label} "
                                                       f"within {plan.hang_seconds:g} s")
            result = real(*args)
            if kind == "lost":
                raise errors.DrmCommunicationException(f"code 2: injected lost answer: {label} reached the DRMS, its answer was lost")
            return result

        return call


def inject_drmaa_faults(scheduler: Any, plan: FaultPlan) -> FaultPlan:
    """Make a ``DrmaaScheduler``'s later DRMAA calls (:data:`DRMAA_CALLS`) suffer ``plan``'s faults.

    ``fail`` raises ``DrmCommunicationException`` before the call reaches libdrmaa;
    ``hang`` sleeps ``plan.hang_seconds`` and then raises it; ``lost`` makes the
    call (the DRMS acts: a job is submitted, killed) and then raises it, so the
    backend cannot tell it from ``fail``. ``wait`` is never ``lost`` (counted as
    ``fail``): libdrmaa answers it from its own memory. Every session the
    scheduler opens later (after ``sleep``/``wake``) is wrapped too. Returns ``plan``.
    """
    unknown = set(plan.kinds) - set(DRMAA_KINDS)
    if unknown:
        raise ValueError(f"fault kinds {sorted(unknown)} do not apply to DRMAA calls (use {DRMAA_KINDS})")
    errors = scheduler.drmaa.errors
    scheduler.session_wrapper = lambda session: _FaultySession(session, errors, plan)
    return plan


def describe(plan: FaultPlan) -> dict[str, Any]:
    """Counts for a report."""
    return {"calls": sum(plan.counts.values()), "injected": plan.injected, **plan.counts}
