"""Scheduler configuration: one typed object, loadable from a Soma-Workflow INI section.

A :class:`SchedulerConfig` carries what every backend may need (native
specification, parallel-job settings, local CPU counts, DRMS command
timeouts, the out-of-container bridge). Backend-specific keys go in
``options``. :func:`load_config` reads a Soma-Workflow resource section;
keys Soma-Workflow uses only in its engine or client are accepted and
ignored, anything else is an error naming the key.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["PARALLEL_CONFIG_KEYS", "BridgeConfig", "SchedulerConfig", "config_from_mapping", "load_config",
           "pick_section", "read_ini"]

#: Soma-Workflow's parallel-job keys (collected into ``parallel_job_config``).
PARALLEL_CONFIG_KEYS = (
    "drmaa_native_specification",
    "drmaa_job_category",
    "PARALLEL_ENV_MPI_BIN",
    "PARALLEL_ENV_NODE_FILE",
    "MPI",
    "OpenMP",
    "native",
)

# Keys of a Soma-Workflow resource section that concern its engine, client or
# file transfers, not the scheduler: accepted and ignored.
_IGNORED_SW_KEYS = frozenset(
    k.lower()
    for k in (
        "SUBMITTING_MACHINES", "CLUSTER_ADDRESS", "QUEUES", "LOGIN", "LIGHT_MODE",
        "ENGINE_LOG_DIR", "ENGINE_LOG_FORMAT", "ENGINE_LOG_LEVEL", "SERVER_LOG_FILE",
        "SERVER_LOG_FORMAT", "SERVER_LOG_LEVEL", "SERVER_NAME", "DATABASE_FILE",
        "TRANSFERED_FILES_DIR", "NAME_SERVER_HOST", "MAX_JOB_IN_QUEUE", "MAX_JOB_RUNNING",
        "PATH_TRANSLATION_FILES", "DRMAA_IMPLEMENTATION", "CONTAINER_COMMAND",
        "ALLOWED_PYTHON_VERSIONS", "SHARED_TEMPORARY_DIR", "RESOURCE_ID", "INSTALLED",
        "MPI_JOB_TIMEOUT", "MPI_LOG_DIR", "MPI_LOG_FORMAT", "SCHEDULER_CONFIG",
    )
)


@dataclass(frozen=True)
class BridgeConfig:
    """How DRMS client commands reach the host when we run inside a container.

    ``mode``: ``"auto"`` (detect, see :mod:`soma_schedulers.runner`),
    ``"none"`` (run commands here), ``"prefix"`` (prepend ``prefix``; each
    argument stays one argv item, e.g. ``docker exec -i NAME``) or ``"ssh"``
    (``ssh`` to ``host``; arguments are quoted for the remote shell).
    ``user``/``port``/``identity_file``/``ssh_options`` refine the ssh
    command (``ssh_options`` come first, so they override ours: ssh keeps
    the first value it sees); ``reuse`` keeps one connection open
    (ControlMaster) for all commands. ``shared_dir``: a directory the
    container and the host see at the same path; bridged commands run there.
    ``shells`` (prefix mode): run the commands on long-lived ``/bin/sh`` processes started
    through the prefix (:mod:`soma_schedulers.shells`) instead of one prefix call per command:
    a ``docker exec`` costs about 80 ms, a command on a kept shell a few; the prefix must keep
    standard input open (``docker exec -i``, ``kubectl exec -i``).
    ``login``: run the commands in a login shell on the host (``/bin/sh -l``),
    so ``/etc/profile`` and ``~/.profile`` set the PATH there, as they do for a
    user who logs in (OpenPBS puts its commands in ``/opt/pbs/bin`` that way;
    sshd's own PATH has only the system directories).
    """

    mode: str = "auto"
    prefix: tuple[str, ...] = ()
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_options: tuple[str, ...] = ()
    shared_dir: str | None = None
    reuse: bool = True
    login: bool = True
    shells: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "none", "prefix", "ssh"):
            raise ConfigurationError(
                f"bridge mode {self.mode!r} is not one of auto, none, prefix, ssh"
            )
        if self.mode == "prefix" and not self.prefix:
            raise ConfigurationError("bridge mode 'prefix' needs a non-empty prefix")
        if self.port is not None and not (0 < self.port < 65536):
            raise ConfigurationError(f"bridge port {self.port} is out of range")
        if self.shared_dir is not None and not self.shared_dir.startswith("/"):
            raise ConfigurationError(f"bridge shared directory {self.shared_dir!r} is not an absolute path")
        object.__setattr__(self, "prefix", tuple(self.prefix))
        object.__setattr__(self, "ssh_options", tuple(self.ssh_options))


@dataclass(frozen=True)
class SchedulerConfig:
    """Everything a scheduler is built from (see :func:`soma_schedulers.scheduler.build_scheduler`)."""

    scheduler_type: str | None = None
    native_specification: str | tuple[str, ...] | None = None
    parallel_job_config: Mapping[str, str] = field(default_factory=dict)
    cpu_nb: int = 0
    max_cpu_nb: int = 0
    interval: float = 0.05
    command_timeout: float = 60.0
    command_retries: int = 2
    status_cache_seconds: float = 0.5
    undetermined_timeout: float = 300.0
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: ``"auto"``: jobs of one ``job_submission`` call that share their DRMS-level settings go
    #: in job arrays (at least ``array_min_size`` of them); ``"never"``: one submission each.
    arrays: str = "auto"
    array_min_size: int = 2

    def __post_init__(self) -> None:
        if self.arrays not in ("auto", "never"):
            raise ConfigurationError(f"arrays must be auto or never, got {self.arrays!r}")
        if self.array_min_size < 1:
            raise ConfigurationError(f"array_min_size must be >= 1, got {self.array_min_size}")
        for name in ("cpu_nb", "max_cpu_nb", "command_retries"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("interval", "command_timeout", "status_cache_seconds", "undetermined_timeout"):
            if not getattr(self, name) > 0 and not (name == "status_cache_seconds" and getattr(self, name) == 0):
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        object.__setattr__(self, "parallel_job_config", dict(self.parallel_job_config))
        object.__setattr__(self, "options", dict(self.options))

    # Soma-Workflow's Configuration accessors, so a backend's build_scheduler
    # can be given either this object or a soma_workflow Configuration.
    def get_scheduler_type(self) -> str | None:
        return self.scheduler_type

    def get_native_specification(self) -> str | tuple[str, ...] | None:
        return self.native_specification

    def get_parallel_job_config(self) -> dict[str, str]:
        return dict(self.parallel_job_config)


def _kind(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _text(key: str, value: object) -> str:
    """A text value, stripped; a non-``str`` is refused (no guess at what it means)."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string, got {_kind(value)}")
    return value.strip()


def _int(key: str, value: object) -> int:
    """An integer: an ``int``, a float without a fraction, or its text."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigurationError(f"{key} must be an integer, got {_kind(value) if not isinstance(value, str) else repr(value)}")


def _bool(key: str, value: object) -> bool:
    """yes/no: a ``bool``, 0 or 1, or their words (yes, no, true, false, on, off, 1, 0)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "yes", "true", "on"):
            return True
        if lowered in ("0", "no", "false", "off"):
            return False
        raise ConfigurationError(f"{key} must be yes or no, got {value!r}")
    raise ConfigurationError(f"{key} must be yes or no, got {_kind(value)}")


def _float(key: str, value: object) -> float:
    """A number: an ``int``, a ``float``, or its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
        raise ConfigurationError(f"{key} must be a number, got {value!r}")
    raise ConfigurationError(f"{key} must be a number, got {_kind(value)}")


def _words(key: str, value: object) -> tuple[str, ...]:
    """A command line: text split as a POSIX shell would, or a list of str (one argv item each)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError as exc:
            raise ConfigurationError(f"{key} is not a valid command line: {exc} in {value!r}") from None
    raise ConfigurationError(f"{key} must be a string or a list of str, got {_kind(value)}")


def _option(key: str, value: object) -> str:
    """A backend option (``OPTION_<name>``): text, or a number or yes/no given as such."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    return _text(key, value)


#: INI key -> (SchedulerConfig field, converter).
_NUMERIC_KEYS: dict[str, tuple[str, Any]] = {
    "cpu_nb": ("cpu_nb", _int),
    "max_cpu_nb": ("max_cpu_nb", _int),
    "scheduler_interval": ("interval", _float),
    "command_timeout": ("command_timeout", _float),
    "command_retries": ("command_retries", _int),
    "status_cache_seconds": ("status_cache_seconds", _float),
    "undetermined_timeout": ("undetermined_timeout", _float),
    "array_min_size": ("array_min_size", _int),
}
#: INI key -> (BridgeConfig field, converter), for the keys that need no more than a conversion.
_BRIDGE_KEYS: dict[str, tuple[str, Any]] = {
    "bridge_ssh_user": ("user", _text),
    "bridge_ssh_port": ("port", _int),
    "bridge_ssh_identity": ("identity_file", _text),
    "bridge_ssh_options": ("ssh_options", _words),
    "bridge_shared_dir": ("shared_dir", _text),
    "bridge_ssh_reuse": ("reuse", _bool),
    "bridge_ssh_login": ("login", _bool),
    "bridge_shells": ("shells", _bool),
}


def config_from_mapping(values: Mapping[str, Any], *, source: str = "configuration") -> SchedulerConfig:
    """Build a :class:`SchedulerConfig` from Soma-Workflow-style keys (case-insensitive).

    Values are text, as an INI file gives them, or Python values that mean the same thing: an
    ``int`` for ``CPU_NB``, a number for ``COMMAND_TIMEOUT``, a ``bool`` for ``BRIDGE_SHELLS``,
    a list of str for ``BRIDGE_COMMAND``, ``BRIDGE_SSH_OPTIONS`` or ``NATIVE_SPECIFICATION``;
    ``None`` is a key not given. Anything else is a :class:`ConfigurationError` naming the key.
    """
    kw: dict[str, Any] = {}
    bridge: dict[str, Any] = {}
    parallel: dict[str, str] = {}
    options: dict[str, Any] = {}
    parallel_lower = {k.lower(): k for k in PARALLEL_CONFIG_KEYS}
    for raw_key, value in values.items():
        if not isinstance(raw_key, str):
            raise ConfigurationError(f"configuration key {raw_key!r} in {source} is not a string")
        key = raw_key.lower()
        if value is None:
            continue
        where = f"{raw_key} ({source})"
        if key == "scheduler_type":
            kw["scheduler_type"] = _text(where, value) or None
        elif key == "native_specification":
            if isinstance(value, (list, tuple)):
                kw["native_specification"] = _words(where, value) or None
            else:
                kw["native_specification"] = _text(where, value) or None
        elif key in parallel_lower:
            parallel[parallel_lower[key]] = _text(where, value)
        elif key in _NUMERIC_KEYS:
            field_name, convert = _NUMERIC_KEYS[key]
            kw[field_name] = convert(where, value)
        elif key == "arrays":
            kw["arrays"] = _text(where, value).lower()
        elif key == "out_of_container":
            bridge["mode"] = _text(where, value).lower()
        elif key == "bridge_command":
            bridge["prefix"] = _words(where, value)
            bridge.setdefault("mode", "prefix")
        elif key == "bridge_ssh_host":
            bridge["host"] = _text(where, value)
            bridge.setdefault("mode", "ssh")
        elif key in _BRIDGE_KEYS:
            field_name, convert = _BRIDGE_KEYS[key]
            bridge[field_name] = convert(where, value)
        elif key.startswith("option_"):
            options[raw_key[len("option_"):].lower()] = _option(where, value)
        elif key in _IGNORED_SW_KEYS:
            continue
        else:
            raise ConfigurationError(f"unknown key {raw_key!r} in {source}")
    if parallel:
        kw["parallel_job_config"] = parallel
    if options:
        kw["options"] = options
    if bridge:
        kw["bridge"] = BridgeConfig(**bridge)
    return SchedulerConfig(**kw)


def _parse_error(path: str | Path, exc: configparser.Error) -> str:
    """configparser's error as one line: where, and what."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: {exc.line.strip()!r} comes before any [section] header"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        with contextlib.suppress(ValueError, SyntaxError):  # some versions keep repr(line)
            line = str(ast.literal_eval(line)) if line[:1] in "'\"" else line
        more = f" (and {len(exc.errors) - 1} more lines)" if len(exc.errors) > 1 else ""
        return f"line {lineno}: {line.strip()!r} is not 'KEY = value'{more}"
    text = str(exc)
    # "While reading from 'x.ini' [line  3]: section 'a' already exists" -> from "line 3" on
    text = text.replace(f"While reading from {str(path)!r} ", "")
    return " ".join(re.sub(r"^\[line\s+(\d+)\]", r"line \1", text).split())


def read_ini(path: str | Path) -> configparser.ConfigParser:
    """Parse an INI file (keys keep their case, no interpolation); errors are one line."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"configuration file {path} is not UTF-8 text: {exc.reason}") from None
    except configparser.Error as exc:
        raise ConfigurationError(f"malformed configuration file {path}: {_parse_error(path, exc)}") from None
    return parser


def pick_section(sections: Mapping[str, Any], section: str | None, where: str) -> str:
    """The name of the section to use: ``section``, or the only one there is."""
    names = list(sections)
    if section is None:
        if len(names) != 1:
            raise ConfigurationError(
                f"{where} has {len(names)} sections ({', '.join(names) or 'none'}); name one "
                "(--section on the command line, section= in build_scheduler)")
        return names[0]
    if section not in names:
        raise ConfigurationError(f"{where} has no section [{section}] (sections: {', '.join(names) or 'none'})")
    return section


def load_config(path: str | Path, section: str | None = None) -> SchedulerConfig:
    """Load one section of a Soma-Workflow-style INI file (one section per resource).

    Without ``section``, the file must have exactly one section.
    """
    parser = read_ini(path)
    name = pick_section({n: parser[n] for n in parser.sections()}, section, str(path))
    return config_from_mapping(dict(parser[name]), source=f"{path} [{name}]")
