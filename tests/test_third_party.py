"""A third-party backend, registered through the entry point, runs the shipped suite.

The example backend lives in tests/example_backend/. Instead of pip-installing
it, each test makes a real ``.dist-info`` folder with its entry points (what an
install would make) on a PYTHONPATH given to a pytest subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib

EXAMPLE = Path(__file__).parent / "example_backend"


def _install_entry_points(tmp: Path, extra: dict[str, str] | None = None) -> str:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist = tmp / f"soma_example_backend-{meta['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = ["[soma_schedulers.schedulers]"]
    entry_points = {**meta["entry-points"]["soma_schedulers.schedulers"], **(extra or {})}
    lines += [f"{k} = {v}" for k, v in entry_points.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return os.pathsep.join([str(EXAMPLE), str(tmp)])


def _run_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, scheduler: str) -> pytest.RunResult:
    path = _install_entry_points(pytester.path)
    monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return pytester.runpytest_subprocess(
        "--pyargs", "soma_schedulers.testing.suite", f"--scheduler={scheduler}",
        "--conformance-examples=8", "-p", "no:cacheprovider", "-q", timeout=600,
    )


def test_example_backend_passes_the_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run_suite(pytester, monkeypatch, "example_threads")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()[-4000:]
    assert outcomes.get("passed", 0) >= 20
    # Skips only through declared capabilities, named in the reason.
    assert outcomes.get("skipped", 0) >= 1
    result.stdout.fnmatch_lines(["*example_threads*passed*"])


def test_broken_backend_fails_clearly(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run_suite(pytester, monkeypatch, "example_broken")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 3, result.stdout.str()[-4000:]
    text = result.stdout.str()
    assert "FAILED" in text and "test_exit_three" in text and "test_env_values" in text
    # the assertion says what was expected and what came back
    assert "At index 2 diff: 0 != 3" in text


def test_contract_failures_say_what_the_contract_asks(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _install_entry_points(pytester.path)
    monkeypatch.setenv("PYTHONPATH", path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = pytester.runpytest_subprocess(
        "--pyargs", "soma_schedulers.testing.suite", "--scheduler=example_silent", "-p", "no:cacheprovider",
        "-k", "jobs_finished_event or unknown_id", timeout=600)
    result.assert_outcomes(failed=2, passed=2)  # get_job_exit_info and kill_job do raise UnknownJobError
    text = result.stdout.str()
    assert "when a job submitted with signal_end=True ends, the scheduler sets jobs_finished_event" in text
    assert ("get_job_status('no-such-job-4242') of an id this scheduler never gave raises "
            "soma_schedulers.errors.UnknownJobError naming the id; it raised KeyError") in text
    assert "docs/contract.md, 'API'" in text


def test_misspelled_capability_is_refused_once(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "typo_backend.py").write_text(
        "from soma_example_backend import ThreadScheduler\n"
        "class Typo(ThreadScheduler):\n"
        "    capabilities = frozenset({'stdout', 'environment', 'cwd'})\n")
    path = _install_entry_points(pytester.path, extra={"typo": "typo_backend:Typo"})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), path, os.environ.get("PYTHONPATH", "")]))
    result = pytester.runpytest_subprocess("--pyargs", "soma_schedulers.testing.suite", "--scheduler=typo",
                                           "-p", "no:cacheprovider", timeout=600)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if "typo" in line]
    assert "Typo.capabilities has unknown name(s) 'cwd', 'environment', 'stdout'" in line
    assert "known: env, exit_signal, hold, job_name, join, launch_errors" in line
