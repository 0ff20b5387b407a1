"""The DRMS families behind libdrmaa, and which one a ``drmaaImplementation`` string names."""

from __future__ import annotations

from .family import Family
from .sge import SgeFamily
from .slurm import SlurmFamily

__all__ = ["FAMILIES", "PbsFamily", "family_for", "family_name", "implementation_family"]


class PbsFamily(Family):
    """PBS/Torque (pbs-drmaa): its native specification only; a lost submission cannot be found
    again, DRMAA's reports are believed as they are. (Attached jobs are observed as SGE's were.)"""

    key = "pbs"
    drms = "PBS"
    parallel_template = "-l nodes={nodes_number}:ppn={cpu_per_node}"
    queue_template = "-q {queue}"
    attached_type = SgeFamily.attached_type


#: Every family, by key.
FAMILIES: dict[str, type[Family]] = {f.key: f for f in (SgeFamily, SlurmFamily, PbsFamily)}


def family_for(implementation: str) -> type[Family]:
    """The family of DRMAA's ``drmaaImplementation`` string (SGE when it names no other)."""
    text = implementation.lower()
    if "slurm" in text:
        return SlurmFamily
    if "pbs" in text or "torque" in text:
        return PbsFamily
    return SgeFamily


def implementation_family(implementation: str) -> str:
    """``"sge"``, ``"slurm"`` or ``"pbs"`` from DRMAA's ``drmaaImplementation`` string."""
    return family_for(implementation).key


def family_name(family: str) -> str:
    """The DRMS a family key names, for messages."""
    found = FAMILIES.get(family)
    return found.drms if found is not None else family
