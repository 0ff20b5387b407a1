"""The registered import path of the ``pbspro`` and ``torque`` types
(``soma_schedulers.schedulers.pbspro_scheduler:PBSProScheduler`` and ``:TorqueScheduler``).

The implementation lives in the :mod:`soma_schedulers.schedulers.pbs` package; this module
re-exports its public names so that existing imports keep working.
"""

from __future__ import annotations

from ..polled import Observation
from .pbs import (
    DIALECTS,
    LAUNCH_PRIORITIES,
    OPENPBS,
    TOKEN_VAR,
    TORQUE,
    PBSDialect,
    PBSProScheduler,
    TorqueScheduler,
    carries_token,
    complete_records,
    dialect_named,
    exit_status_of,
    hold_status,
    job_name,
    job_observation,
    launch_report,
    parse_qstat_json,
    parse_qstat_text,
    parse_version,
    usage_of,
)

__all__ = [
    "DIALECTS",
    "LAUNCH_PRIORITIES",
    "OPENPBS",
    "TOKEN_VAR",
    "TORQUE",
    "Observation",
    "PBSDialect",
    "PBSProScheduler",
    "TorqueScheduler",
    "carries_token",
    "complete_records",
    "dialect_named",
    "exit_status_of",
    "hold_status",
    "job_name",
    "job_observation",
    "launch_report",
    "parse_qstat_json",
    "parse_qstat_text",
    "parse_version",
    "usage_of",
]
