"""Soma-Workflow plug-in: every soma_schedulers type, as Soma-Workflow scheduler type ``soma_schedulers.<type>``.

Soma-Workflow 6.x accepts a scheduler type only when a file
``soma_workflow/schedulers/<type>_scheduler.py`` exists in its own package
(no entry points), and every caller (light mode in ``client.py``, the
configuration check in ``configuration.py``, the server engine in
``start_workflow_engine.py``) looks the functions up on the module
``soma_workflow.scheduler`` at call time. :func:`patch_module` replaces
those module attributes: ``get_scheduler_implementation`` and
``build_scheduler`` answer for ``soma_schedulers.<type>`` and hand any other
type to Soma-Workflow's own functions; ``get_schedulers_list`` lists ours after
Soma-Workflow's. No file is written into Soma-Workflow's package.

It happens by itself: ``soma_schedulers_somawf.pth``, installed with this
package, installs an import hook (``_soma_schedulers_somawf_hook``) that
patches ``soma_workflow.scheduler`` when, and only when, Soma-Workflow imports
it, in every Python process (the engine of a local or remote server too).
:func:`install` does the same explicitly (an environment whose site-packages
``.pth`` files are not read, ``python -S``, ``SOMA_SCHEDULERS_NO_SOMA_WORKFLOW_HOOK=1``).

Importing :mod:`soma_schedulers` never imports Soma-Workflow; this module does
so only in :func:`install`.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType
from typing import Any

from ..errors import DRMError, UnknownSchedulerTypeError
from .configuration import build_from_soma_workflow, scheduler_config_from

__all__ = [
    "PREFIX",
    "build_from_soma_workflow",
    "install",
    "installed",
    "patch_module",
    "scheduler_config_from",
    "scheduler_types",
    "uninstall",
]

#: Soma-Workflow type names of our backends: ``soma_schedulers.<type>``.
PREFIX = "soma_schedulers."
_ORIGINALS = "_soma_schedulers_originals"
_logger = logging.getLogger(__name__)
_adapters: dict[str, type] = {}


def scheduler_types() -> list[str]:
    """Every Soma-Workflow type name this package adds (built-in and entry-point types)."""
    from ..scheduler import known_scheduler_types

    return [PREFIX + name for name in known_scheduler_types()]


def _adapter(name: str) -> type:
    """The class Soma-Workflow gets for ``soma_schedulers.<name>``: the backend's class, whose
    ``build_scheduler(config)`` takes Soma-Workflow's ``Configuration`` (made once per type)."""
    from ..scheduler import get_scheduler_implementation

    cls = get_scheduler_implementation(name)
    adapter = _adapters.get(name)
    if adapter is None or adapter.__mro__[1] is not cls:

        def build(_cls: type, config: Any) -> Any:
            return build_from_soma_workflow(name, config)

        adapter = type(cls.__name__, (cls,), {
            "__module__": __name__,
            "__qualname__": f"{cls.__qualname__}[{PREFIX}{name}]",
            "__doc__": f"{cls.__qualname__} as Soma-Workflow's scheduler type {PREFIX}{name}: "
                       "build_scheduler takes Soma-Workflow's Configuration.",
            "build_scheduler": classmethod(build),
        })
        _adapters[name] = adapter
    return adapter


def _ours(scheduler_type: object) -> str | None:
    if isinstance(scheduler_type, str) and scheduler_type.startswith(PREFIX):
        return scheduler_type[len(PREFIX):]
    return None


def patch_module(module: ModuleType) -> None:
    """Add our types to Soma-Workflow's ``soma_workflow.scheduler`` module (idempotent)."""
    if getattr(module, _ORIGINALS, None) is not None:
        return
    originals = {name: getattr(module, name) for name in
                 ("get_scheduler_implementation", "build_scheduler", "get_schedulers_list")}
    sw_implementation = originals["get_scheduler_implementation"]
    sw_build = originals["build_scheduler"]
    sw_list = originals["get_schedulers_list"]

    def get_scheduler_implementation(scheduler_type: str) -> Any:
        name = _ours(scheduler_type)
        if name is None:
            return sw_implementation(scheduler_type)
        try:
            return _adapter(name)
        except UnknownSchedulerTypeError:
            raise UnknownSchedulerTypeError(scheduler_type, scheduler_types()) from None

    def build_scheduler(scheduler_type: str, config: Any) -> Any:
        name = _ours(scheduler_type)
        if name is None:
            return sw_build(scheduler_type, config)
        return get_scheduler_implementation(scheduler_type).build_scheduler(config)

    def get_schedulers_list() -> list[tuple[str, bool]]:
        from ..scheduler import get_schedulers_list as ours

        return [*sw_list(), *((PREFIX + name, usable) for name, usable in ours())]

    for name, replacement in (("get_scheduler_implementation", get_scheduler_implementation),
                              ("build_scheduler", build_scheduler),
                              ("get_schedulers_list", get_schedulers_list)):
        replacement.__doc__ = (f"Soma-Workflow's {name}, extended by soma_schedulers with the "
                               f"{PREFIX}<type> scheduler types.\n\n{originals[name].__doc__ or ''}")
        setattr(module, name, replacement)
    setattr(module, _ORIGINALS, originals)
    _logger.debug("Soma-Workflow scheduler types %s<type> installed", PREFIX)


def install() -> None:
    """Import Soma-Workflow's scheduler module and add our types to it (idempotent).

    Raises :class:`~soma_schedulers.errors.DRMError` when Soma-Workflow is not installed.
    """
    try:
        import soma_workflow.scheduler as module
    except ImportError as exc:
        raise DRMError(f"Soma-Workflow is not installed: {exc}") from None
    patch_module(module)


def installed() -> bool:
    """Whether our types are in Soma-Workflow's scheduler module (False when it is not imported)."""
    module = sys.modules.get("soma_workflow.scheduler")
    return module is not None and getattr(module, _ORIGINALS, None) is not None


def uninstall() -> None:
    """Give Soma-Workflow its own functions back (the import hook stays for new processes)."""
    module = sys.modules.get("soma_workflow.scheduler")
    originals = getattr(module, _ORIGINALS, None) if module is not None else None
    if module is None or originals is None:
        return
    for name, fn in originals.items():
        setattr(module, name, fn)
    delattr(module, _ORIGINALS)
