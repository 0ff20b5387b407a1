#!/bin/bash
# Entrypoint of the soma_schedulers Torque test image.
#
# TORQUE_ROLE:
#   all     trqauthd + pbs_server + pbs_sched + pbs_mom in one container (the node is this host)
#   server  trqauthd + pbs_server + pbs_sched; the nodes are $TORQUE_NODES (MOM containers)
#   mom     trqauthd + pbs_mom, reporting to $TORQUE_SERVER_HOST
# Other variables:
#   TORQUE_SERVER_HOST  server hostname (mom role; default "torqueserver")
#   TORQUE_NODES        MOM hostnames: the server creates and waits for them (server role; default
#                       "c1 c2"); MOMs trust them ($pbsclient) for multi-node jobs
#   TORQUE_NP           np declared per node (default 16: more jobs than cores run at once)
#   TORQUE_READY_TIMEOUT  seconds before giving up (default 180)
#   TORQUE_PROLOGALARM  the MOM's $prologalarm (default 30; Torque's is 300): also how long the
#                       MOM waits before sending again the obit of a job whose end it lost (README)
#
# Configuration is written for $(hostname -s) at every start. The first start (no serverdb)
# runs `pbs_server -t create` and the qmgr set-up (queue batch, keep_completed so finished jobs
# stay visible as C, nodes created through qmgr: -t create deletes server_priv/nodes). MOM
# poll times are short ($check_poll_time enforces walltime and samples resources_used).
# The server/all roles print exactly one line "SOMA-SCHEDULERS-READY torque" once every node is
# free; MOM containers print "SOMA-SCHEDULERS-COMPUTE-STARTED torque <host>". SIGTERM/SIGINT stop
# the daemons cleanly (qterm, SIGTERM to pbs_mom). Extra arguments are run as a command after start-up.
set -u

TORQUE_HOME=/var/spool/torque
SOMA_POLL=0.2
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh
soma_entrypoint torque TORQUE "all server mom" 180 "$TORQUE_HOME/*_logs/*"

stop_daemons() {
    if [ "$ROLE" != mom ]; then
        qterm -t quick >/dev/null 2>&1
        pkill -x pbs_sched
    fi
    if [ "$ROLE" != server ]; then
        # SIGTERM (stop_me) rather than momctl -s, which blocks when the server is already gone.
        pkill -TERM -x pbs_mom
    fi
    wait_gone 5 "pbs_server|pbs_mom|pbs_sched" || pkill -9 -x "pbs_server|pbs_mom|pbs_sched"
    pkill -x trqauthd
}

case "$ROLE" in
    all|server) SERVER=$HOST ;;
    mom)        SERVER=${TORQUE_SERVER_HOST:-torqueserver} ;;
esac

echo "$SERVER" > "$TORQUE_HOME/server_name"
cat > "$TORQUE_HOME/mom_priv/config" <<EOF
\$pbsserver $SERVER
\$logevent 255
\$status_update_time 2
\$check_poll_time 2
\$usecp *:/ /
\$prologalarm ${TORQUE_PROLOGALARM:-30}
EOF
# Sister MOMs of a multi-node job must accept each other (the server's list may come too late).
for n in ${TORQUE_NODES:-}; do echo "\$pbsclient $n" >> "$TORQUE_HOME/mom_priv/config"; done

trqauthd >/var/log/trqauthd.log 2>&1 || fail "trqauthd did not start: $(cat /var/log/trqauthd.log)"

if [ "$ROLE" != mom ]; then
    if [ -f "$TORQUE_HOME/server_priv/serverdb" ]; then
        pbs_server || fail "pbs_server did not start"
    else
        pbs_server -t create -f || fail "pbs_server -t create did not start"
        wait_for 60 qmgr -c "list server" || fail "pbs_server does not answer"
        qmgr >/dev/null <<EOF || fail "qmgr set-up"
set server operators += root@$HOST
set server managers += root@$HOST
create queue batch
set queue batch queue_type = execution
set queue batch started = true
set queue batch enabled = true
set queue batch resources_default.walltime = 1:00:00
set queue batch resources_default.nodes = 1
set server default_queue = batch
set server scheduling = true
set server keep_completed = 600
set server mom_job_sync = true
set server scheduler_iteration = 2
set server node_check_rate = 10
set server kill_delay = 2
EOF
        if [ "$ROLE" = all ]; then NODES=$HOST; else NODES=${TORQUE_NODES:-c1 c2}; fi
        for n in $NODES; do
            wait_for "$TIMEOUT" getent hosts "$n" || fail "node $n does not resolve"
            wait_for 30 qmgr -c "create node $n np=${TORQUE_NP:-16}" || fail "qmgr create node $n"
        done
    fi
    wait_for 60 qmgr -c "list server" || fail "pbs_server does not answer"
    pbs_sched || fail "pbs_sched did not start"
fi
if [ "$ROLE" != server ]; then
    [ "$ROLE" = mom ] && { wait_for "$TIMEOUT" bash -c "exec 3<>/dev/tcp/$SERVER/15001" || fail "pbs_server $SERVER:15001 unreachable"; }
    pbs_mom || fail "pbs_mom did not start"
fi

if [ "$ROLE" = mom ]; then
    started COMPUTE
else
    NODES=$(pbsnodes -a 2>/dev/null | grep -v '^ ' | grep -v '^$' | tr '\n' ' ')
    say "daemons started, waiting for node(s) free: $NODES"
    all_free() {
        local n
        for n in $NODES; do
            pbsnodes "$n" 2>/dev/null | grep -q '^ *state = free$' || return 1
        done
    }
    wait_for "$TIMEOUT" all_free || { pbsnodes -a; fail "nodes not free after $TIMEOUT s"; }
    ready "$(qstat --version 2>&1 | tr '\n' ' ')"
fi

serve "$@"
