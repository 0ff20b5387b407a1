"""Which backends a conformance run checks: ``--scheduler`` types, ``--drms`` targets, or both.

Shared by the pytest plugin (a usage error) and ``soma-schedulers conformance`` (one line,
exit 2), so a wrong name is refused once, before anything starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import DRMError
from ..scheduler import get_scheduler_implementation
from . import backend_checks

__all__ = ["SelectionError", "Wanted", "select_targets"]


class SelectionError(ValueError):
    """A type or DRMS target that cannot be run; the message is one line naming it."""


@dataclass(frozen=True)
class Wanted:
    """One backend the run checks: a type on this machine, a DRMS's own backend, or a type on a DRMS."""

    id: str  # the pytest id: "local_basic", "slurm", "mytype@slurm"
    scheduler_type: str
    drms: str | None = None
    own_backend: bool = True  # False: a --scheduler type run against --drms through the shims


def select_targets(types: Sequence[str], drms: Sequence[str]) -> list[Wanted]:
    """The targets of ``--scheduler types`` and ``--drms drms`` (no Docker call is made).

    Types alone run on this machine (default ``local_basic``); DRMS targets alone run their
    own backend; both together run each type against each DRMS through client-command shims.
    """
    from .incontainer import ALIASES, IN_CONTAINER_ONLY

    type_names = list(dict.fromkeys(types))
    drms_names = list(dict.fromkeys(ALIASES.get(d, d) for d in drms))
    wanted: list[Wanted] = []
    if drms_names:
        from .cluster_specs import CLUSTERS

        for d in drms_names:
            if d not in CLUSTERS:
                raise SelectionError(f"--drms {d}: unknown DRMS target; known: {', '.join(sorted(CLUSTERS))}")
            spec = CLUSTERS[d]
            if not type_names:
                if spec.scheduler_type in IN_CONTAINER_ONLY:
                    raise SelectionError(
                        f"--drms {d}: its backend ({spec.scheduler_type}) runs inside the cluster: "
                        f"python -m soma_schedulers.testing.incontainer {d} (or add --scheduler TYPE to run "
                        "a command-line backend against it from here)")
                wanted.append(Wanted(d, spec.scheduler_type, d))
            elif not spec.client_commands:
                raise SelectionError(f"--drms {d} has no client commands to run a --scheduler type against; "
                                     f"its suite runs inside it: python -m soma_schedulers.testing.incontainer {d}")
            else:
                wanted += [Wanted(f"{t}@{d}", t, d, own_backend=False) for t in type_names]
    else:
        wanted = [Wanted(t, t) for t in type_names or ["local_basic"]]
    for w in wanted:
        try:
            cls = get_scheduler_implementation(w.scheduler_type)
        except DRMError as exc:
            raise SelectionError(f"--scheduler {w.scheduler_type}: {exc}") from None
        problems = backend_checks.class_problems(cls, w.scheduler_type)
        if problems:
            raise SelectionError(f"--scheduler {w.scheduler_type}: " + "; ".join(problems))
    return wanted
