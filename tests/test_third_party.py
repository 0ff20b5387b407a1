"""A third-party backend, registered through the entry point, runs the shipped suite.

The example backend lives in tests/example_backend/. Instead of pip-installing
it, the ``example_pythonpath`` fixture (conftest.py) makes a real ``.dist-info``
folder with its entry points (what an install would make), on a PYTHONPATH
given to a pytest subprocess.
"""

from __future__ import annotations

import os

import pytest


def _run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, path: str,
               scheduler: str) -> pytest.RunResult:
    monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return pytester.runpytest_subprocess(
        "--pyargs", "soma_schedulers.testing.suite", f"--scheduler={scheduler}",
        "--conformance-examples=8", "-p", "no:cacheprovider", "-q", timeout=600,
    )


def test_example_backend_passes_the_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                          example_pythonpath: str) -> None:
    result = _run_suite(pytester, monkeypatch, example_pythonpath, "example_threads")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()[-4000:]
    assert outcomes.get("passed", 0) >= 20
    # Skips only through declared capabilities, named in the reason.
    assert outcomes.get("skipped", 0) >= 1
    result.stdout.fnmatch_lines(["*example_threads*passed*"])


def test_broken_backend_fails_clearly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                      example_pythonpath: str) -> None:
    result = _run_suite(pytester, monkeypatch, example_pythonpath, "example_broken")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 3, result.stdout.str()[-4000:]
    text = result.stdout.str()
    assert "FAILED" in text and "test_exit_three" in text and "test_env_values" in text
    # the assertion says what was expected and what came back
    assert "At index 2 diff: 0 != 3" in text
