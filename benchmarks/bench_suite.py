"""The conformance suite's wall time per target, warm images, before and after, in one run.

Backend authors run the suite many times a day; the goal is every Debian-built target's full
suite in at most 30 s warm on a 2-core machine. This runs, for each target, the command a user
runs for each version of the code, alternating the versions, and times the whole command
(cluster start and stop included) next to pytest's own figure (its final ``... in X s`` line):

* **after**: this checkout, with the Python running this script (its venv must import
  ``soma_schedulers`` from this checkout): ``python -m soma_schedulers conformance
  --scheduler local_basic`` / ``--drms X`` (the CLI's default workers: 1 locally, 4 on a DRMS);
* **before**: git revision ``--before`` (default ``4e24e57``, the last commit before the
  speed-up work), exported with ``git archive`` into a temporary directory (removed at the end)
  and installed editable into a venv cached in ``~/.cache/soma-bench-suite/<commit>/venv``
  (``$XDG_CACHE_HOME`` is honoured), so reruns only re-point it: ``pytest
  tests/test_conformance.py --scheduler local_basic`` / ``--drms X`` as that version's README
  says (its CLI had no worker default), with ``-q -p no:cacheprovider``;
* in-container targets (``sge``, ``sge-cluster``, ``mpi``), both versions:
  ``python -m soma_schedulers.testing.incontainer X``.

Every child runs with ``SOMA_SCHEDULERS_SKIP_BUILD=1`` (unless set otherwise): the images are
used as they are, never built, so both versions run on the same (the current) images. Each
image is started once (``docker run --rm IMAGE true``) before the timed runs, so neither
version pays a cold page cache.

The versions alternate: before then after for the first target, after then before for the
next, and so on, the order flipping again each round, to spread drift and order effects; with ``--rounds N`` the table
shows medians. A run that fails (non-zero exit, no pytest summary line, or ``--timeout``) is
reported as failed, never dropped; its last lines go to stderr. Every run's full output is in
``benchmarks/results/suite_logs/<target>.<version>.r<round>.log``.

The Markdown table goes to stdout and ``benchmarks/results/suite_times.md``, followed by one
line per target: ``suite <target>: before <t> s, after <t> s, <r>x faster`` (``slower`` when
it is); the load average (``uptime``) at the start and the end is in the header. Progress goes
to stderr. Exit code: 0, or 1 when a run failed, 2 when the setup failed.

    python benchmarks/bench_suite.py [--targets local,slurm,...] [--before REV] [--rounds N]
                                     [--skip-before] [--quick] [--timeout S]

``--quick`` is ``--targets local,slurm``. Targets (default all): local, slurm, slurm-24.11,
slurm-cluster, slurm-noacct, sge, sge-cluster, mpi.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
LOGS = RESULTS / "suite_logs"
TABLE = RESULTS / "suite_times.md"

#: Targets in table order: "local" is the local backend, the others the DRMS clusters.
HOST_TARGETS = ["local", "slurm", "slurm-24.11", "slurm-cluster", "slurm-noacct"]
IN_CONTAINER = ["sge", "sge-cluster", "mpi"]
TARGETS = HOST_TARGETS + IN_CONTAINER
QUICK_TARGETS = ["local", "slurm"]
DEFAULT_BEFORE = "4e24e57"
#: The issue's goal: each target's full suite, warm, within this many seconds of wall time.
GOAL_S = 30.0
SKIP_BUILD_ENV = "SOMA_SCHEDULERS_SKIP_BUILD"
#: Lines of a failed run's output shown on stderr.
TAIL = 25

Version = Literal["before", "after"]


def log(line: str) -> None:
    """Progress, on stderr (stdout is the Markdown)."""
    print(f"[bench_suite] {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands


def command(version: Version, target: str, python: Path) -> list[str]:
    """The command a user runs for ``target`` with ``version``'s code (``python``: its venv's)."""
    if target in IN_CONTAINER:
        return [str(python), "-m", "soma_schedulers.testing.incontainer", target]
    selector = ["--scheduler", "local_basic"] if target == "local" else ["--drms", target]
    if version == "after":
        return [str(python), "-m", "soma_schedulers", "conformance", *selector]
    pytest = python.parent / "pytest"
    return [str(pytest), "tests/test_conformance.py", *selector, "-q", "-p", "no:cacheprovider"]


def describe(version: Version) -> str:
    """The commands of ``version``, for the output's header."""
    if version == "after":
        return ("`python -m soma_schedulers conformance --scheduler local_basic | --drms X`, "
                "`python -m soma_schedulers.testing.incontainer X`")
    return ("`pytest tests/test_conformance.py --scheduler local_basic | --drms X -q -p no:cacheprovider`, "
            "`python -m soma_schedulers.testing.incontainer X`")


# --------------------------------------------------------------------------- the "before" checkout


def git(*args: str, cwd: Path = REPO) -> str:
    """``git ARGS`` in ``cwd``; its stdout, stripped (raises on failure)."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def cache_root() -> Path:
    """Where the "before" venvs are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "soma-bench-suite"


def pip(python: Path, *args: str) -> None:
    """``python -m pip ARGS`` quietly; raises with pip's last lines when it fails."""
    proc = subprocess.run([str(python), "-m", "pip", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{tail}")


@contextlib.contextmanager
def before_checkout(rev: str) -> Iterator[tuple[str, Path, Path]]:
    """Revision ``rev`` exported to a temporary directory and installed in its cached venv.

    Yields ``(commit, source directory, venv python)``; the directory is removed on exit. The
    venv is created once per commit (``pip install -e '.[test]'``, plus setuptools so later runs
    can re-point the editable install at a new directory without a build environment), and locked
    for the whole run: another run of this script waits rather than re-point it under us.
    """
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    cache = cache_root() / commit[:12]
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / "venv"
    python = venv / "bin" / "python"
    ready = cache / "ready"
    with open(cache / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another bench_suite run using {venv} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        src = Path(tempfile.mkdtemp(prefix=f"soma-bench-before-{commit[:8]}-"))
        try:
            # The containers read it as their own user (incontainer mounts it at /src).
            src.chmod(0o755)
            archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True, capture_output=True)
            t0 = time.monotonic()
            if ready.is_file() and python.exists():
                pip(python, "install", "--no-deps", "--no-build-isolation", "-e", str(src))
                log(f"before: {commit[:12]} in {src}, cached venv {venv} re-pointed "
                    f"({time.monotonic() - t0:.0f} s)")
            else:
                ready.unlink(missing_ok=True)
                shutil.rmtree(venv, ignore_errors=True)
                log(f"before: creating the venv of {commit[:12]} in {venv} (once per commit) ...")
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                pip(python, "install", "setuptools>=64", "wheel")
                pip(python, "install", "-e", f"{src}[test]")
                ready.write_text(f"{commit}\n")
                log(f"before: venv ready ({time.monotonic() - t0:.0f} s)")
            where = subprocess.run([str(python), "-c", "import soma_schedulers; print(soma_schedulers.__file__)"],
                                   capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
            if not Path(where).resolve().is_relative_to(src.resolve()):
                raise RuntimeError(f"the before venv imports soma_schedulers from {where}, not {src}")
            # Bytecode now, as the after checkout has it, so the first before run does not compile.
            subprocess.run([str(python), "-m", "compileall", "-q", str(src / "soma_schedulers"), str(src / "tests")],
                           check=False, capture_output=True)
            yield commit, src, python
        finally:
            shutil.rmtree(src, ignore_errors=True)


def after_python() -> Path:
    """This Python, checked to import ``soma_schedulers`` from this checkout."""
    proc = subprocess.run([sys.executable, "-c", "import soma_schedulers; print(soma_schedulers.__file__)"],
                          capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    where = proc.stdout.strip()
    if proc.returncode or not Path(where).resolve().is_relative_to(REPO):
        raise RuntimeError(f"{sys.executable} imports soma_schedulers from {where or '(nowhere)'}, not from {REPO}: "
                           f"run this with the checkout's venv (pip install -e '.[test]')")
    return Path(sys.executable)


def after_revision() -> str:
    """HEAD's short commit, ``+changes`` when tracked files outside ``benchmarks/`` (the measured
    code) have uncommitted changes."""
    head = git("rev-parse", "--short=7", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks")
    return head + ("+changes" if dirty else "")


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One timed command."""

    target: str
    version: Version
    round: int
    log: Path
    rc: int | None = None  # None: killed at the timeout
    wall: float = 0.0
    pytest_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    skipped_target: str = ""  # the harness's "SKIPPED: ..." line (image source missing)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and (self.pytest_s is not None or bool(self.skipped_target))

    @property
    def failure(self) -> str:
        """Why the run failed: ``timeout``, ``exit N``, or ``no pytest summary line`` (exit 0)."""
        if self.rc is None:
            return "timeout"
        return f"exit {self.rc}" if self.rc else "no pytest summary line"


#: pytest's final line: "34 passed, 2 skipped in 4.18s" (-q), "=== 1 failed, 35 passed in 99.01s (0:01:39) ===".
SUMMARY = re.compile(r"^[=\s]*((?:\d+ [a-z]+(?:, )?)+) in (\d+(?:\.\d+)?)s\b")
#: Colour codes (pytest colours its output under ``mpirun``, which gives it a terminal).
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected|warnings?)\b")


def parse(output: str) -> tuple[float | None, dict[str, int], str]:
    """pytest's reported seconds and counts (from its last summary line), and a SKIPPED line."""
    seconds: float | None = None
    counts: dict[str, int] = {}
    skipped = ""
    for line in ANSI.sub("", output).splitlines():
        m = SUMMARY.match(line.strip())
        if m:
            seconds = float(m.group(2))
            counts = {("error" if k.startswith("error") else k): int(n) for n, k in COUNT.findall(m.group(1))}
        if line.startswith("SKIPPED: "):
            skipped = line.strip()
    return seconds, counts, skipped


def stop_group(proc: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    """Interrupt the process group we started (pytest tears its clusters down), then kill it."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_one(target: str, version: Version, rnd: int, argv: list[str], cwd: Path, env: dict[str, str],
            timeout: float) -> Run:
    """Run ``argv``, output to its log file; wall time, exit code and pytest's summary."""
    run = Run(target, version, rnd, LOGS / f"{target}.{version}.r{rnd}.log")
    with open(run.log, "wb") as out:
        out.write(f"$ cd {cwd} && {' '.join(argv)}\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            run.rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            out.write(f"\n[bench_suite] killed after the {timeout:.0f} s timeout\n".encode())
        except BaseException:
            stop_group(proc, grace=30.0)
            raise
        run.wall = time.monotonic() - t0
    text = run.log.read_text(errors="replace")
    run.pytest_s, run.counts, run.skipped_target = parse(text)
    status = "ok" if run.ok else f"FAILED ({run.failure})"
    log(f"{target} {version} r{rnd}: {status}, {run.wall:.1f} s wall, "
        f"pytest {run.pytest_s if run.pytest_s is not None else '-'} s, {fmt_counts(run.counts)}")
    if not run.ok:
        for line in text.splitlines()[-TAIL:]:
            print(f"    | {line}", file=sys.stderr)
        log(f"full output: {run.log}")
    return run


def warm_images(targets: Sequence[str], env: dict[str, str]) -> None:
    """Start each image once (``docker run --rm IMAGE true``): page cache warm for both versions."""
    from soma_schedulers.testing import docker_harness as dh

    for image in dict.fromkeys(dh.CLUSTERS[t].image_tag for t in targets if t in dh.CLUSTERS):
        proc = subprocess.run(["docker", "run", "--rm", "--entrypoint", "true", image], env=env,
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            log(f"warm-up of {image} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")


# --------------------------------------------------------------------------- report


def fmt_counts(counts: dict[str, int]) -> str:
    """``34/0/2`` (passed/failed/skipped), with errors and others spelled out when there are."""
    if not counts:
        return "-"
    s = f"{counts.get('passed', 0)}/{counts.get('failed', 0)}/{counts.get('skipped', 0)}"
    extra = [f"{n} {k}" for k, n in counts.items() if k not in ("passed", "failed", "skipped", "warning", "warnings")]
    return s + (f" + {', '.join(extra)}" if extra else "")


@dataclass
class Cell:
    """One version of one target over the rounds: medians of the successful runs."""

    runs: list[Run]

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.ok and not r.skipped_target]

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]

    @property
    def wall(self) -> float | None:
        return statistics.median(r.wall for r in self.good) if self.good else None

    @property
    def pytest_s(self) -> float | None:
        times = [r.pytest_s for r in self.good if r.pytest_s is not None]
        return statistics.median(times) if times else None

    def times(self) -> str:
        if not self.runs:
            return "not run"
        skipped = next((r.skipped_target for r in self.runs if r.skipped_target), "")
        if skipped and not self.good and not self.failed:
            return f"skipped ({skipped.removeprefix('SKIPPED: ')})"
        parts = []
        if self.wall is not None:
            parts.append(f"{self.wall:.1f} / {self.pytest_s:.1f}" if self.pytest_s is not None else f"{self.wall:.1f} / -")
        if self.failed:
            what = ", ".join(f"r{r.round} {r.failure} after {r.wall:.0f} s" for r in self.failed)
            logs = ", ".join(f"`{r.log.relative_to(HERE)}`" for r in self.failed)
            parts.append(f"**FAILED** ({what}; {logs})")
        return " ".join(parts)

    def counts(self) -> str:
        shown = dict.fromkeys(fmt_counts(r.counts) for r in self.runs if r.counts)
        return " · ".join(shown) or "-"


def ratio_text(before: float | None, after: float | None) -> str:
    if before is None or after is None or after <= 0:
        return "-"
    r = before / after
    return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"


def uptime() -> str:
    """``uptime``'s line (the load averages), or ``os.getloadavg()`` without the command."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def other_containers() -> int:
    """Containers running now (others' too): what else shares the 2 cores."""
    proc = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, check=False)
    return len(proc.stdout.split()) if proc.returncode == 0 else -1


def report(targets: Sequence[str], runs: list[Run], before_rev: str | None, after_rev: str, rounds: int,
           load_start: str, load_end: str, containers_start: int, started: datetime.datetime) -> str:
    """The Markdown: header, one row per target, notes, one ``suite ...`` line per target."""
    title = (f"before (`{before_rev}`) and after (`{after_rev}`)" if before_rev
             else f"`{after_rev}` (before not run: --skip-before)")
    lines = [
        f"## Conformance suite wall time per target, {title}",
        "",
        f"{started:%Y-%m-%d %H:%M}, {os.cpu_count()} cores, warm images ({SKIP_BUILD_ENV}=1), "
        f"{rounds} round(s){' (medians)' if rounds > 1 else ''}, versions alternating per target and round.",
        "",
        f"- before: {describe('before')}" if before_rev else "- before: not run",
        f"- after: {describe('after')}",
        f"- load at start: `{load_start}` ({containers_start} container(s) running)",
        f"- load at end: `{load_end}`",
        "",
        "Times in seconds: wall (the whole command, cluster start and stop included) / pytest's own "
        "figure. Counts: passed/failed/skipped.",
        "",
        f"| target | before: wall / pytest s | after: wall / pytest s | before / after (wall) "
        f"| counts before | counts after | after ≤ {GOAL_S:.0f} s |",
        "|---|---|---|---|---|---|---|",
    ]
    finals = []
    for t in targets:
        before = Cell([r for r in runs if r.target == t and r.version == "before"])
        after = Cell([r for r in runs if r.target == t and r.version == "after"])
        goal = "-" if after.wall is None or after.failed else ("yes" if after.wall <= GOAL_S else "**no**")
        lines.append(f"| {t} | {before.times()} | {after.times()} | {ratio_text(before.wall, after.wall)} "
                     f"| {before.counts()} | {after.counts()} | {goal} |")

        def fin(c: Cell) -> str:
            if c.wall is not None and not c.failed:
                return f"{c.wall:.1f} s"
            return "not run" if not c.runs else ("FAILED" if c.failed else c.times())

        r = ratio_text(before.wall, after.wall) if not (before.failed or after.failed) else "no ratio"
        finals.append(f"suite {t}: before {fin(before)}, after {fin(after)}, {r}")
    return "\n".join([*lines, "", *finals, ""])


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=None,
                   help=f"comma-separated, in table order (default all: {','.join(TARGETS)})")
    p.add_argument("--quick", action="store_true", help=f"--targets {','.join(QUICK_TARGETS)}")
    p.add_argument("--before", default=DEFAULT_BEFORE, metavar="REV",
                   help=f"git revision of the 'before' code (default {DEFAULT_BEFORE})")
    p.add_argument("--skip-before", action="store_true", help="time this checkout only")
    p.add_argument("--rounds", type=int, default=1, help="runs per target and version; medians (default 1)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is killed (default 1800)")
    a = p.parse_args(argv)
    names = a.targets.split(",") if a.targets else (QUICK_TARGETS if a.quick else TARGETS)
    unknown = [t for t in names if t not in TARGETS]
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    a.targets = [t for t in TARGETS if t in names]
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    started = datetime.datetime.now()
    load_start, containers_start = uptime(), other_containers()
    log(f"start: {load_start}; {containers_start} container(s) running")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.setdefault(SKIP_BUILD_ENV, "1")
    try:
        python_after = after_python()
        after_rev = after_revision()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 2
    LOGS.mkdir(parents=True, exist_ok=True)
    for t in a.targets:
        for old in LOGS.glob(f"{t}.*.log"):
            old.unlink()
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        versions: dict[Version, tuple[Path, Path]] = {"after": (REPO, python_after)}
        before_rev = None
        if not a.skip_before:
            try:
                commit, src, python_before = stack.enter_context(before_checkout(a.before))
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                log(f"error: the before code ({a.before}): {exc}")
                return 2
            versions["before"] = (src, python_before)
            before_rev = commit[:7]
        warm_images(a.targets, env)
        for i, t in enumerate(a.targets):
            for rnd in range(1, a.rounds + 1):
                order: list[Version] = ["before", "after"] if (i + rnd) % 2 == 1 else ["after", "before"]
                for version in order:
                    if version not in versions:
                        continue
                    cwd, python = versions[version]
                    venv_env = dict(env, VIRTUAL_ENV=str(python.parent.parent),
                                    PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}")
                    log(f"{t} {version} r{rnd} ...")
                    runs.append(run_one(t, version, rnd, command(version, t, python), cwd, venv_env, a.timeout))
    load_end = uptime()
    log(f"end: {load_end}")
    text = report(a.targets, runs, before_rev, after_rev, a.rounds, load_start, load_end, containers_start, started)
    TABLE.write_text(text)
    print(text, end="")
    log(f"written to {TABLE}")
    failed = [f"{r.target} ({r.version} r{r.round})" for r in runs if not r.ok]
    if failed:
        log(f"failed runs: {', '.join(failed)}; the table is in {TABLE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
