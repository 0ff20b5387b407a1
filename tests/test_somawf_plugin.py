"""The Soma-Workflow plug-in: types soma_schedulers.<type>, the import hook, the configuration passed through.

Each check that needs Soma-Workflow's module as it is at start-up runs in a new Python process,
with nothing but the installed .pth file (no install() call).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soma_schedulers.config import SchedulerConfig
from soma_schedulers.errors import ConfigurationError

pytest.importorskip("soma_workflow")

ROOT = Path(__file__).resolve().parents[1]
HOOK = "_soma_schedulers_somawf_hook"


def python(code: str, tmp_path: Path, **env: str) -> str:
    """Run ``code`` in a new interpreter (private HOME); return its stdout."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env={**os.environ, "HOME": str(home), **env}, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_pth_file_is_installed_and_hooks_soma_workflow(tmp_path: Path) -> None:
    out = python("""
        import sys, json
        import soma_workflow.scheduler as s
        from soma_workflow.configuration import Configuration, LIGHT_MODE
        cls = s.get_scheduler_implementation("soma_schedulers.local_basic")
        names = [n for n, _ in s.get_schedulers_list()]
        print(json.dumps({"first": type(sys.meta_path[0]).__name__ if not isinstance(sys.meta_path[0], type)
                          else sys.meta_path[0].__name__, "cls": cls.__mro__[1].__name__, "names": names,
                          "own": s.get_scheduler_implementation("local_basic").__module__}))
    """, tmp_path)
    got = json.loads(out)
    assert got["first"] == "SomaWorkflowFinder"
    assert got["cls"] == "ConfiguredLocalScheduler"
    assert got["own"] == "soma_workflow.schedulers.local_scheduler"  # Soma-Workflow's own types unchanged
    assert {"local_basic", "slurm", "soma_schedulers.local_basic", "soma_schedulers.slurm",
            "soma_schedulers.pbspro", "soma_schedulers.torque", "soma_schedulers.drmaa"} <= set(got["names"])


def test_hook_can_be_turned_off_and_install_does_it_explicitly(tmp_path: Path) -> None:
    out = python("""
        import soma_workflow.scheduler as s
        try:
            s.get_scheduler_implementation("soma_schedulers.local_basic")
            print("found")
        except Exception as exc:
            print("refused", type(exc).__name__)
        import soma_schedulers.soma_workflow as p
        p.install(); p.install()
        print(p.installed(), s.get_scheduler_implementation("soma_schedulers.slurm").__mro__[1].__name__)
        p.uninstall()
        print(p.installed())
    """, tmp_path, SOMA_SCHEDULERS_NO_SOMA_WORKFLOW_HOOK="1")
    assert out.split("\n")[:3] == ["refused NameError", "True SlurmScheduler", "False"]


def test_importing_soma_schedulers_never_imports_soma_workflow(tmp_path: Path) -> None:
    out = python("""
        import sys
        import soma_schedulers, soma_schedulers.scheduler, soma_schedulers.soma_workflow
        from soma_schedulers.scheduler import build_scheduler
        build_scheduler("local_basic").clean()
        print(sorted(m for m in sys.modules if m.startswith("soma_workflow")))
    """, tmp_path)
    assert out.strip() == "[]"


def test_the_hook_costs_nothing_without_soma_workflow(tmp_path: Path) -> None:
    """python -X importtime: the hook module imports nothing but itself (no soma_schedulers, no
    Soma-Workflow); its own time is the best of 3 starts (benchmarks/bench_somawf_hook.py measures it)."""
    best = None
    for _ in range(3):
        result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True,
                                env={**os.environ, "HOME": str(tmp_path)}, timeout=60, check=True)
        lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
        hook = [line for line in lines if line.split("|")[-1].strip() == HOOK]
        assert hook, result.stderr
        self_us, cumulative_us = (int(x) for x in hook[0].split(":", 1)[1].split("|")[:2])
        assert self_us == cumulative_us, hook  # no nested import
        assert not [line for line in lines if "soma_schedulers." in line or "soma_workflow" in line]
        best = cumulative_us if best is None else min(best, cumulative_us)
    assert best is not None and best < 10_000, best


def test_unknown_type_is_refused_as_soma_workflow_refuses_its_own(tmp_path: Path) -> None:
    cfg = tmp_path / "sw.cfg"
    cfg.write_text("[res]\nscheduler_type = soma_schedulers.no_such_type\ncluster_address = localhost\n")
    out = python(f"""
        from soma_workflow.configuration import Configuration
        try:
            Configuration.load_from_file("res", {str(cfg)!r})
        except Exception as exc:
            print(type(exc).__name__, exc)
    """, tmp_path)
    assert out.startswith("ConfigurationError Unknown scheduler type: 'soma_schedulers.no_such_type'")


def _sw_config(tmp_path: Path, body: str) -> object:
    from soma_workflow.configuration import Configuration

    cfg = tmp_path / "soma-workflow.cfg"
    cfg.write_text("[cluster]\nscheduler_type = soma_schedulers.slurm\ncluster_address = localhost\n"
                   "server_name = cluster\nsoma_workflow_dir = /tmp/x\nengine_log_level = DEBUG\n" + body)
    return Configuration.load_from_file("cluster", str(cfg))


def test_resource_section_reaches_the_backend(tmp_path: Path) -> None:
    from soma_schedulers.soma_workflow import scheduler_config_from

    config = _sw_config(tmp_path, textwrap.dedent("""\
        NATIVE_SPECIFICATION = --time=10 --mem=1G
        MPI = openmpi
        PARALLEL_ENV_MPI_BIN = /usr/bin/mpi
        OUT_OF_CONTAINER = prefix
        BRIDGE_COMMAND = docker exec -i -u alice "my container"
        BRIDGE_SHELLS = yes
        BRIDGE_SHARED_DIR = /shared
        COMMAND_TIMEOUT = 12.5
        UNDETERMINED_TIMEOUT = 30
        OPTION_ACCOUNTING_GRACE = 3
        MAX_JOB_IN_QUEUE = {15}
        CONTAINER_COMMAND = ['x', '{#command}']
        """))
    cfg = scheduler_config_from(config, "slurm")
    assert isinstance(cfg, SchedulerConfig)
    assert cfg.scheduler_type == "slurm"
    assert cfg.native_specification == "--time=10 --mem=1G"
    assert cfg.parallel_job_config == {"MPI": "openmpi", "PARALLEL_ENV_MPI_BIN": "/usr/bin/mpi"}
    assert cfg.bridge.mode == "prefix" and cfg.bridge.prefix == ("docker", "exec", "-i", "-u", "alice", "my container")
    assert cfg.bridge.shells and cfg.bridge.shared_dir == "/shared"
    assert (cfg.command_timeout, cfg.undetermined_timeout) == (12.5, 30.0)
    assert cfg.options == {"accounting_grace": "3"}


def test_soma_workflow_build_scheduler_gets_our_backend_configured(tmp_path: Path) -> None:
    import soma_workflow.scheduler as sws

    from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler

    config = _sw_config(tmp_path, "OUT_OF_CONTAINER = prefix\nBRIDGE_COMMAND = env\nCOMMAND_TIMEOUT = 7\n")
    sched = sws.build_scheduler(config.get_scheduler_type(), config)  # type: ignore[attr-defined]
    try:
        assert type(sched) is SlurmScheduler
        assert sched.config.bridge.prefix == ("env",) and sched.config.command_timeout == 7.0
    finally:
        sched.clean()


def test_unknown_key_in_the_resource_section_names_it(tmp_path: Path) -> None:
    from soma_schedulers.soma_workflow import scheduler_config_from

    config = _sw_config(tmp_path, "BRIDGE_COMAND = env\n")
    with pytest.raises(ConfigurationError, match=r"bridge_comand.*\[cluster\]"):
        scheduler_config_from(config, "slurm")


def test_local_type_reads_soma_workflows_local_scheduler_file(tmp_path: Path) -> None:
    out = python("""
        import socket
        from pathlib import Path
        Path.home().joinpath(".soma-workflow-scheduler.cfg").write_text(
            f"[{socket.gethostname()}]\\nCPU_NB = 3\\nMAX_CPU_NB = 2\\nSCHEDULER_INTERVAL = 0.5\\n")
        from soma_workflow.configuration import Configuration, LIGHT_MODE
        import soma_workflow.scheduler as s
        config = Configuration("r", LIGHT_MODE, "soma_schedulers.local_basic", "db", "tr")
        sched = s.build_scheduler("soma_schedulers.local_basic", config)
        print(type(sched).__name__, sched.proc_nb, sched.max_proc_nb, sched.limit, sched.interval)
        sched.clean()
    """, tmp_path)
    assert out.split() == ["ConfiguredLocalScheduler", "3", "2", "2", "0.5"]
