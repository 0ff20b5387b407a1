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
SOMA_NAME=mpi
SOMA_LOGS=/var/log/sshd.log
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh
cap_open_files 65536

stop_daemons() { [ -f /run/sshd.pid ] && kill "$(cat /run/sshd.pid)" 2>/dev/null; }

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
        ready "ranks on $(echo "$out" | sort | tr '\n' ' ')"
        ;;
    node)
        started NODE
        ;;
    *)
        fail "unknown MPI_ROLE=$ROLE (controller, node)"
        ;;
esac

serve "$@"
