"""Import hook run at interpreter start by ``soma_schedulers_somawf.pth``: stdlib only, and cheap.

It puts one finder first in ``sys.meta_path`` that answers for exactly one module,
``soma_workflow.scheduler``: when (and only when) that module is imported, it is loaded as usual,
then ``soma_schedulers.soma_workflow.patch_module`` adds the ``soma_schedulers.<type>`` scheduler
types to it. Every other import costs one string comparison. Nothing of soma_schedulers or
Soma-Workflow is imported here. ``SOMA_SCHEDULERS_NO_SOMA_WORKFLOW_HOOK=1`` turns it off.
"""

import os
import sys

TARGET = "soma_workflow.scheduler"


class _PatchingLoader:
    """Runs the real loader, then patches the module; anything else is the real loader's."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            from soma_schedulers.soma_workflow import patch_module
        except Exception as exc:  # soma_schedulers half-installed: leave Soma-Workflow as it is
            sys.stderr.write(f"soma_schedulers: cannot add its scheduler types to Soma-Workflow: {exc!r}\n")
            return
        patch_module(module)


class SomaWorkflowFinder:
    """A meta path finder for ``soma_workflow.scheduler`` only (see the module's doc)."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    @classmethod
    def invalidate_caches(cls):
        pass


def install():
    """Put the finder first in ``sys.meta_path`` (once)."""
    if SomaWorkflowFinder not in sys.meta_path:
        sys.meta_path.insert(0, SomaWorkflowFinder)


if os.environ.get("SOMA_SCHEDULERS_NO_SOMA_WORKFLOW_HOOK", "") not in ("1", "yes", "true"):
    install()
