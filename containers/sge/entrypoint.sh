#!/bin/bash
# Entrypoint of the soma_schedulers SGE (Son of Grid Engine 8.1.9) test image.
#
# SGE_ROLE:
#   all     sge_qmaster + sge_execd in one container, configured for $(hostname)
#   master  sge_qmaster alone; the exec hosts are $SGE_EXEC_HOSTS
#   exec    sge_execd joining the qmaster $SGE_MASTER
# Other variables:
#   SGE_EXEC_HOSTS     exec host names the master configures and waits for
#   SGE_MASTER         qmaster host name (exec; default "sgemaster")
#   SGE_SLOTS          slots of each queue instance (default 16)
#   SGE_READY_TIMEOUT  seconds before giving up (default 120)
#
# Prints exactly one line "SOMA-SCHEDULERS-READY sge" (roles all and master)
# once every exec host's queue instance accepts jobs; exec containers print
# "SOMA-SCHEDULERS-EXEC-STARTED sge <host>".  SIGTERM stops the daemons.
# Extra arguments are run as a command after start-up.
set -u

ROLE=${SGE_ROLE:-all}
HOST=$(uname -n)
SLOTS=${SGE_SLOTS:-16}
TIMEOUT=${SGE_READY_TIMEOUT:-120}
COMMON=$SGE_ROOT/$SGE_CELL/common
export EDITOR=/usr/local/bin/sge-edit
ulimit -n "${SGE_NOFILE:-4096}"
SOMA_NAME=sge
SOMA_LOGS="/var/spool/gridengine/qmaster/messages /var/spool/gridengine/execd/*/messages /tmp/*messages*"
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh

# q CMD...: run a configuration command quietly (qconf talks on stderr), fail with its output.
q() {
    local out
    out=$("$@" 2>&1) || fail "$*: $out"
}

# SGE resolves peers both ways: pin each peer's address in /etc/hosts so the
# reverse lookup gives the short name (Docker's DNS answers with the
# container name) and the name stays valid whatever the resolver does.
pin_host() {
    local name=$1 ip
    wait_for "$TIMEOUT" getent hosts "$name" || fail "host $name does not resolve"
    ip=$(getent hosts "$name" | awk '{print $1; exit}')
    grep -qE "^$ip[[:space:]]+$name\$" /etc/hosts || echo "$ip $name" >> /etc/hosts
}

stop_daemons() {
    case "$ROLE" in
        all|master)
            timeout 10 qconf -ke all >/dev/null 2>&1
            timeout 10 qconf -km >/dev/null 2>&1
            ;;
    esac
    pkill -TERM -x sge_execd 2>/dev/null
    wait_gone 5 'sge_qmaster|sge_execd'
}

# Queue instances of all.q: "total not-ok" (not ok: unknown, alarm, error, disabled).
queue_health() {
    qstat -f -q all.q 2>/dev/null | awk '/^all\.q@/ {n++; if (NF >= 6 && $6 ~ /[uaEdD]/) bad++} END {print n+0, bad+0}'
}

start_qmaster() {
    echo "$HOST" > "$COMMON/act_qmaster"
    /usr/sbin/sge_qmaster || fail "sge_qmaster did not start"
    wait_for "$TIMEOUT" qconf -sh || fail "sge_qmaster does not answer"
}

configure_master() {   # $@: exec host names
    [ -e "$SGE_ROOT/.soma-configured" ] && return 0
    SGE_SED='s/^min_uid .*/min_uid 0/; s/^min_gid .*/min_gid 0/; s/^load_report_time .*/load_report_time 00:00:05/; s/flush_time=00:00:15/flush_time=00:00:01/' \
        q qconf -mconf
    SGE_SED='s/^schedule_interval .*/schedule_interval 0:0:1/; s/^flush_submit_sec .*/flush_submit_sec 1/; s/^flush_finish_sec .*/flush_finish_sec 1/' \
        q qconf -msconf
    local h
    for h in "$HOST" "$@"; do
        qconf -ah "$h" >/dev/null 2>&1 || true
        qconf -as "$h" >/dev/null 2>&1 || true
    done
    for h in "$@"; do
        printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$h" > /tmp/eh
        q qconf -Ae /tmp/eh
    done
    # Two parallel environments for parallel_job_info: smp (one host), mpi (spread).
    local pe rule
    for pe in smp mpi; do
        rule='$pe_slots'; [ "$pe" = mpi ] && rule='$round_robin'
        printf 'pe_name %s\nslots 9999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule %s\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' "$pe" "$rule" > /tmp/pe
        q qconf -Ap /tmp/pe
    done
    SGE_SED="s/^hostlist .*/hostlist $*/; s/^slots .*/slots $SLOTS/; s|^shell .*|shell /bin/bash|; s/^pe_list .*/pe_list smp mpi/; s/^load_thresholds .*/load_thresholds NONE/" \
        q qconf -aq all.q
    touch "$SGE_ROOT/.soma-configured"
}

queues_ok() { [ "$(queue_health)" = "$1 0" ]; }

wait_queues() {   # $1: expected queue instances
    SOMA_POLL=0.2 wait_for "$TIMEOUT" queues_ok "$1" \
        || { qstat -f; fail "queue instances not ready after ${TIMEOUT} s ($(queue_health))"; }
}

case "$ROLE" in
    all)
        start_qmaster
        configure_master "$HOST"
        /usr/sbin/sge_execd || fail "sge_execd did not start"
        wait_queues 1
        ;;
    master)
        read -r -a EXEC_HOSTS <<< "${SGE_EXEC_HOSTS:-}"
        [ "${#EXEC_HOSTS[@]}" -gt 0 ] || fail "SGE_ROLE=master needs SGE_EXEC_HOSTS"
        for h in "${EXEC_HOSTS[@]}"; do pin_host "$h"; done
        start_qmaster
        configure_master "${EXEC_HOSTS[@]}"
        say "qmaster configured, waiting for ${#EXEC_HOSTS[@]} execd(s)"
        wait_queues "${#EXEC_HOSTS[@]}"
        ;;
    exec)
        MASTER=${SGE_MASTER:-sgemaster}
        pin_host "$MASTER"
        echo "$MASTER" > "$COMMON/act_qmaster"
        # The qmaster makes this host an exec (and admin) host once it resolves us.
        wait_for "$TIMEOUT" qconf -se "$HOST" || fail "qmaster $MASTER did not add exec host $HOST"
        /usr/sbin/sge_execd || fail "sge_execd did not start"
        started EXEC
        ;;
    *)
        fail "unknown SGE_ROLE=$ROLE (all, master, exec)"
        ;;
esac
[ "$ROLE" = exec ] || ready "$(qstat -f -q all.q | awk '/^all\.q@/ {printf "%s ", $1}')"

serve "$@"
