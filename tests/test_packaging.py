"""The package list in pyproject.toml matches the tree, and the wheel ships the image build contexts."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_and_importable_build_context_is_listed() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "soma_schedulers").rglob("__init__.py")}
    contexts = {f"soma_schedulers.testing.containers.{d.name}" for d in (ROOT / "containers").iterdir()
                if d.is_dir() and d.name.isidentifier()}
    assert listed == packages | contexts | {"soma_schedulers.testing.containers"}
    assert setuptools["package-dir"] == {"soma_schedulers.testing.containers": "containers"}
    excluded = setuptools["exclude-package-data"]["soma_schedulers.testing.containers"]
    assert "*/src/*" in excluded  # fetched upstream sources never ship
