"""soma_schedulers: one Scheduler API (Soma-Workflow's) over local, DRMAA, PBS, Torque, Slurm and MPI.

Typical use::

    from soma_schedulers import Job
    from soma_schedulers.scheduler import build_scheduler

    with build_scheduler("local_basic", None) as sched:
        [jid] = sched.job_submission([Job(command=["echo", "hi"])])
"""

from __future__ import annotations

from . import constants
from .config import BridgeConfig, SchedulerConfig, load_config
from .errors import (
    ArraysRefused,
    BridgeError,
    CommandError,
    CommandNotFoundError,
    CommandTimeoutError,
    ConfigurationError,
    DRMError,
    JobSpecError,
    NotSupportedError,
    SchedulerClosedError,
    SchedulerUnavailableError,
    SubmissionError,
    UnknownJobError,
    UnknownSchedulerTypeError,
)
from .job import Job, as_job
from .scheduler import ExitInfo, Scheduler, build_scheduler, get_scheduler_implementation

__version__ = "0.1.0"

__all__ = [
    "ArraysRefused",
    "BridgeConfig",
    "BridgeError",
    "CommandError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigurationError",
    "DRMError",
    "ExitInfo",
    "Job",
    "JobSpecError",
    "NotSupportedError",
    "Scheduler",
    "SchedulerClosedError",
    "SchedulerConfig",
    "SchedulerUnavailableError",
    "SubmissionError",
    "UnknownJobError",
    "UnknownSchedulerTypeError",
    "__version__",
    "as_job",
    "build_scheduler",
    "constants",
    "get_scheduler_implementation",
    "load_config",
]
