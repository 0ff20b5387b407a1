"""Build hooks (the project's metadata is in pyproject.toml).

``soma_schedulers_somawf.pth`` must land at the top of site-packages, where Python reads it at
start-up: it imports ``_soma_schedulers_somawf_hook``, which adds the ``soma_schedulers.<type>``
scheduler types to Soma-Workflow when, and only when, Soma-Workflow is imported
(``soma_schedulers/soma_workflow/__init__.py``). setuptools has no option for a file at the top of
purelib: ``build_py`` copies it there for a wheel (and ``pip install .``), and ``editable_wheel``
puts it into the editable wheel (``pip install -e .``), whose other files only point at the
checkout. ``tests/test_somawf_packaging.py`` checks both routes in fresh venvs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = "soma_schedulers_somawf.pth"
HERE = Path(__file__).resolve().parent


class BuildPyWithPth(build_py):
    """build_py, plus the .pth at the root of build_lib (the wheel's purelib)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.copy_file(str(HERE / PTH), str(Path(self.build_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        return outputs if self.editable_mode else [*outputs, str(Path(self.build_lib) / PTH)]


class EditableWheelWithPth(editable_wheel):
    """editable_wheel, plus the .pth at the root of the editable wheel."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):  # type: ignore[no-untyped-def]
        result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copyfile(HERE / PTH, Path(unpacked_wheel) / PTH)
        return result


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
