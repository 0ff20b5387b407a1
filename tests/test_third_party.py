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


def test_contract_failures_say_what_the_contract_asks(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                      example_pythonpath: str) -> None:
    monkeypatch.setenv("PYTHONPATH", example_pythonpath + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = pytester.runpytest_subprocess(
        "--pyargs", "soma_schedulers.testing.suite", "--scheduler=example_silent", "-p", "no:cacheprovider",
        "-k", "jobs_finished_event or unknown_id", timeout=600)
    result.assert_outcomes(failed=2, passed=2)  # get_job_exit_info and kill_job do raise UnknownJobError
    text = result.stdout.str()
    assert "when a job submitted with signal_end=True ends, the scheduler sets jobs_finished_event" in text
    assert ("get_job_status('no-such-job-4242') of an id this scheduler never gave raises "
            "soma_schedulers.errors.UnknownJobError naming the id; it raised KeyError") in text
    assert "docs/contract.md, 'API'" in text


def test_misspelled_capability_is_refused_once(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                               example_pythonpath: str) -> None:
    (pytester.path / "typo_backend.py").write_text(
        "from soma_example_backend import ThreadScheduler\n"
        "class Typo(ThreadScheduler):\n"
        "    capabilities = frozenset({'stdout', 'environment', 'cwd'})\n")
    dist = pytester.path / "typo_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: typo-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[soma_schedulers.schedulers]\ntypo = typo_backend:Typo\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), example_pythonpath,
                                                      os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("--pyargs", "soma_schedulers.testing.suite", "--scheduler=typo",
                                           "-p", "no:cacheprovider", timeout=600)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if "typo" in line]
    assert "Typo.capabilities has unknown name(s) 'cwd', 'environment', 'stdout'" in line
    assert "known: env, exit_signal, hold, job_name, join, launch_errors" in line
