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
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CommandError, CommandTimeoutError
from ..runner import CommandResult, CommandRunner

__all__ = ["KINDS", "FaultPlan", "inject_faults"]

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

    @property
    def injected(self) -> int:
        return sum(n for k, n in self.counts.items() if k != "ok")


def inject_faults(runner: CommandRunner, plan: FaultPlan) -> FaultPlan:
    """Make ``runner`` inject ``plan``'s faults into every later command; returns ``plan``."""
    real = runner._run_once

    def faulty(argv: Sequence[str], input: bytes | None, timeout: float, check: bool) -> CommandResult:
        kind = plan.draw(argv)
        if kind == "fail":
            raise CommandError(argv, 1, "injected failure: the DRMS refused to answer")
        if kind == "hang":
            time.sleep(min(timeout, plan.hang_seconds))
            raise CommandTimeoutError(argv, timeout)
        result = real(argv, input, timeout, check)
        if kind == "lost":
            raise CommandTimeoutError(argv, timeout)
        if kind == "truncate":
            return replace(result, stdout=plan.cut(result.stdout))
        return result

    runner._run_once = faulty  # type: ignore[method-assign]
    return plan


def describe(plan: FaultPlan) -> dict[str, Any]:
    """Counts for a report."""
    return {"calls": sum(plan.counts.values()), "injected": plan.injected, **plan.counts}
