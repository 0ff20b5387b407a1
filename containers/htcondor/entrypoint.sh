#!/bin/bash
# Entrypoint of the soma_schedulers HTCondor (Debian trixie 23.9) test image.
#
# HTCONDOR_ROLE:
#   all      a personal pool in one container (minicondor: collector, negotiator, schedd,
#            startd, on the loopback interface)
#   manager  central manager + submit node (collector, negotiator, schedd) on the container's
#            network; waits for $HTCONDOR_EXECUTE_NODES execute nodes
#   execute  a startd joining the central manager $HTCONDOR_MANAGER
# Other variables:
#   HTCONDOR_CPUS           slots of each execute node (default 8)
#   HTCONDOR_READY_TIMEOUT  seconds before giving up (default 120)
#
# Prints exactly one line "SOMA-SCHEDULERS-READY htcondor" (roles all and manager) once the
# expected slots are Unclaimed and condor_q answers as alice; execute containers print
# "SOMA-SCHEDULERS-EXECUTE-STARTED htcondor <host>". SIGTERM stops condor_master (fast
# shutdown: running jobs are killed). Extra arguments are run as a command after start-up.
set -u
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh
soma_entrypoint htcondor HTCONDOR "all manager execute" 120 "/var/log/condor/*Log"
cap_open_files 65536
ROLE_CONF=/etc/condor/config.d/50-soma-role.conf

stop_daemons() {
    local pid
    pid=$(pgrep -x condor_master) || return 0
    kill -QUIT "$pid" 2>/dev/null  # fast shutdown of the master and its daemons
    # An execute node whose manager is gone first (the harness stops the manager first) waits
    # for it in vain while invalidating its ads: give up after a few seconds.
    wait_gone 4 'condor_.*' || pkill -KILL -x 'condor_.*'
}

# network_conf: the settings of a pool spread over the docker network (roles manager and
# execute): the manager's name, every interface, host-based trust without authentication
# (a throw-away test network; the personal pool keeps minicondor's FS authentication).
network_conf() {
    rm -f /etc/condor/config.d/00-minicondor
    cat <<CONF
CONDOR_HOST = $1
BIND_ALL_INTERFACES = True
SEC_DEFAULT_AUTHENTICATION = OPTIONAL
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_CLIENT_AUTHENTICATION_METHODS = FS, CLAIMTOBE
SEC_DEFAULT_INTEGRITY = OPTIONAL
SEC_DEFAULT_ENCRYPTION = OPTIONAL
ALLOW_READ = *
ALLOW_WRITE = *
ALLOW_DAEMON = *
ALLOW_NEGOTIATOR = *
ALLOW_ADMINISTRATOR = *
ALLOW_OWNER = *
CONF
}

# machines_unclaimed N: N machines with an Unclaimed slot (HTCondor 23 makes one partitionable
# slot of all the CPUs: jobs get dynamic slots of their request_cpus).
machines_unclaimed() {
    [ "$(condor_status -constraint 'State == "Unclaimed"' -af Machine 2>/dev/null | sort -u | wc -l)" -ge "$1" ]
}
alice_q() { runuser -u alice -- condor_q -totals; }

CPUS=${HTCONDOR_CPUS:-8}
case "$ROLE" in
    all)
        echo "NUM_CPUS = $CPUS" > "$ROLE_CONF"
        ;;
    manager)
        { network_conf "$HOST"; echo 'use ROLE: CentralManager'; echo 'use ROLE: Submit'; } > "$ROLE_CONF"
        ;;
    execute)
        MANAGER=${HTCONDOR_MANAGER:-condormgr}
        wait_for "$TIMEOUT" getent hosts "$MANAGER" || fail "manager $MANAGER does not resolve"
        { network_conf "$MANAGER"; echo 'use ROLE: Execute'; echo "NUM_CPUS = $CPUS"; } > "$ROLE_CONF"
        ;;
esac
mkdir -p /run/condor /var/lock/condor /var/log/condor
chown condor:condor /run/condor /var/lock/condor /var/log/condor
/usr/sbin/condor_master || fail "condor_master did not start"

case "$ROLE" in
    all)
        wait_for "$TIMEOUT" machines_unclaimed 1 || { condor_status; fail "no Unclaimed slot after ${TIMEOUT} s"; }
        ;;
    manager)
        want=${HTCONDOR_EXECUTE_NODES:-1}
        say "daemons started, waiting for $want execute node(s)"
        wait_for "$TIMEOUT" machines_unclaimed "$want" \
            || { condor_status; fail "$want execute node(s) not Unclaimed after ${TIMEOUT} s"; }
        ;;
    execute)
        wait_for "$TIMEOUT" pgrep -x condor_startd || fail "condor_startd did not start"
        started EXECUTE
        ;;
esac
if [ "$ROLE" != execute ]; then
    wait_for "$TIMEOUT" alice_q || fail "condor_q does not answer as alice"
    ready "$(condor_status -af Name State Cpus | awk '{printf "%s:%s:%s cpus ", $1, $2, $3}')"
fi

serve "$@"
