"""One workflow through Soma-Workflow's real engine, checked job by job (the end-to-end tests).

:func:`build` makes a 33-job workflow: 8 jobs that dump their argv (special characters), env
(special values) and working directory (a name with specials) as JSON to their stdout file and a
line to their stderr file; a Soma-Workflow ``BarrierJob`` after them (an engine-execution job); 16
jobs after the barrier exiting 0, 1, 2 or 3; 4 jobs after successful ones (a dependency chain);
a job killed while it runs (``stop_jobs``), a job that kills itself with SIGTERM, a job after a
failed one (never run), and a job that ends on its own a few seconds in. :func:`check` then
compares what Soma-Workflow reports for every job (status, exit status, exit value, signal) with
what the job did, and reads every output file. Soma-Workflow is imported only here.

``python -m soma_schedulers.testing.somaworkflow_e2e`` runs it in a process of its own (the tests
start it with a private HOME and configuration), in light mode (``--light TYPE``) or through a
resource of the Soma-Workflow configuration file (``--resource ID``: a local server, whose engine
is a process of its own); ``--restart`` runs the engine-restart scenario instead
(:func:`build_restart`). It prints one JSON line: the problems found, the time, the DRMS ids.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C

__all__ = ["ARGV", "ENV", "Expected", "build", "build_restart", "check", "launch", "main", "run", "run_restart"]

#: Arguments every dump job gets: the shell's and Python's special characters.
ARGV = ["$HOME", "`id`", "$(id)", "a b  c", "'single'", '"double"', "end\\", "été 中文 😀", "", "-n",
        "*", ";|&<>", "#x", "%s{}"]
#: Environment values every dump job gets.
ENV = {"SOMA_E2E_SPACES": "a b  c ", "SOMA_E2E_SPECIAL": "$HOME `id` $(id) \"dq\" 'sq' \\ ; & | * end\\",
       "SOMA_E2E_NEWLINE": "one\ntwo", "SOMA_E2E_UNICODE": "été 中文 😀", "SOMA_E2E_EMPTY": ""}
_DUMP = ("import json, os, sys\n"
         "json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
         " 'env': {k: v for k, v in os.environ.items() if k.startswith('SOMA_E2E_')}}, sys.stdout)\n"
         "sys.stderr.write('stderr of ' + os.environ['SOMA_E2E_NAME'])\n"
         "sys.exit(int(os.environ['SOMA_E2E_EXIT']))\n")


@dataclass(frozen=True)
class Expected:
    """What a job does, hence what Soma-Workflow must report: ``(status, exit_status, value, signal)``."""

    name: str
    report: tuple[str, str | None, int | None, int | None]
    dumps: bool = False  # its stdout is the dump JSON, its stderr "stderr of <name>"


def build(workdir: Path, python: str) -> tuple[Any, dict[str, Expected], dict[str, Any]]:
    """The workflow (files under ``workdir``, jobs run by ``python`` as the jobs see it), what each
    job must end as, and the client jobs by name."""
    from soma_workflow.client import BarrierJob, Job, Workflow

    cwd = workdir / "cwd $a 'b' `c`"
    for d in (workdir, cwd, workdir / "out"):  # the jobs may run as another user (a cluster's)
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)
    jobs: dict[str, Any] = {}
    expected: dict[str, Expected] = {}
    deps: list[tuple[Any, Any]] = []

    def job(name: str, command: list[str], report: tuple[str, str | None, int | None, int | None],
            dumps: bool = False, code: int = 0) -> Any:
        j = Job(command=command, name=name, stdout_file=str(workdir / "out" / f"{name}.out"),
                stderr_file=str(workdir / "out" / f"{name}.err"), working_directory=str(cwd),
                env={**ENV, "SOMA_E2E_NAME": name, "SOMA_E2E_EXIT": str(code)})
        jobs[name] = j
        expected[name] = Expected(name, report, dumps)
        return j

    def dump(name: str, code: int) -> Any:
        return job(name, [python, "-c", _DUMP, *ARGV], (C.DONE, C.FINISHED_REGULARLY, code, None), True, code)

    first = [dump(f"first{i}", 0) for i in range(8)]
    barrier = BarrierJob(name="barrier")
    jobs["barrier"] = barrier
    expected["barrier"] = Expected("barrier", (C.DONE, C.FINISHED_REGULARLY, 0, None))
    deps += [(j, barrier) for j in first]
    middle = [dump(f"middle{i}", i % 4) for i in range(16)]
    deps += [(barrier, j) for j in middle]
    last = [dump(f"last{i}", 0) for i in range(4)]
    deps += [(middle[4 * i], j) for i, j in enumerate(last)]  # after jobs that exit 0
    job("killed", [python, "-c", "import time; time.sleep(600)"], (C.FAILED, C.USER_KILLED, None, None))
    job("sigterm", [python, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
        (C.DONE, C.FINISHED_TERM_SIG, None, 15))
    job("after_failure", [python, "-c", "open('ran', 'w')"], (C.FAILED, C.EXIT_NOTRUN, None, None))
    deps.append((middle[3], jobs["after_failure"]))  # middle3 exits 3: this one never runs
    job("sleeper", [python, "-c", "import time; time.sleep(3)"], (C.DONE, C.FINISHED_REGULARLY, 0, None))
    workflow = Workflow(jobs=list(jobs.values()), dependencies=deps, name="soma_schedulers e2e")
    return workflow, expected, jobs


def _engine_ids(controller: Any, wf_id: int) -> dict[str, int]:
    wf = controller.workflow(wf_id)
    return {job.name: wf.job_mapping[job].job_id for job in wf.jobs}


def run(controller: Any, workflow: Any, timeout: float = 600.0) -> tuple[int, dict[str, int]]:
    """Submit ``workflow``, kill the job named ``killed`` once Soma-Workflow says it runs, wait for the
    end. Returns the workflow id and the engine job id of every job, by name."""
    wf_id = controller.submit_workflow(workflow)
    ids = _engine_ids(controller, wf_id)
    deadline = time.monotonic() + timeout
    while controller.job_status(ids["killed"]) != C.RUNNING:
        if time.monotonic() > deadline:
            raise AssertionError(f"job 'killed' never ran: {controller.job_status(ids['killed'])}")
        time.sleep(0.2)
    time.sleep(1.0)  # well into its sleep
    controller.stop_jobs(wf_id, [ids["killed"]])
    controller.wait_workflow(wf_id, timeout=timeout)
    return wf_id, ids


def check(controller: Any, wf_id: int, ids: dict[str, int], expected: dict[str, Expected],
          workdir: Path, files: bool = True) -> list[str]:
    """Every difference between what Soma-Workflow reports and what each job did (empty: all agree)."""
    problems = []
    status_of = {info[0]: info for info in controller.workflow_elements_status(wf_id)[0]}
    cwd = workdir / "cwd $a 'b' `c`"
    for name, exp in expected.items():
        info = status_of[ids[name]]
        exit_info = info[3] or (None, None, None, None)
        signal = exit_info[2]  # Soma-Workflow's database keeps the signal as text ('15')
        signal = int(signal) if isinstance(signal, str) and signal.isdigit() else signal
        reported = (info[1], exit_info[0], exit_info[1], signal)
        if reported != exp.report:
            problems.append(f"{name}: Soma-Workflow reports {reported}, the job did {exp.report}")
        if exp.dumps and files and reported == exp.report:
            problems += _check_files(name, workdir, cwd)
    if (cwd / "ran").exists():
        problems.append("after_failure ran although the job it depends on failed")
    return problems


def _check_files(name: str, workdir: Path, cwd: Path) -> list[str]:
    out, err = workdir / "out" / f"{name}.out", workdir / "out" / f"{name}.err"
    deadline = time.monotonic() + 10  # a shared filesystem may show a file a moment late
    while not (out.exists() and err.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        dumped = json.loads(out.read_bytes().decode())
        said = err.read_bytes().decode()
    except (OSError, ValueError) as exc:
        return [f"{name}: cannot read its output files: {exc}"]
    problems = []
    if dumped["argv"] != ARGV:
        problems.append(f"{name}: argv {dumped['argv']!r} != {ARGV!r}")
    want_env = {**ENV, "SOMA_E2E_NAME": name}
    got_env = {k: v for k, v in dumped["env"].items() if k != "SOMA_E2E_EXIT"}
    if got_env != want_env:
        problems.append(f"{name}: env {got_env!r} != {want_env!r}")
    if Path(dumped["cwd"]).resolve() != cwd.resolve():
        problems.append(f"{name}: working directory {dumped['cwd']!r} != {str(cwd)!r}")
    if said != f"stderr of {name}":
        problems.append(f"{name}: stderr {said!r}")
    return problems


def build_restart(workdir: Path, python: str, seconds: int = 40) -> tuple[Any, dict[str, Expected], dict[str, Any]]:
    """4 jobs that sleep ``seconds`` then exit 0-3, each followed by a job exiting 0 (exit 0 only)."""
    from soma_workflow.client import Job, Workflow

    for d in (workdir, workdir / "out"):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o777)
    jobs: dict[str, Any] = {}
    expected: dict[str, Expected] = {}
    deps = []
    for i in range(4):
        slow = Job(command=[python, "-c", f"import sys, time; time.sleep({seconds}); sys.exit({i})"], name=f"slow{i}",
                   stdout_file=str(workdir / "out" / f"slow{i}.out"), stderr_file=str(workdir / "out" / f"slow{i}.err"))
        after = Job(command=[python, "-c", "pass"], name=f"after{i}",
                    stdout_file=str(workdir / "out" / f"after{i}.out"), stderr_file=str(workdir / "out" / f"after{i}.err"))
        jobs[slow.name], jobs[after.name] = slow, after
        expected[slow.name] = Expected(slow.name, (C.DONE, C.FINISHED_REGULARLY, i, None))
        expected[after.name] = Expected(after.name, (C.DONE, C.FINISHED_REGULARLY, 0, None) if i == 0
                                        else (C.FAILED, C.EXIT_NOTRUN, None, None))
        deps.append((slow, after))
    return Workflow(jobs=list(jobs.values()), dependencies=deps, name="soma_schedulers restart"), expected, jobs


def _engine_pids(resource: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"soma_workflow.start_workflow_engine" in argv and resource.encode() in argv:
                pids.append(int(entry.name))
    return pids


def run_restart(controller: Any, make_controller: Any, resource: str, workflow: Any,
                timeout: float = 600.0) -> tuple[Any, int, dict[str, int]]:
    """Submit ``workflow``; once its 4 slow jobs run, SIGKILL the engine process, connect again (a new
    engine), ``restart_workflow``, wait for the end. Returns the new controller, the workflow id, the ids."""
    wf_id = controller.submit_workflow(workflow)
    ids = _engine_ids(controller, wf_id)
    deadline = time.monotonic() + timeout
    while any(controller.job_status(ids[f"slow{i}"]) != C.RUNNING for i in range(4)):
        if time.monotonic() > deadline:
            raise AssertionError("the slow jobs never ran")
        time.sleep(0.5)
    pids = _engine_pids(resource)
    if not pids:
        raise AssertionError(f"no engine process for resource {resource}")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    controller = make_controller()
    controller.restart_workflow(wf_id, None)
    controller.wait_workflow(wf_id, timeout=timeout)
    return controller, wf_id, ids


def _make_controller(args: argparse.Namespace) -> Any:
    from soma_workflow.client import WorkflowController
    from soma_workflow.configuration import LIGHT_MODE, Configuration

    if args.light:
        d = args.workdir / "swf"
        d.mkdir(parents=True, exist_ok=True)
        config = Configuration("e2e-light", LIGHT_MODE, args.light, str(d / "db.sqlite"), str(d / "transfers"))
        return WorkflowController("e2e-light", config=config)
    return WorkflowController(args.resource, config=Configuration.load_from_file(args.resource))


def launch(workdir: Path, *, light: str | None = None, section: str | None = None, resource: str = "",
           python: str | None = None, restart: bool = False, timeout: float = 900.0) -> dict[str, Any]:
    """Run :func:`main` in a new process with a private HOME, TMPDIR and configuration file (holding
    ``section`` for ``resource``), clean up as Soma-Workflow does, kill what is left; returns the
    driver's JSON plus ``leftovers`` (what had to be killed) and ``output`` (the process's output)."""
    import subprocess
    import uuid

    from .somaworkflow_suite import clean_up, private_environment

    token = uuid.uuid4().hex[:10]
    tmp = workdir / f"sw-{token}"
    tmp.mkdir(parents=True)
    config = None
    if section is not None:
        config = tmp / "soma-workflow.cfg"
        config.write_text(section)
    env = private_environment(tmp, token, config)
    argv = [sys.executable, "-m", __name__, "--workdir", str(workdir), "--timeout", str(timeout),
            *(["--python", python] if python else []),
            *(["--light", light] if light else ["--resource", resource]), *(["--restart"] if restart else [])]
    try:
        # umask 0: Soma-Workflow's engine creates a job's stdout file itself (add_workflow checks that
        # the directory is writable), and the jobs may run as another user (a cluster's alice).
        done = subprocess.run(argv, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout + 120,
                              stdin=subprocess.DEVNULL, umask=0)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"timed out: {exc}"
    finally:
        leftovers = clean_up(resource, env, token) if resource else []
        from .somaworkflow_suite import kill_leftovers

        leftovers += kill_leftovers(token)
    lines = [line for line in output.splitlines() if line.startswith('{"problems"')]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {"problems": ["the driver printed no result"]}
    result.update(leftovers=leftovers, output=output)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soma_schedulers.testing.somaworkflow_e2e")
    parser.add_argument("--workdir", type=Path, required=True, help="job files (seen at the same path by the jobs)")
    parser.add_argument("--python", default=sys.executable, help="Python as the jobs see it")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--light", metavar="TYPE", help="light mode on scheduler type TYPE")
    mode.add_argument("--resource", metavar="ID", help="a resource of $SOMA_WORKFLOW_CONFIG")
    parser.add_argument("--restart", action="store_true", help="the engine-restart scenario (--resource only)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    controller = _make_controller(args)
    t0 = time.monotonic()
    if args.restart:
        workflow, expected, _ = build_restart(args.workdir, args.python)
        controller, wf_id, ids = run_restart(controller, lambda: _make_controller(args), args.resource, workflow,
                                             args.timeout)
    else:
        workflow, expected, _ = build(args.workdir, args.python)
        wf_id, ids = run(controller, workflow, args.timeout)
    seconds = time.monotonic() - t0
    problems = check(controller, wf_id, ids, expected, args.workdir, files=not args.restart)
    drms = {info[0]: info[5] for info in controller.workflow_elements_status(wf_id)[0]}
    print(json.dumps({"problems": problems, "seconds": round(seconds, 1), "jobs": len(expected),
                      "drms_ids": {name: drms.get(i) for name, i in ids.items()}}), flush=True)
    if args.light:
        controller.stop_engine()
    os._exit(0)  # Soma-Workflow's threads would keep the process


if __name__ == "__main__":
    sys.exit(main())
