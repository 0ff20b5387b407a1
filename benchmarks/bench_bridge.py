"""Out-of-container bridge: what one Slurm poll costs direct, over ssh, and over a reused ssh connection.

One run of the bridge lab (``soma_schedulers.testing.bridge``): 20 held jobs
in Slurm, then the Slurm backend's poll command (``squeue -h -t all -j IDS
-o ...``) run through :class:`CommandRunner`, timed per call:

* direct: inside the host container (the client commands are there);
* ssh, a new connection per call (``BRIDGE_SSH_REUSE = no``), from the engine;
* ssh, one kept connection (ControlMaster) and a new ssh process and session
  per call (what reuse gives without the remote shells);
* ssh, the default: the kept connection and long-lived remote shells.

The three are measured in alternating rounds, so load changes hit them alike.

    python benchmarks/bench_bridge.py [--calls 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from soma_schedulers.testing.bridge import start_lab

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
    run = lambda: subprocess.run([*runner.prefix, shlex.join(argv)], stdin=subprocess.DEVNULL,
                                 capture_output=True, check=True)
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


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=30, help="timed calls per mode and round")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    lab = start_lab("slurm", log=lambda s: print(s, file=sys.stderr))
    try:
        rc, out = lab.cluster.exec(["sh", "-c", "for i in $(seq 20); do sbatch --parsable --hold -o /dev/null "
                                    "--wrap true; done"], user="alice")
        ids = out.split()
        assert rc == 0 and len(ids) == 20, out
        argv = ["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r|%S|%k"]
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(a.rounds):
            for mode in MODES:
                cmd = ["python3", "-c", TIMER, json.dumps(argv), str(a.calls), mode]
                if mode == "direct":
                    rc, out = lab.cluster.exec(["env", "PYTHONPATH=/src", *cmd], user="alice")
                else:
                    rc, out = lab.exec("auto", cmd)
                assert rc == 0, out
                times[mode] += json.loads(out.strip().splitlines()[-1])
    finally:
        lab.stop()
    direct = statistics.median(times["direct"])
    print(f"\nOne Slurm poll (`squeue` of 20 jobs) through CommandRunner, {a.rounds} x {a.calls} calls per path:\n")
    print("| path | median ms | p90 ms | vs direct |")
    print("|---|---|---|---|")
    for mode, label in MODES.items():
        t = sorted(times[mode])
        med, p90 = statistics.median(t), t[int(0.9 * (len(t) - 1))]
        print(f"| {label} | {med * 1e3:.1f} | {p90 * 1e3:.1f} | {med / direct:.2f}x |")
    ratio = statistics.median(times["reuse"]) / direct
    print(f"\nreused ssh bridge / direct poll: {ratio:.2f}x ({'within' if ratio <= 2 else 'ABOVE'} the 2x budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
