"""Soma-Workflow's ``Configuration`` -> :class:`~soma_schedulers.config.SchedulerConfig`.

Soma-Workflow's engine builds its scheduler with ``build_scheduler(config)``,
``config`` being its ``Configuration`` of one computing resource. Our backend
gets everything that resource says:

1. what Soma-Workflow's own accessors give (values given in code, or read by
   Soma-Workflow): ``get_native_specification()``, ``get_parallel_job_config()``,
   and, as for its own local scheduler, the ``LocalSchedulerCfg``
   (``CPU_NB``, ``MAX_CPU_NB``, ``SCHEDULER_INTERVAL`` of
   ``~/.soma-workflow-scheduler.cfg``) when the resource has one or the type
   is a local one;
2. then the resource's own section of the Soma-Workflow configuration file,
   read raw (``get_config_parser()``): our keys (``OUT_OF_CONTAINER``,
   ``BRIDGE_*``, ``COMMAND_TIMEOUT``, ``OPTION_*``, ...; see
   ``docs/contract.md``, "Configuration") and Soma-Workflow's scheduler keys
   (``NATIVE_SPECIFICATION``, the parallel-job keys, ``CPU_NB``, ...). Keys
   Soma-Workflow itself knows for its engine, client or server are left to it;
   any other key is a :class:`~soma_schedulers.errors.ConfigurationError` naming
   it and the resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import PARALLEL_CONFIG_KEYS, SchedulerConfig, config_from_mapping
from ..errors import ConfigurationError

__all__ = ["LOCAL_TYPES", "build_from_soma_workflow", "scheduler_config_from", "soma_workflow_keys"]

#: Our types that read Soma-Workflow's LocalSchedulerCfg when the resource has none, as its own does.
LOCAL_TYPES = frozenset({"local_basic", "local"})
#: Keys of a resource section that reach our configuration although Soma-Workflow knows them.
_PASSED = frozenset({"scheduler_type", "native_specification", "cpu_nb", "max_cpu_nb", "scheduler_interval",
                     *(k.lower() for k in PARALLEL_CONFIG_KEYS)})


def soma_workflow_keys() -> frozenset[str]:
    """Every resource key Soma-Workflow's configuration module names (lower case): its
    ``CFG_*``/``OCFG_*`` constants, read from the installed Soma-Workflow."""
    from soma_workflow import configuration as swc

    return frozenset(value.lower() for name, value in vars(swc).items()
                     if name.startswith(("CFG_", "OCFG_")) and isinstance(value, str))


def _resource_section(config: Any) -> tuple[str, dict[str, str]] | None:
    get_parser = getattr(config, "get_config_parser", None)
    parser = get_parser() if callable(get_parser) else None
    resource_id = getattr(config, "_resource_id", None)
    if parser is None or resource_id is None or not parser.has_section(resource_id):
        return None
    return str(resource_id), {k: v for k, v in parser.items(resource_id, raw=True)}


def _local_scheduler_cfg(config: Any, scheduler_type: str) -> Any:
    get_cfg = getattr(config, "get_scheduler_config", None)
    cfg = get_cfg() if callable(get_cfg) else None
    if cfg is None and scheduler_type in LOCAL_TYPES:
        from soma_workflow.configuration import LocalSchedulerCfg

        path = LocalSchedulerCfg.search_config_path()
        if path:
            cfg = LocalSchedulerCfg.load_from_file(path)
    return cfg


def scheduler_config_from(config: Any, scheduler_type: str) -> Any:
    """A :class:`SchedulerConfig` for our type ``scheduler_type`` from Soma-Workflow's
    ``Configuration`` (see the module's doc). ``None``, a :class:`SchedulerConfig`, a mapping or
    a path are returned as they are (``build_scheduler`` takes them)."""
    if config is None or isinstance(config, (SchedulerConfig, Mapping, str, Path)):
        return config
    values: dict[str, str] = {}
    get_spec = getattr(config, "get_native_specification", None)
    spec = get_spec() if callable(get_spec) else None
    if spec:
        values["NATIVE_SPECIFICATION"] = str(spec)
    get_parallel = getattr(config, "get_parallel_job_config", None)
    parallel = get_parallel() if callable(get_parallel) else None
    for key, value in (parallel or {}).items():
        if value is not None:
            values[key] = str(value)
    local = _local_scheduler_cfg(config, scheduler_type)
    if local is not None:
        for key, getter in (("CPU_NB", "get_proc_nb"), ("MAX_CPU_NB", "get_max_proc_nb"),
                            ("SCHEDULER_INTERVAL", "get_interval")):
            value = getattr(local, getter)()
            if value is not None:
                values[key] = str(value)
    source = "Soma-Workflow configuration"
    section = _resource_section(config)
    if section is not None:
        resource_id, items = section
        source = f"Soma-Workflow resource [{resource_id}]"
        path = getattr(config, "_config_path", None)
        if isinstance(path, str):
            source += f" of {path}"
        known = soma_workflow_keys() - _PASSED
        lower = {k.lower(): k for k in values}
        for key, value in items.items():
            if key.lower() in known:
                continue
            values.pop(lower.get(key.lower(), key), None)
            values[key] = value
    values = {k: v for k, v in values.items() if k.lower() != "scheduler_type"}
    values["SCHEDULER_TYPE"] = scheduler_type
    try:
        return config_from_mapping(values, source=source)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (for Soma-Workflow scheduler type soma_schedulers.{scheduler_type})") from None


def build_from_soma_workflow(scheduler_type: str, config: Any) -> Any:
    """Build our ``scheduler_type`` from Soma-Workflow's ``Configuration`` (what Soma-Workflow's
    ``build_scheduler`` does for ``soma_schedulers.<scheduler_type>``); it attaches to the jobs of an
    earlier engine process when asked about them (:mod:`soma_schedulers.soma_workflow.restart`)."""
    from ..scheduler import build_scheduler
    from .restart import attach_on_demand

    return attach_on_demand(build_scheduler(scheduler_type, scheduler_config_from(config, scheduler_type)))
