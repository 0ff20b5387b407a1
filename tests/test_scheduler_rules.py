"""The library rules the command line relies on: the configuration's type decides, sections,
typed mapping values, types that say why they cannot run, drmaa2, a cleaned scheduler, a job list."""

from __future__ import annotations

import configparser
import ctypes.util
from pathlib import Path
from typing import Any

import pytest

from soma_schedulers import Job, SchedulerConfig
from soma_schedulers.batch import CommandLineScheduler
from soma_schedulers.config import BridgeConfig, config_from_mapping
from soma_schedulers.errors import (
    CommandError,
    CommandNotFoundError,
    ConfigurationError,
    DRMError,
    JobSpecError,
    SchedulerClosedError,
    SchedulerUnavailableError,
    UnknownSchedulerTypeError,
)
from soma_schedulers.scheduler import (
    GUARDED_METHODS,
    Scheduler,
    build_scheduler,
    get_scheduler_implementation,
    get_schedulers_list,
    scheduler_types_report,
)
from soma_schedulers.schedulers import drmaa_scheduler, mpi_scheduler, pbspro_scheduler
from soma_schedulers.schedulers.local_scheduler import LocalScheduler
from soma_schedulers.schedulers.slurm_scheduler import SlurmScheduler

SW_FILE = """\
[cluster]
SCHEDULER_TYPE = slurm
OUT_OF_CONTAINER = none
SUBMITTING_MACHINES = front

[laptop]
SCHEDULER_TYPE = local_basic
CPU_NB = 2
"""


# -- the configuration decides where work goes ----------------------------------------------------

def test_the_configuration_type_is_used_and_a_conflict_names_both(tmp_path: Path) -> None:
    ini = tmp_path / "slurm.ini"
    ini.write_text("[cluster]\nSCHEDULER_TYPE = slurm\nOUT_OF_CONTAINER = none\n")
    with build_scheduler(None, ini) as s:
        assert isinstance(s, SlurmScheduler)
    with build_scheduler("slurm", str(ini)) as s:
        assert isinstance(s, SlurmScheduler)
    with pytest.raises(ConfigurationError) as info:
        build_scheduler("local_basic", ini)
    assert "'local_basic'" in str(info.value) and "SCHEDULER_TYPE = slurm" in str(info.value)
    assert str(ini) in str(info.value)
    with pytest.raises(ConfigurationError, match=r"'local_basic'.*SCHEDULER_TYPE = slurm"):
        build_scheduler("local_basic", {"SCHEDULER_TYPE": "slurm"})
    with build_scheduler("local", {"SCHEDULER_TYPE": "local_basic"}) as s:  # one type, two names
        assert isinstance(s, LocalScheduler)
    with build_scheduler(None, None) as s:
        assert isinstance(s, LocalScheduler)


def test_a_section_of_a_multi_section_file(tmp_path: Path) -> None:
    ini = tmp_path / "sw.ini"
    ini.write_text(SW_FILE)
    with pytest.raises(ConfigurationError, match=r"2 sections \(cluster, laptop\).*section="):
        build_scheduler(None, ini)
    with build_scheduler(None, ini, section="laptop") as s:
        assert isinstance(s, LocalScheduler) and s.limit == 2
    with build_scheduler(None, ini, section="cluster") as s:
        assert isinstance(s, SlurmScheduler) and s.config.bridge.mode == "none"
    with pytest.raises(ConfigurationError, match=r"no section \[nope\]"):
        build_scheduler(None, ini, section="nope")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SW_FILE)
    with build_scheduler(None, parser, section="laptop") as s:  # a mapping of sections
        assert isinstance(s, LocalScheduler) and s.limit == 2
    with build_scheduler(None, {"a": {"CPU_NB": 3}, "b": {"CPU_NB": 1}}, section="a") as s:
        assert isinstance(s, LocalScheduler) and s.limit == 3
    with pytest.raises(ConfigurationError, match="not an INI file or a mapping of sections"):
        build_scheduler(None, {"CPU_NB": "2"}, section="a")


def test_mapping_values_that_mean_the_same_thing() -> None:
    with build_scheduler("local_basic", {"CPU_NB": 2, "SCHEDULER_INTERVAL": 1}) as s:
        assert isinstance(s, LocalScheduler) and s.limit == 2 and s.interval == 1.0
    cfg = config_from_mapping({
        "COMMAND_TIMEOUT": 5, "COMMAND_RETRIES": 1.0, "BRIDGE_SHELLS": True, "BRIDGE_SSH_REUSE": 0,
        "BRIDGE_COMMAND": ["docker", "exec", "-i", "my host"], "NATIVE_SPECIFICATION": ["--a", "--b"],
        "OPTION_GRACE": 2.5, "OPTION_FLAG": False, "MAX_CPU_NB": None,
    })
    assert cfg.command_timeout == 5.0 and cfg.command_retries == 1 and cfg.max_cpu_nb == 0
    assert cfg.bridge == BridgeConfig(mode="prefix", prefix=("docker", "exec", "-i", "my host"), shells=True,
                                      reuse=False)
    assert cfg.native_specification == ("--a", "--b") and cfg.options == {"grace": "2.5", "flag": "no"}


@pytest.mark.parametrize("values, words", [
    ({"CPU_NB": 2.5}, ("CPU_NB", "integer", "2.5 (float)")),
    ({"CPU_NB": True}, ("CPU_NB", "True (bool)")),
    ({"SCHEDULER_TYPE": 3}, ("SCHEDULER_TYPE", "string")),
    ({"COMMAND_TIMEOUT": [1]}, ("COMMAND_TIMEOUT", "number")),
    ({"BRIDGE_SHELLS": 2}, ("BRIDGE_SHELLS", "yes or no")),
    ({"BRIDGE_COMMAND": 'docker "exec'}, ("BRIDGE_COMMAND", "closing quotation")),
    ({"BRIDGE_SSH_OPTIONS": [1, 2]}, ("BRIDGE_SSH_OPTIONS", "list of str")),
    ({"OPTION_X": object()}, ("OPTION_X", "string")),
])
def test_mapping_values_that_do_not_are_refused_naming_the_key(values: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as info:
        build_scheduler("local_basic", values)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("[a]\nfoo\n", ("line 2", "'foo'")),
    ("foo = 1\n", ("line 1", "before any [section]")),
    ("[a]\n[a]\n", ("line 2", "section 'a' already exists")),
])
def test_a_malformed_file_is_one_line(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        build_scheduler(None, ini)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"malformed configuration file {ini}: ")
    for word in words:
        assert word in message


# -- types: the truth about this machine ------------------------------------------------------------

def test_drmaa2_is_a_typed_error_saying_why() -> None:
    with pytest.raises(SchedulerUnavailableError) as info:
        get_scheduler_implementation("drmaa2")
    assert not isinstance(info.value, UnknownSchedulerTypeError)
    assert "DRMAA 2" in str(info.value) and "DRMAA 1 only" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SchedulerUnavailableError):
        build_scheduler("drmaa2")
    with pytest.raises(UnknownSchedulerTypeError) as unknown:
        get_scheduler_implementation("nope")
    assert "drmaa2" not in str(unknown.value)


@pytest.mark.parametrize("cls, probe", [(SlurmScheduler, "squeue"), (pbspro_scheduler.PBSProScheduler, "qstat"),
                                        (pbspro_scheduler.TorqueScheduler, "qstat")])
def test_command_line_types_need_their_command_or_a_bridge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           cls: type[CommandLineScheduler], probe: str) -> None:
    import soma_schedulers.batch as batch

    monkeypatch.setenv("PATH", str(tmp_path))
    none = SchedulerConfig(bridge=BridgeConfig(mode="none"))
    assert cls.unavailable_reason(none) == f"{probe} is not on PATH (OUT_OF_CONTAINER = none: no bridge)"
    monkeypatch.setattr(batch, "container_markers", lambda: [])
    assert f"{probe} is not on PATH and no bridge is configured" in (cls.unavailable_reason(None) or "")
    monkeypatch.setattr(batch, "container_markers", lambda: ["$APPTAINER_CONTAINER"])
    assert cls.unavailable_reason(None) is None  # the automatic ssh bridge to the host
    for bridge in (BridgeConfig(mode="prefix", prefix=("docker", "exec", "x")), BridgeConfig(mode="ssh", host="h")):
        assert cls.unavailable_reason(SchedulerConfig(bridge=bridge)) is None
    (tmp_path / probe).write_text("#!/bin/sh\n")
    (tmp_path / probe).chmod(0o755)
    assert cls.unavailable_reason(none) is None


def test_drmaa_and_mpi_reasons_load_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("drmaa", "mpi4py")
                        else real(name, *a))
    assert "'drmaa' Python package is not installed" in (drmaa_scheduler.DrmaaScheduler.unavailable_reason() or "")
    assert "mpi4py is not installed" in (mpi_scheduler.MPIScheduler.unavailable_reason() or "")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "drmaa" else real(name, *a))
    lib = tmp_path / "libdrmaa.so"
    assert "DRMAA_LIBRARY_PATH names" in (drmaa_scheduler.drmaa_unavailable_reason({"DRMAA_LIBRARY_PATH": str(lib)})
                                          or "")
    lib.write_bytes(b"")
    assert drmaa_scheduler.drmaa_unavailable_reason({"DRMAA_LIBRARY_PATH": str(lib)}) is None
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert "set DRMAA_LIBRARY_PATH" in (drmaa_scheduler.drmaa_unavailable_reason({}) or "")
    assert "drmaa" not in sys.modules and "mpi4py.MPI" not in sys.modules


def test_get_schedulers_list_is_the_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import soma_schedulers.batch as batch

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(batch, "container_markers", lambda: [])
    usable = dict(get_schedulers_list())
    assert usable["local_basic"] and not usable["slurm"] and not usable["pbspro"] and not usable["drmaa2"]
    report = {name: reason for name, _cls, reason in scheduler_types_report()}
    assert report["local_basic"] is None and "squeue" in (report["slurm"] or "")


# -- a cleaned scheduler; a job list ------------------------------------------------------------------

def _builders() -> dict[str, Any]:
    none = SchedulerConfig(bridge=BridgeConfig(mode="none"))
    return {
        "local_basic": lambda: build_scheduler("local_basic"),
        "slurm": lambda: build_scheduler("slurm", none),
        "pbspro": lambda: build_scheduler("pbspro", none),
        "torque": lambda: build_scheduler("torque", none),
    }


_CALLS: dict[str, tuple[Any, ...]] = {
    "job_submission": ([Job(command=["true"])],), "get_job_status": ("1",), "get_jobs_status": (["1"],),
    "get_job_exit_info": ("1",), "get_jobs_exit_info": (["1"],), "kill_job": ("1",), "get_job_error": ("1",),
    "attach": (["1"],),
}


@pytest.mark.parametrize("name", list(_builders()))
def test_every_job_method_refuses_after_clean(name: str) -> None:
    sched = _builders()[name]()
    sched.clean()
    assert set(_CALLS) == set(GUARDED_METHODS)
    for method, args in _CALLS.items():
        with pytest.raises(SchedulerClosedError, match="was cleaned") as info:
            getattr(sched, method)(*args)
        assert isinstance(info.value, DRMError) and method in str(info.value)
    sched.clean()  # again: nothing


def test_the_local_backend_cleans_its_jobs_before_closing() -> None:
    with build_scheduler("local_basic") as sched:  # clean() kills through kill_job: allowed while cleaning
        [jid] = sched.job_submission([Job(command=["sleep", "30"])])
    with pytest.raises(SchedulerClosedError):
        sched.get_job_status(jid or "")


def test_a_third_party_backend_gets_the_same_rules() -> None:
    class Mine(Scheduler):
        def job_submission(self, jobs: Any, signal_end: bool = True) -> list[str | None]:
            return ["x" for _ in jobs]

        def get_job_status(self, scheduler_job_id: str) -> str:
            return "done"

        def get_job_exit_info(self, scheduler_job_id: str) -> Any:
            return ("finished_regularly", 0, None, None)

        def kill_job(self, scheduler_job_id: str) -> None:
            return None

        def clean(self) -> None:
            self.cleaned = True

    mine = Mine()
    with pytest.raises(JobSpecError, match=r"pass \[job\]"):
        mine.job_submission(Job(command=["true"]))
    assert mine.job_submission([Job(command=["true"])]) == ["x"]
    mine.clean()
    assert mine.cleaned
    with pytest.raises(SchedulerClosedError):
        mine.get_jobs_status(["x"])


@pytest.mark.parametrize("name", ["local_basic", "slurm"])
def test_a_single_job_is_refused_with_a_hint(name: str) -> None:
    with _builders()[name]() as sched:
        for single in (Job(command=["true"]), {"command": ["true"]}):
            with pytest.raises(JobSpecError, match=r"list of jobs, not a .*: pass \[job\]"):
                sched.job_submission(single)
        with pytest.raises(JobSpecError, match="list of jobs, not a str"):
            sched.job_submission("true")


# -- command errors: one line, no "exit None" ---------------------------------------------------------------

def test_command_error_messages() -> None:
    assert str(CommandError(["sbatch"], 1, "sbatch: error:\n  bad partition\n")) == (
        "command sbatch failed (exit 1): sbatch: error: bad partition")
    assert str(CommandError(["sbatch"], None, "no answer")) == "command sbatch failed: no answer"
    missing = CommandNotFoundError(["sbatch"], None, "sbatch is not installed or not on PATH")
    assert str(missing) == "sbatch is not installed or not on PATH" and missing.returncode is None
