#!/bin/bash
# Entrypoint of the soma_schedulers OpenMPI test image.
#
# MPI_ROLE:
#   controller  sshd; waits until every host of $MPI_HOSTS answers ssh as
#               alice and a trivial `mpirun` over all of them works, then
#               prints exactly one line "SOMA-SCHEDULERS-READY mpi"
#   node        sshd; prints "SOMA-SCHEDULERS-NODE-STARTED mpi <host>"
# Other variables:
#   MPI_HOSTS          comma-separated hostnames of the cluster, controller
#                      first (default: this host alone)
#   MPI_READY_TIMEOUT  seconds before giving up (default 120)
# SIGTERM/SIGINT stop sshd and exit 0.  Extra arguments are run as a command
# after start-up.
set -u
HOST=$(uname -n)
ROLE=${MPI_ROLE:-controller}
TIMEOUT=${MPI_READY_TIMEOUT:-120}
HOSTS=${MPI_HOSTS:-$HOST}
T0=$(date +%s.%N)
[ "$(ulimit -Sn)" = unlimited ] || [ "$(ulimit -Sn)" -le 65536 ] || ulimit -Sn 65536

say() { echo "[mpi $(date +%T.%3N)] $*"; }

shutdown() {
    trap '' TERM INT
    say "stopping ($ROLE)"
    rm -f /run/soma-ready
    [ -f /run/sshd.pid ] && kill "$(cat /run/sshd.pid)" 2>/dev/null
    say "stopped"
    exit 0
}
trap shutdown TERM INT

fail() {
    say "ERROR: $*"
    [ -s /var/log/sshd.log ] && { echo "---- /var/log/sshd.log"; tail -n 30 /var/log/sshd.log; }
    exit 1
}

wait_for() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep 0.1
    done
}

mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log || fail "sshd did not start"

case "$ROLE" in
    controller)
        IFS=, read -r -a hosts <<< "$HOSTS"
        for h in "${hosts[@]}"; do
            wait_for "$TIMEOUT" runuser -u alice -- ssh -o ControlMaster=no "$h" true \
                || fail "ssh alice@$h does not answer"
        done
        out=$(runuser -u alice -- timeout "$TIMEOUT" mpirun -np "${#hosts[@]}" -H "$HOSTS" hostname 2>&1) \
            || fail "mpirun over $HOSTS failed: $out"
        say "ready after $(echo "$(date +%s.%N) - $T0" | awk '{printf "%.1f", $1 - $3}') s: ranks on $(echo "$out" | sort | tr '\n' ' ')"
        touch /run/soma-ready
        echo "SOMA-SCHEDULERS-READY mpi"
        ;;
    node)
        touch /run/soma-ready
        echo "SOMA-SCHEDULERS-NODE-STARTED mpi $HOST"
        ;;
    *)
        fail "unknown MPI_ROLE=$ROLE (controller, node)"
        ;;
esac

if [ $# -gt 0 ]; then
    "$@" &
    wait $!
    shutdown
fi
while true; do
    sleep infinity &
    wait $!
done
