"""Former home of DRMAA's attach: :mod:`soma_schedulers.schedulers.drmaa.attach`."""

from __future__ import annotations

from .drmaa.attach import (
    ASK_EVERY,
    UNRECORDED_GRACE,
    AttachedJobs,
    SgeAttached,
    SlurmAttached,
    parse_qacct,
    sge_end,
    slurm_end,
)

__all__ = ["ASK_EVERY", "UNRECORDED_GRACE", "AttachedJobs", "SgeAttached", "SlurmAttached", "parse_qacct",
           "sge_end", "slurm_end"]
