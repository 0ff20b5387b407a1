"""The registered import path of the ``drmaa`` type (``soma_schedulers.schedulers.drmaa_scheduler:
DrmaaScheduler``): the backend is the package :mod:`soma_schedulers.schedulers.drmaa`."""

from __future__ import annotations

from .drmaa import (
    DrmaaScheduler,
    apply_qacct,
    drmaa_unavailable_reason,
    implementation_family,
    job_name,
    parse_qacct,
    signal_number,
    usage_from_rusage,
)

__all__ = ["DrmaaScheduler", "apply_qacct", "drmaa_unavailable_reason", "implementation_family", "job_name",
           "parse_qacct", "signal_number", "usage_from_rusage"]
