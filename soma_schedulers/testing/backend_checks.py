"""What every backend must meet before its cases run: each problem says what the contract asks
and where it is written, instead of failing later with a bare assertion.

:func:`class_problems` is checked when the run starts (a usage error, reported once);
:func:`instance_problems` when the suite builds the backend's first instance.
"""

from __future__ import annotations

import difflib
import threading
from typing import Any

from ..scheduler import CAPABILITIES, OPTIONAL_CAPABILITIES, Scheduler

__all__ = ["CONTRACT", "GUIDE", "class_problems", "instance_problems", "unknown_capabilities"]

#: Where the rules are written (in the soma_schedulers source tree; also on its project pages).
CONTRACT = "docs/contract.md"
GUIDE = "docs/writing-a-backend.md"

KNOWN_CAPABILITIES = CAPABILITIES | OPTIONAL_CAPABILITIES


def unknown_capabilities(declared: Any) -> list[str]:
    """Names in ``declared`` that are not capabilities, each with a close known name if any."""
    out = []
    for name in sorted(str(n) for n in declared if n not in KNOWN_CAPABILITIES):
        close = difflib.get_close_matches(name, KNOWN_CAPABILITIES, n=1, cutoff=0.6)
        out.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return out


def class_problems(cls: Any, type_name: str) -> list[str]:
    """Problems of a backend class, found without building it."""
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        return [f"type {type_name!r} names {cls!r}, which is not a soma_schedulers.scheduler.Scheduler "
                f"subclass ({GUIDE}, 'The class')"]
    problems = []
    declared = getattr(cls, "capabilities", None)
    if not isinstance(declared, (set, frozenset)) or not all(isinstance(n, str) for n in declared):
        problems.append(f"{cls.__name__}.capabilities must be a frozenset of names, got {declared!r} "
                        f"({CONTRACT}, 'Capabilities')")
    else:
        unknown = unknown_capabilities(declared)
        if unknown:
            problems.append(
                f"{cls.__name__}.capabilities has unknown name(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(CAPABILITIES))}; opt-in: {', '.join(sorted(OPTIONAL_CAPABILITIES))} "
                f"({CONTRACT}, 'Capabilities')")
    if getattr(cls.build_scheduler, "__func__", None) is getattr(Scheduler.build_scheduler, "__func__", None):
        problems.append(f"{cls.__name__} does not define the classmethod build_scheduler(cls, config), "
                        f"which build_scheduler({type_name!r}, config) calls ({GUIDE}, 'The class')")
    return problems


def instance_problems(sched: Any, type_name: str) -> list[str]:
    """Problems of a built backend instance (what ``build_scheduler`` returned)."""
    if not isinstance(sched, Scheduler):
        return [f"build_scheduler of {type_name!r} returned {type(sched).__name__}, not a Scheduler "
                f"instance ({GUIDE}, 'The class')"]
    name = type(sched).__name__
    if "_tls" not in vars(sched):
        return [f"{name}.__init__ did not call super().__init__(): the base class sets jobs_finished_event, "
                f"logger and the per-thread submission errors that the contract requires ({GUIDE}, "
                f"'The class'; {CONTRACT}, 'API')"]
    event = getattr(sched, "jobs_finished_event", None)
    if not isinstance(event, threading.Event):
        return [f"{name}.jobs_finished_event must be the threading.Event the base class makes (set it when a "
                f"job submitted with signal_end=True ends), got {event!r} ({CONTRACT}, 'API')"]
    return []
