"""Out-of-container bridge: what one poll costs direct, over ssh, and over a reused ssh connection.

One run of the bridge lab (``soma_schedulers.testing.bridge``) per DRMS: 20
held jobs (10 on Torque, whose poll names at most 10 ids), then the backend's
poll command (Slurm ``squeue -h -t all -j IDS -o ...``, OpenPBS ``qstat -x -f
-F json -E IDS``, Torque ``qstat -f IDS``) run through :class:`CommandRunner`,
timed per call:

* direct: inside the host container (the client commands are there);
* ssh, a new connection per call (``BRIDGE_SSH_REUSE = no``), from the engine;
* ssh, one kept connection (ControlMaster) and a new ssh process and session
  per call (what reuse gives without the remote shells);
* ssh, the default: the kept connection and long-lived remote shells.

The three are measured in alternating rounds, so load changes hit them alike.

    python benchmarks/bench_bridge.py [--calls 30] [--rounds 3] [--drms slurm openpbs torque]

OpenPBS and Torque are measured where their images can be built (their sources, see
containers/*/upstream.env); otherwise a line says they were skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from soma_schedulers.testing import docker_harness as dh
from soma_schedulers.testing.bridge import BridgeLab, start_lab

#: DRMS -> (held jobs, shell line submitting one held job and printing its id, the poll's argv from the ids)
POLLS = {
    "slurm": (20, "sbatch --parsable --hold -o /dev/null --wrap true",
              lambda ids: ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%S|%k"]),
    "openpbs": (20, "echo true | qsub -h -o /dev/null -e /dev/null",
                lambda ids: ["qstat", "-x", "-f", "-F", "json", "-E", *ids]),
    "torque": (10, "echo true | qsub -h -o /dev/null -e /dev/null", lambda ids: ["qstat", "-f", *ids]),
}

# Runs in a container: time `calls` runs of ARGV through a CommandRunner (after one warm-up call).
TIMER = r"""
import json, shlex, subprocess, sys, time
from soma_schedulers import BridgeConfig
from soma_schedulers.runner import CommandRunner
argv, calls, mode = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bridge = BridgeConfig(mode="none") if mode == "direct" else BridgeConfig(mode="ssh", host="localhost",
                                                                         reuse=mode != "noreuse")
runner = CommandRunner(bridge, timeout=60, retries=0)
run = lambda: runner.run(argv)
if mode == "mux":  # one ssh process and session per call over the kept connection (no remote shell)
    # a login shell, as the runner's (the host's profile gives OpenPBS's PATH)
    line = "exec /bin/sh -lc " + shlex.quote(shlex.join(argv))
    run = lambda: subprocess.run([*runner.prefix, line], stdin=subprocess.DEVNULL, capture_output=True, check=True)
runner.run(argv)
times = []
for _ in range(calls):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
runner.close()
print(json.dumps(times))
"""

MODES = {
    "direct": "direct (in the host container)",
    "noreuse": "ssh, new connection per call",
    "mux": "ssh, kept connection, new session per call",
    "reuse": "ssh, reused connection and remote shell (the default)",
}


def measure(lab: BridgeLab, drms: str, calls: int, rounds: int) -> dict[str, list[float]]:
    """Per-call seconds of the DRMS's poll on each path, in alternating rounds."""
    n, submit, poll = POLLS[drms]
    rc, out = lab.cluster.exec(["sh", "-c", f"for i in $(seq {n}); do {submit}; done"], user="alice")
    ids = out.split()
    assert rc == 0 and len(ids) == n, out
    argv = poll(ids)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            cmd = ["python3", "-c", TIMER, json.dumps(argv), str(calls), mode]
            if mode == "direct":
                rc, out = lab.cluster.exec(["env", "PYTHONPATH=/src", *cmd], user="alice")
            else:
                rc, out = lab.exec("auto", cmd)
            assert rc == 0, out
            times[mode] += json.loads(out.strip().splitlines()[-1])
    return times


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=30, help="timed calls per mode and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drms", nargs="+", choices=list(POLLS), default=list(POLLS))
    a = p.parse_args()
    for drms in a.drms:
        try:
            lab = start_lab(drms, log=lambda s: print(s, file=sys.stderr))
        except dh.SourceUnavailable as exc:
            print(f"\n{drms}: skipped, {str(exc).splitlines()[0]}")
            continue
        try:
            times = measure(lab, drms, a.calls, a.rounds)
        finally:
            lab.stop()
        direct = statistics.median(times["direct"])
        n, _, poll = POLLS[drms]
        print(f"\nOne {drms} poll (`{poll(['ID'])[0]}` of {n} jobs) through CommandRunner, "
              f"{a.rounds} x {a.calls} calls per path:\n")
        print("| path | median ms | p90 ms | vs direct |")
        print("|---|---|---|---|")
        for mode, label in MODES.items():
            t = sorted(times[mode])
            med, p90 = statistics.median(t), t[int(0.9 * (len(t) - 1))]
            print(f"| {label} | {med * 1e3:.1f} | {p90 * 1e3:.1f} | {med / direct:.2f}x |")
        ratio = statistics.median(times["reuse"]) / direct
        print(f"\n{drms}: reused ssh bridge / direct poll: {ratio:.2f}x "
              f"({'within' if ratio <= 2 else 'ABOVE'} the 2x budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
