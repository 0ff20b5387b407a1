"""DRMAA 1.0 through the ``drmaa`` Python package (type ``drmaa``): SGE, slurm-drmaa, pbs-drmaa...

* :mod:`.scheduler`: :class:`DrmaaScheduler` (submission, DRMAA's poll, kills);
* :mod:`.session`: the process's shared DRMAA session, which chooses the DRMS family when it opens;
* :mod:`.family`, :mod:`.sge`, :mod:`.slurm`, :mod:`.families`: one class per DRMS family (native
  specification templates, lost submissions found and deleted by name, ends completed from the
  DRMS's accounting: ``qacct`` for SGE, ``sacct`` for Slurm);
* :mod:`.attach`: the jobs of other processes; :mod:`.scripts`: the private job scripts;
  :mod:`.common`: what they share.
"""

from __future__ import annotations

from .attach import parse_qacct
from .common import drmaa_unavailable_reason, job_name, signal_number, usage_from_rusage
from .families import family_for, family_name, implementation_family
from .scheduler import DrmaaScheduler
from .sge import apply_qacct

__all__ = [
    "DrmaaScheduler", "apply_qacct", "drmaa_unavailable_reason", "family_for", "family_name",
    "implementation_family", "job_name", "parse_qacct", "signal_number", "usage_from_rusage",
]
