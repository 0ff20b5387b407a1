#!/bin/bash
# Entrypoint of the soma_schedulers Slurm test image.
#
# SLURM_ROLE:
#   all         munge + MariaDB + slurmdbd + slurmctld + slurmd in one container
#   controller  munge + MariaDB + slurmdbd + slurmctld (configless server)
#   compute     munge + slurmd, a dynamic node fetching its config from
#               $SLURM_CONTROLLER (configless, `slurmd -Z`)
# Other variables:
#   SLURM_CONTROLLER      controller hostname (compute; default "slurmctl")
#   SLURM_EXPECTED_NODES  idle nodes the controller waits for (default 1)
#   SLURM_CPUS / SLURM_REALMEMORY  declared node size (default 16 / 8192 MB)
#   SLURM_READY_TIMEOUT   seconds before giving up (default 180)
#   SLURM_ACCOUNTING      0: no MariaDB/slurmdbd, sacct disabled (default 1)
#
# Prints exactly one line "SOMA-SCHEDULERS-READY slurm" (roles all and
# controller) once the expected nodes are idle and `sacct` answers; compute
# containers print "SOMA-SCHEDULERS-COMPUTE-STARTED slurm <host>".
# SIGTERM/SIGINT stop the daemons cleanly (scontrol shutdown, slurmdbd,
# MariaDB, munged).  Extra arguments are run as a command after start-up.
set -u
# shellcheck source=slurm-lib.sh
. /usr/local/lib/slurm-lib.sh

ROLE=${SLURM_ROLE:-all}
HOST=$(uname -n)
TIMEOUT=${SLURM_READY_TIMEOUT:-180}
cap_open_files 65536

stop_daemons() {
    case "$ROLE" in
        all|controller)
            scontrol shutdown >/dev/null 2>&1
            stop_pidfile /run/slurm/slurmctld.pid slurmctld 10
            [ "$ROLE" = all ] && stop_pidfile /run/slurm/slurmd.pid slurmd 10
            stop_pidfile /run/slurm/slurmdbd.pid slurmdbd 10
            stop_mariadb
            ;;
        compute)
            stop_pidfile /run/slurm/slurmd.pid slurmd 10
            ;;
    esac
    stop_munge
}

nodes_idle() { [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -ge "$1" ]; }

case "$ROLE" in
    all|controller)
        render_slurm_conf "$ROLE" "$HOST" "$HOST"
        start_munge || fail "munged"
        if [ "${SLURM_ACCOUNTING:-1}" != 0 ]; then
            start_mariadb || fail "mariadb"
            start_slurmdbd || fail "slurmdbd"
        fi
        /usr/sbin/slurmctld || fail "slurmctld did not start"
        if [ "$ROLE" = all ]; then
            /usr/sbin/slurmd || fail "slurmd did not start"
        fi
        want=${SLURM_EXPECTED_NODES:-1}
        [ "$ROLE" = controller ] || want=1
        say "daemons started, waiting for $want idle node(s)"
        wait_for "$TIMEOUT" nodes_idle "$want" || { sinfo -N; fail "nodes not idle after ${TIMEOUT} s"; }
        # slurmctld must be registered with slurmdbd and sacct must answer.
        if [ "${SLURM_ACCOUNTING:-1}" != 0 ]; then
            wait_for "$TIMEOUT" bash -c "sacctmgr -n -P list cluster format=cluster,controlhost | grep -q '^$CLUSTER_NAME|.\+'" \
                || fail "slurmctld not registered with slurmdbd"
            wait_for "$TIMEOUT" sacct -n -a -X -o jobid || fail "sacct does not answer"
        fi
        ready "$(sinfo -h -N -o '%N:%T' | sort -u | tr '\n' ' ')"
        ;;
    compute)
        CTL=${SLURM_CONTROLLER:-slurmctl}
        rm -f "$SLURM_CONF"
        start_munge || fail "munged"
        wait_for "$TIMEOUT" bash -c "exec 3<>/dev/tcp/$CTL/6817" || fail "controller $CTL:6817 unreachable"
        /usr/sbin/slurmd --conf-server "$CTL" -Z \
            --conf "CPUs=${SLURM_CPUS:-16} RealMemory=${SLURM_REALMEMORY:-8192}" || fail "slurmd did not start"
        started COMPUTE
        ;;
    *)
        fail "unknown SLURM_ROLE=$ROLE (all, controller, compute)"
        ;;
esac

serve "$@"
