"""The job description: what to run, with which files, environment and resources.

:class:`Job` uses Soma-Workflow's field names. Backends never read a
:class:`Job` directly: they call :func:`as_job`, which also accepts any
object with Soma-Workflow's ``EngineJob`` methods (``plain_command()``,
``plain_stdout()``, ...), so an existing engine can hand its own jobs over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import JobSpecError

__all__ = ["Job", "as_job"]

_PARALLEL_KEYS = frozenset({"config_name", "nodes_number", "cpu_per_node"})
#: Linux's limit on one argv item or env string (MAX_ARG_STRLEN), and a safe total.
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_TOTAL_BYTES = 1024 * 1024


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape")) + 1


@dataclass(frozen=True)
class Job:
    """One job to submit.

    ``command`` is the argv, passed to the job unchanged (no shell is
    involved anywhere: every item reaches the program byte for byte).
    ``stdin``, ``stdout_file`` and ``stderr_file`` are paths as the job
    sees them. ``join_stderrout`` sends stderr to ``stdout_file``.
    ``native_specification`` is DRMS-specific submission options, as one
    string or a list of strings. ``parallel_job_info`` is a dict with
    ``config_name``, ``nodes_number`` and ``cpu_per_node``.
    ``hold`` submits the job held: it waits in an ``*_on_hold`` state until
    it is killed (useful to test queued jobs, and for benchmarks).
    ``is_engine_execution`` marks a job the engine computes itself
    (Soma-Workflow's barrier, map/reduce, leave-one-out and cross-validation
    jobs): its command may be empty, and every backend accepts it, gives it an
    id and reports it ``done`` / ``finished_regularly`` / 0 without running
    anything (see :mod:`soma_schedulers.engine_jobs`).
    """

    command: Sequence[str]
    name: str | None = None
    stdin: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    join_stderrout: bool = False
    working_directory: str | None = None
    env: Mapping[str, str] | None = None
    queue: str | None = None
    native_specification: str | Sequence[str] | None = None
    parallel_job_info: Mapping[str, Any] | None = None
    hold: bool = False
    signal_end: bool = True
    is_engine_execution: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.command, (str, bytes)):
            raise JobSpecError("Job.command must be a list of str, not a single string")
        cmd = list(self.command)
        if not cmd and not self.is_engine_execution:
            raise JobSpecError("Job.command is empty")
        for i, item in enumerate(cmd):
            if not isinstance(item, str):
                raise JobSpecError(f"Job.command[{i}] is {type(item).__name__}, expected str")
            if "\0" in item:
                raise JobSpecError(f"Job.command[{i}] contains a NUL byte")
        if cmd and cmd[0] == "":
            raise JobSpecError("Job.command[0] (the executable) is empty")
        for i, item in enumerate(cmd):
            if _size(item) > MAX_ARG_BYTES:
                raise JobSpecError(f"Job.command[{i}] is {_size(item) - 1} bytes: over the system's "
                                   f"{MAX_ARG_BYTES}-byte limit for one argument")
        object.__setattr__(self, "command", tuple(cmd))
        if self.env is not None:
            env = dict(self.env)
            for k, v in env.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise JobSpecError(f"Job.env item {k!r} must map str to str")
                if not k or "=" in k or "\0" in k or "\0" in v:
                    raise JobSpecError(f"Job.env has an invalid name or value: {k!r}")
            for k, v in env.items():
                if _size(f"{k}={v}") > MAX_ARG_BYTES:
                    raise JobSpecError(f"Job.env[{k!r}] is over the system's {MAX_ARG_BYTES}-byte limit")
            object.__setattr__(self, "env", env)
        total = sum(_size(a) for a in cmd) + sum(_size(f"{k}={v}") for k, v in (self.env or {}).items())
        if total > MAX_TOTAL_BYTES:
            raise JobSpecError(f"Job.command and Job.env take {total} bytes: over the {MAX_TOTAL_BYTES}-byte limit")
        for fname in ("stdin", "stdout_file", "stderr_file", "working_directory", "name", "queue"):
            value = getattr(self, fname)
            if value is not None and not isinstance(value, str):
                if isinstance(value, os.PathLike):
                    object.__setattr__(self, fname, os.fspath(value))
                else:
                    raise JobSpecError(f"Job.{fname} must be a str, not {type(value).__name__}")
            value = getattr(self, fname)
            if isinstance(value, str) and "\0" in value:
                raise JobSpecError(f"Job.{fname} contains a NUL byte")
        spec = self.native_specification
        if spec is not None and not isinstance(spec, str):
            items = list(spec)
            if not all(isinstance(s, str) for s in items):
                raise JobSpecError("Job.native_specification must be a str or a list of str")
            object.__setattr__(self, "native_specification", tuple(items))
        if self.parallel_job_info is not None:
            info = dict(self.parallel_job_info)
            unknown = set(info) - _PARALLEL_KEYS
            if unknown:
                raise JobSpecError(f"Job.parallel_job_info has unknown keys: {sorted(unknown)}")
            for key in ("nodes_number", "cpu_per_node"):
                if key in info and (not isinstance(info[key], int) or info[key] < 1):
                    raise JobSpecError(f"Job.parallel_job_info[{key!r}] must be a positive int")
            object.__setattr__(self, "parallel_job_info", info)

    @property
    def native_spec_list(self) -> list[str]:
        """The native specification as a list (a string is one item)."""
        spec = self.native_specification
        if spec is None:
            return []
        if isinstance(spec, str):
            return [spec] if spec.strip() else []
        return list(spec)


def _call_or_none(obj: object, name: str) -> Any:
    member = getattr(obj, name, None)
    return member() if callable(member) else None


def as_job(obj: object) -> Job:
    """Return ``obj`` as a :class:`Job`.

    Accepts a :class:`Job`, a mapping of Job fields, or a Soma-Workflow
    EngineJob-like object (its ``is_engine_execution`` is kept). Raises
    :class:`JobSpecError` naming what is wrong.
    """
    if isinstance(obj, Job):
        return obj
    if isinstance(obj, Mapping):
        try:
            return Job(**obj)
        except TypeError as exc:
            raise JobSpecError(f"invalid job description: {exc}") from None
    if callable(getattr(obj, "plain_command", None)):
        engine = getattr(obj, "is_engine_execution", False) is True
        command = obj.plain_command()  # type: ignore[attr-defined]
        if command is None and engine:
            command = []
        if command is None:
            raise JobSpecError("EngineJob.plain_command() returned None")
        command = [str(c) for c in command]
        stderr = _call_or_none(obj, "plain_stderr")
        join = bool(getattr(obj, "join_stderrout", False))
        spec = getattr(obj, "native_specification", None)
        return Job(
            command=command,
            name=getattr(obj, "name", None),
            stdin=_call_or_none(obj, "plain_stdin"),
            stdout_file=_call_or_none(obj, "plain_stdout"),
            stderr_file=None if join else stderr,
            join_stderrout=join,
            working_directory=_call_or_none(obj, "plain_working_directory"),
            env=dict(getattr(obj, "env", None) or {}) or None,
            queue=getattr(obj, "queue", None),
            native_specification=spec if spec else None,
            parallel_job_info=getattr(obj, "parallel_job_info", None) or None,
            signal_end=bool(getattr(obj, "signal_end", True)),
            is_engine_execution=engine,
        )
    raise JobSpecError(f"cannot use a {type(obj).__name__} as a job description")
