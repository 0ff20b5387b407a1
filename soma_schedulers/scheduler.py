"""The abstract Scheduler API (Soma-Workflow's), and how a type name becomes a class.

A backend subclasses :class:`Scheduler` and implements the four job
methods plus ``build_scheduler``. Types are found among the built-in
backends and in the entry-point group ``soma_schedulers.schedulers``.
"""

from __future__ import annotations

import abc
import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from . import engine_jobs
from .config import SchedulerConfig, config_from_mapping, load_config, pick_section
from .errors import (
    ConfigurationError,
    DRMError,
    NotSupportedError,
    SchedulerUnavailableError,
    UnknownSchedulerTypeError,
)
from .exit_info import ExitInfo
from .job import Job, as_job
from .method_guards import GUARDED_METHODS, wrap_job_methods

__all__ = [
    "CAPABILITIES",
    "DEFAULT_SCHEDULER_TYPE",
    "ENTRY_POINT_GROUP",
    "GUARDED_METHODS",
    "NOT_PROVIDED",
    "OPTIONAL_CAPABILITIES",
    "ExitInfo",
    "Scheduler",
    "build_scheduler",
    "coerce_config",
    "get_scheduler_implementation",
    "get_schedulers_list",
    "known_scheduler_types",
    "resolve_scheduler_type",
    "scheduler_types_report",
]

ENTRY_POINT_GROUP = "soma_schedulers.schedulers"

#: Optional features a backend may lack; the conformance suite skips a case
#: only when the backend leaves the capability out of ``capabilities``.
CAPABILITIES = frozenset(
    {
        "stdin",  # honours Job.stdin
        "join",  # honours Job.join_stderrout
        "stdout_stderr",  # honours Job.stdout_file / stderr_file
        "working_directory",
        "env",
        "job_name",
        "hold",  # Job.hold: jobs wait, held, until killed
        "resource_usage",  # reports cput/walltime/mem
        "exit_signal",  # tells a job that died of a signal from one that exited
        "launch_errors",  # missing executable / bad cwd end as failed/aborted
    }
)
#: Capabilities a backend must opt in to (not in the default ``Scheduler.capabilities``).
OPTIONAL_CAPABILITIES = frozenset(
    {
        "queues",  # Job.queue is checked by the DRMS: an unknown queue is refused at submission
        "native_specification",  # a malformed native specification is refused at submission
    }
)

_BUILTIN_TYPES: dict[str, str] = {
    "local_basic": "soma_schedulers.schedulers.local_scheduler:ConfiguredLocalScheduler",
    "local": "soma_schedulers.schedulers.local_scheduler:ConfiguredLocalScheduler",
    "drmaa": "soma_schedulers.schedulers.drmaa_scheduler:DrmaaScheduler",
    "slurm": "soma_schedulers.schedulers.slurm_scheduler:SlurmScheduler",
    "pbspro": "soma_schedulers.schedulers.pbs:PBSProScheduler",
    "torque": "soma_schedulers.schedulers.pbs:TorqueScheduler",
    "mpi": "soma_schedulers.schedulers.mpi_scheduler:MPIScheduler",
    "htcondor": "soma_schedulers.schedulers.htcondor_scheduler:HTCondorScheduler",
    "condor": "soma_schedulers.schedulers.htcondor_scheduler:HTCondorScheduler",  # alias
}


#: The type used when neither the caller nor the configuration names one.
DEFAULT_SCHEDULER_TYPE = "local_basic"

#: Type names users know from Soma-Workflow that this package does not provide, and why (one line).
NOT_PROVIDED: dict[str, str] = {
    "drmaa2": (
        "scheduler type 'drmaa2' is not provided: no open-source DRMAA 2 C library exists (Open Cluster "
        "Scheduler, OpenPBS and slurm-drmaa ship DRMAA 1 only; the one Python binding loads Altair UGE's "
        "commercial library); use 'drmaa' (DRMAA 1) or the DRMS's own type (slurm, pbspro, torque, htcondor)"
    ),
}

_S = TypeVar("_S", bound="Scheduler")


class Scheduler(abc.ABC):
    """Submit, kill and follow jobs on one computing resource.

    The contract every subclass keeps is in ``docs/contract.md``: ids are
    ``str``; ``job_submission`` returns one id (or ``None``) per job, in
    order; exit info can be read any number of times; unknown ids raise
    :class:`~soma_schedulers.errors.UnknownJobError`. An instance is
    thread safe and a context manager (``clean()`` on exit).

    After ``clean()``, the job methods (:data:`GUARDED_METHODS`) raise
    :class:`~soma_schedulers.errors.SchedulerClosedError` and a second ``clean()`` does nothing:
    the base class wraps those methods in every subclass, so a backend writes none of it.
    ``job_submission`` given one job instead of a list raises
    :class:`~soma_schedulers.errors.JobSpecError` (the same wrapper).
    """

    #: Type name under which the class is registered (informative).
    scheduler_type: ClassVar[str] = ""
    #: Features from :data:`CAPABILITIES` this backend honours.
    capabilities: ClassVar[frozenset[str]] = CAPABILITIES
    #: True when the DRMS keeps the jobs beyond the submitting process, so another process (a
    #: later command line, a restarted engine) can :meth:`attach` to them by id.
    attachable: ClassVar[bool] = False

    parallel_job_submission_info: dict[str, str] | None = None
    logger: logging.Logger | None = None
    is_sleeping: bool = False

    _soma_closed: bool = False
    _soma_cleaning: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the job methods the subclass defines: engine-execution jobs are answered here and
        never reach the backend (:mod:`soma_schedulers.engine_jobs`), and after ``clean()`` every
        job method raises :class:`~soma_schedulers.errors.SchedulerClosedError` (outermost)."""
        super().__init_subclass__(**kwargs)
        wrap_job_methods(cls)

    def __init__(self) -> None:
        self.parallel_job_submission_info = None
        self.logger = logging.getLogger(f"soma_schedulers.{type(self).__name__}")
        self.is_sleeping = False
        self.jobs_finished_event = threading.Event()
        self._tls = threading.local()
        self._engine_jobs = engine_jobs.EngineJobTable()

    # -- engine-execution jobs (the base class answers for them) ------------------------
    def submit_engine_job(self, signal_end: bool = True) -> str:
        """Accept one engine-execution job: return its id, ``done`` at once, never run.

        ``job_submission`` calls this itself for every job whose ``is_engine_execution`` is
        true; a backend calls it only if it submits by another path.
        """
        job_id = engine_jobs.table_of(self).new_id()
        if signal_end:
            self.jobs_finished_event.set()
        return job_id

    def is_engine_job_id(self, scheduler_job_id: str) -> bool:
        """Whether this instance gave (or attached) ``scheduler_job_id`` to an engine-execution job."""
        return scheduler_job_id in engine_jobs.table_of(self)

    # -- engine compatibility ------------------------------------------------
    def sleep(self) -> None:
        """Release DRMS sessions while the engine idles (see :meth:`wake`)."""
        self.is_sleeping = True

    def wake(self) -> None:
        """Reopen what :meth:`sleep` released."""
        self.is_sleeping = False

    def clean(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Release threads and temporary files. The instance is unusable afterwards: its job methods
        raise :class:`~soma_schedulers.errors.SchedulerClosedError`; calling it again does nothing."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.clean()

    # -- the four job methods --------------------------------------------------
    @abc.abstractmethod
    def job_submission(self, jobs: Sequence[Any], signal_end: bool = True) -> list[str | None]:
        """Submit ``jobs``; return their ids in order, ``None`` for a job that could not be submitted.

        The reason for each ``None`` is logged at ERROR and kept in
        :attr:`last_submission_errors`.
        """

    @abc.abstractmethod
    def get_job_status(self, scheduler_job_id: str) -> str:
        """Return the job's status, one of :data:`soma_schedulers.constants.JOB_STATUS`."""

    @abc.abstractmethod
    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        """Return ``(exit_status, exit_value, term_sig, resource_usage)`` of an ended job."""

    @abc.abstractmethod
    def kill_job(self, scheduler_job_id: str) -> None:
        """Kill a queued or running job; a finished job is left as it is."""

    # -- jobs of other processes ---------------------------------------------------
    def attach(self, scheduler_job_ids: Iterable[str]) -> None:
        """Follow jobs this instance did not submit (by another process, the command line, an engine
        before its restart): afterwards every job method accepts their ids, and their end states come
        from the DRMS's records (accounting, history) even when they ended before.

        Raises :class:`~soma_schedulers.errors.UnknownJobError` naming an id the DRMS does not know
        (nothing is attached then), and :class:`~soma_schedulers.errors.NotSupportedError` for a backend
        whose jobs live only in the process that submitted them (``attachable`` is False).
        """
        raise NotSupportedError(
            f"{type(self).__name__} jobs live only in the process that submitted them: they cannot be "
            "followed from another one")

    @classmethod
    def unavailable_reason(cls, config: Any = None) -> str | None:
        """Why this type cannot run on this machine with ``config`` (its client command is not on
        PATH and no bridge is configured, a library is missing...), or ``None`` when it can.

        Cheap and side-effect free: ``soma-schedulers types`` asks it of every type.
        """
        return None

    # -- batched queries -------------------------------------------------------
    def get_jobs_status(self, scheduler_job_ids: Iterable[str]) -> dict[str, str]:
        """Status of several jobs at once (command-line backends: one DRMS call)."""
        return {i: self.get_job_status(i) for i in scheduler_job_ids}

    def get_jobs_exit_info(self, scheduler_job_ids: Iterable[str]) -> dict[str, ExitInfo]:
        """Exit info of several ended jobs at once."""
        return {i: self.get_job_exit_info(i) for i in scheduler_job_ids}

    # -- submission errors -----------------------------------------------------
    @property
    def last_submission_errors(self) -> list[str | None]:
        """Per job of this thread's last ``job_submission`` call: ``None`` or why it failed."""
        return list(getattr(self._tls, "errors", []))

    def submit_each(self, jobs: Sequence[Any], submit_one: Callable[[Job], str]) -> list[str | None]:
        """Helper for ``job_submission``: convert each job, call ``submit_one``, keep errors.

        A job that is not a valid description or whose ``submit_one`` raises a
        :class:`~soma_schedulers.errors.DRMError` gives ``None`` and its message.
        An engine-execution job never reaches ``submit_one`` (:meth:`submit_engine_job`).
        """
        ids: list[str | None] = []
        errors: list[str | None] = []
        for obj in jobs:
            try:
                job = as_job(obj)
                ids.append(self.submit_engine_job(job.signal_end) if job.is_engine_execution else submit_one(job))
                errors.append(None)
            except DRMError as exc:
                ids.append(None)
                errors.append(str(exc))
        self.set_submission_errors(errors)
        return ids

    def set_submission_errors(self, errors: list[str | None]) -> None:
        """Keep, for this thread's :attr:`last_submission_errors`, why each job of the last
        ``job_submission`` was not submitted (None: it was); log each reason at ERROR."""
        self._tls.errors = errors
        for i, err in enumerate(errors):
            if err is not None and self.logger is not None:
                self.logger.error("job %d of the submission was not submitted: %s", i, err)

    # -- construction ------------------------------------------------------------
    @classmethod
    def build_scheduler(cls, config: Any) -> Scheduler:
        """Create an instance from a configuration (see :func:`build_scheduler`)."""
        raise NotImplementedError(f"{cls.__name__} does not implement build_scheduler")


# The base class's own defaults (batched queries, attach, clean) are wrapped too.
wrap_job_methods(Scheduler)


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _check_class(cls: object, what: str) -> type[Scheduler]:
    if not (isinstance(cls, type) and issubclass(cls, Scheduler)):
        raise SchedulerUnavailableError(f"{what} is not a Scheduler subclass (it is {cls!r})")
    return cls


def _load(target: str, scheduler_type: str) -> type[Scheduler]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise SchedulerUnavailableError(
            f"scheduler type {scheduler_type!r} cannot be loaded: {_one_line(exc)}"
        ) from exc
    return _check_class(cls, target)


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_scheduler_types() -> list[str]:
    """Every type name: built-in ones and those registered through entry points."""
    return sorted(set(_BUILTIN_TYPES) | set(_entry_points()))


def get_scheduler_implementation(scheduler_type: str) -> type[Scheduler]:
    """Return the Scheduler class for a type name (``local_basic``, ``slurm``, ...).

    Raises :class:`~soma_schedulers.errors.UnknownSchedulerTypeError` for an unknown name,
    :class:`~soma_schedulers.errors.SchedulerUnavailableError` for a type that cannot be loaded
    (a third-party entry point whose module or class is missing or broken: one line with its error)
    and for a name of :data:`NOT_PROVIDED` (``drmaa2``, saying why).
    """
    if scheduler_type in _BUILTIN_TYPES:
        return _load(_BUILTIN_TYPES[scheduler_type], scheduler_type)
    eps = _entry_points()
    if scheduler_type in eps:
        ep = eps[scheduler_type]
        try:
            cls = ep.load()
        except Exception as exc:  # third-party code: any error is "cannot be loaded", in one line
            raise SchedulerUnavailableError(
                f"scheduler type {scheduler_type!r} (entry point {ep.value}) cannot be loaded: {_one_line(exc)}"
            ) from exc
        return _check_class(cls, f"entry point {scheduler_type!r} ({ep.value})")
    if scheduler_type in NOT_PROVIDED:
        raise SchedulerUnavailableError(NOT_PROVIDED[scheduler_type])
    raise UnknownSchedulerTypeError(scheduler_type, known_scheduler_types())


def scheduler_types_report(config: Any = None) -> list[tuple[str, type[Scheduler] | None, str | None]]:
    """``(type, class or None, why it cannot run here or None)`` for every known type, and for the
    names of :data:`NOT_PROVIDED`. Never raises: a broken third-party type is listed with its error."""
    report: list[tuple[str, type[Scheduler] | None, str | None]] = []
    for name in sorted(set(known_scheduler_types()) | set(NOT_PROVIDED)):
        try:
            cls = get_scheduler_implementation(name)
        except DRMError as exc:
            report.append((name, None, str(exc)))
            continue
        try:
            reason = cls.unavailable_reason(config)
        except Exception as exc:  # a third-party check that fails says so, the listing goes on
            reason = f"{cls.__name__}.unavailable_reason() failed: {_one_line(exc)}"
        report.append((name, cls, reason))
    return report


def get_schedulers_list() -> list[tuple[str, bool]]:
    """``(type, usable)`` for every known type, as Soma-Workflow's function: usable means it can be
    loaded and :meth:`Scheduler.unavailable_reason` finds nothing missing on this machine."""
    return [(name, reason is None) for name, _cls, reason in scheduler_types_report()]


def coerce_config(config: Any, section: str | None = None) -> Any:
    """Turn ``None``, a mapping or an INI path into a :class:`SchedulerConfig`; keep other objects.

    ``section`` picks one section of a multi-section INI file (Soma-Workflow's files have one
    per resource), or one entry of a mapping of sections (a ``configparser.ConfigParser``, a
    dict of dicts). Without it, a file must have one section.
    """
    if isinstance(config, (str, Path)):
        return load_config(config, section)
    if section is not None:
        if isinstance(config, Mapping) and config and all(isinstance(v, Mapping) for v in config.values()):
            sections = {k: v for k, v in config.items() if k != "DEFAULT" or len(config) == 1}
            name = pick_section(sections, section, "the configuration")
            return config_from_mapping(dict(config[name]), source=f"section [{name}]")
        raise ConfigurationError(
            f"section {section!r} was asked for, but the configuration is a {type(config).__name__}, "
            "not an INI file or a mapping of sections")
    if config is None:
        return SchedulerConfig()
    if isinstance(config, Mapping):
        return config_from_mapping(config)
    return config


def _configured_type(cfg: Any) -> str | None:
    if isinstance(cfg, SchedulerConfig):
        return cfg.scheduler_type
    getter = getattr(cfg, "get_scheduler_type", None)
    value = getter() if callable(getter) else None
    return value if isinstance(value, str) and value else None


def _same_type(a: str, b: str) -> bool:
    return a == b or (a in _BUILTIN_TYPES and _BUILTIN_TYPES.get(a) == _BUILTIN_TYPES.get(b))


def resolve_scheduler_type(scheduler_type: str | None, config: Any, source: str | Path | None = None) -> str:
    """The type to build: ``scheduler_type``, else the configuration's ``SCHEDULER_TYPE``, else
    :data:`DEFAULT_SCHEDULER_TYPE`. Both given and different (``local`` and ``local_basic`` are one
    type) is a :class:`~soma_schedulers.errors.ConfigurationError` naming both (and ``source``, where
    the configuration comes from)."""
    configured = _configured_type(config)
    if scheduler_type is None:
        return configured or DEFAULT_SCHEDULER_TYPE
    if configured is not None and not _same_type(scheduler_type, configured):
        raise ConfigurationError(
            f"scheduler type {scheduler_type!r} was asked for but {source or 'the configuration'} says "
            f"SCHEDULER_TYPE = {configured}: ask for {configured!r}, or for none (the configuration decides)")
    return scheduler_type


def build_scheduler(scheduler_type: str | None, config: Any = None, section: str | None = None) -> Scheduler:
    """Build a scheduler of ``scheduler_type`` from ``config``.

    ``config`` is a :class:`SchedulerConfig`, ``None`` (defaults), a mapping of Soma-Workflow keys
    (text values, or Python values meaning the same: ``{"CPU_NB": 2}``), the path of an INI file
    (``section`` names the section when it has several), or a Soma-Workflow ``Configuration``
    object. The configuration decides where the work goes: with ``scheduler_type=None`` its
    ``SCHEDULER_TYPE`` is used (default ``local_basic``); a ``scheduler_type`` that contradicts it is a
    :class:`~soma_schedulers.errors.ConfigurationError` naming both.
    """
    cfg = coerce_config(config, section)
    source = f"{config}{f' [{section}]' if section else ''}" if isinstance(config, (str, Path)) else None
    scheduler_type = resolve_scheduler_type(scheduler_type, cfg, source)
    cls = get_scheduler_implementation(scheduler_type)
    if isinstance(cfg, SchedulerConfig) and cfg.scheduler_type is None:
        cfg = replace(cfg, scheduler_type=scheduler_type)
    return cls.build_scheduler(cfg)
