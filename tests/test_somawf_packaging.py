"""The .pth file ships with a normal wheel install and with an editable one, in fresh venvs.

The wheel case is the issue's "done" check: in a fresh venv with ``pip install soma-workflow`` and
this package's wheel (no install() call, nothing injected), ``Configuration(resource_id,
LIGHT_MODE, 'soma_schedulers.local_basic', ...)`` and a ``WorkflowController`` built on it run a
workflow whose jobs go through this package's LocalScheduler (the barrier's DRMS id is one of our
engine ids). About a minute: both venvs install from the package index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PTH = "soma_schedulers_somawf.pth"

LIGHT_WORKFLOW = textwrap.dedent("""
    import json, os, sys, tempfile
    from soma_workflow.client import BarrierJob, Job, Workflow, WorkflowController
    from soma_workflow.configuration import Configuration, LIGHT_MODE
    d = tempfile.mkdtemp()
    config = Configuration("light-ours", LIGHT_MODE, "soma_schedulers.local_basic",
                           os.path.join(d, "db.sqlite"), os.path.join(d, "transfers"))
    wc = WorkflowController("light-ours", config=config)
    a = Job(command=["sh", "-c", "exit 0"], name="a")
    b = BarrierJob(name="barrier")
    c = Job(command=["sh", "-c", "exit 3"], name="c")
    wf_id = wc.submit_workflow(Workflow(jobs=[a, b, c], dependencies=[(a, b), (b, c)]))
    wc.wait_workflow(wf_id, timeout=120)
    scheduler = wc._engine_proxy.engine_loop._scheduler
    jobs = {info[0]: info for info in wc.workflow_elements_status(wf_id)[0]}
    names = {j.name: wf_job.job_id for j, wf_job in wc.workflow(wf_id).job_mapping.items()}
    print(json.dumps({"scheduler": type(scheduler).__module__ + "." + type(scheduler).__name__,
                      "jobs": {n: [jobs[i][1], list(jobs[i][3][:3]), jobs[i][5]] for n, i in names.items()}}))
    wc.stop_engine()
    os._exit(0)
""")


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload, no-any-return]


def _source_copy(tmp_path: Path) -> Path:
    """A copy of the checkout (no build/, egg-info, venvs): builds never write into the checkout."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", ".git", ".venv", ".nox",
                                                              "__pycache__", "*_cache", "src", "dist"))
    return copy


def _venv(where: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(where)]).check_returncode()
    return where / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    done = _run([str(python), "-m", "pip", "install", "-q", *args])
    if done.returncode != 0 and ("No matching distribution" in done.stderr or "Could not find" in done.stderr):
        pytest.skip(f"no package index: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr


def _purelib(python: Path) -> Path:
    return Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())


def _light_workflow(python: Path, home: Path) -> dict[str, object]:
    home.mkdir(exist_ok=True)
    done = _run([str(python), "-c", LIGHT_WORKFLOW], env={**os.environ, "HOME": str(home)}, cwd=home)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_wheel_ships_the_pth_and_soma_workflow_runs_our_local_scheduler(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(_source_copy(tmp_path))],
                 cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    [wheel] = dist.glob("soma_schedulers-*.whl")
    python = _venv(tmp_path / "venv")
    _pip(python, str(wheel), "soma-workflow")
    site = _purelib(python)
    assert (site / PTH).read_text().strip() == "import _soma_schedulers_somawf_hook"
    assert (site / "_soma_schedulers_somawf_hook.py").is_file()
    record = next(site.glob("soma_schedulers-*.dist-info")).joinpath("RECORD").read_text()
    assert f"\n{PTH}," in record  # pip uninstall removes it
    got = _light_workflow(python, tmp_path / "home")
    assert got["scheduler"] == "soma_schedulers.schedulers.local_scheduler.ConfiguredLocalScheduler"
    jobs = got["jobs"]
    assert jobs["a"][:2] == ["done", ["finished_regularly", 0, None]]  # type: ignore[index]
    assert jobs["c"][:2] == ["done", ["finished_regularly", 3, None]]  # type: ignore[index]
    assert jobs["barrier"][:2] == ["done", ["finished_regularly", 0, None]]  # type: ignore[index]
    assert str(jobs["barrier"][2]).startswith("engine-")  # type: ignore[index]  # our engine job id
    _run([str(python), "-m", "pip", "uninstall", "-y", "-q", "soma-schedulers"]).check_returncode()
    assert not (site / PTH).exists()


def test_editable_install_ships_the_pth(tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip(python, "-e", str(_source_copy(tmp_path)))
    site = _purelib(python)
    assert (site / PTH).is_file()
    done = _run([str(python), "-c", "import sys; print(sys.meta_path[0].__name__)"])
    assert done.stdout.strip() == "SomaWorkflowFinder", done.stderr
