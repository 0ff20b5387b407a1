#!/bin/bash
# Entrypoint of the soma_schedulers OpenPBS test image.
#
# PBS_ROLE:
#   all     pbs_server + pbs_sched + pbs_comm + pbs_mom in one container (the node is this host)
#   server  pbs_server + pbs_sched + pbs_comm; the nodes are $PBS_NODES (MOM containers)
#   mom     pbs_mom only, reporting to $PBS_SERVER_HOST
# Other variables:
#   PBS_SERVER_HOST  server hostname (mom role; default "pbsserver")
#   PBS_NODES        MOM hostnames the server creates and waits for (server role; default "c1 c2")
#   PBS_NCPUS        ncpus declared per node (default 16: more jobs than cores run at once)
#   PBS_READY_TIMEOUT  seconds before giving up (default 180)
#
# Host-specific configuration (/etc/pbs.conf, mom_priv/config) is rewritten at every start for
# $(hostname -s): pbs_postinstall wrote the build container's name. The first start creates the
# PostgreSQL datastore (pbs_habitat). Job history is enabled. The server/all roles print exactly
# one line "SOMA-SCHEDULERS-READY openpbs" once every node is free; MOM containers print
# "SOMA-SCHEDULERS-COMPUTE-STARTED openpbs <host>". SIGTERM/SIGINT stop PBS cleanly
# (/etc/init.d/pbs stop): killing PostgreSQL resets the job-id counter.
# Extra arguments are run as a command after start-up.
set -u

PBS_HOME=/var/spool/pbs
SOMA_POLL=0.2
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh
soma_entrypoint openpbs PBS "all server mom" 180 "$PBS_HOME/*_logs/*"

stop_daemons() { /etc/init.d/pbs stop >/dev/null 2>&1; }

case "$ROLE" in
    all)    SERVER=$HOST; START_SERVER=1; START_MOM=1 ;;
    server) SERVER=$HOST; START_SERVER=1; START_MOM=0 ;;
    mom)    SERVER=${PBS_SERVER_HOST:-pbsserver}; START_SERVER=0; START_MOM=1 ;;
esac

cat > /etc/pbs.conf <<EOF
PBS_EXEC=/opt/pbs
PBS_SERVER=$SERVER
PBS_START_SERVER=$START_SERVER
PBS_START_SCHED=$START_SERVER
PBS_START_COMM=$START_SERVER
PBS_START_MOM=$START_MOM
PBS_HOME=$PBS_HOME
PBS_CORE_LIMIT=unlimited
EOF
[ "$ROLE" = mom ] && echo "PBS_LEAF_ROUTERS=$SERVER" >> /etc/pbs.conf
mkdir -p "$PBS_HOME/mom_priv"
# Output is delivered with cp (no scp/rsh in the image); $clienthost: who may talk to the MOM.
printf '$clienthost %s\n$usecp *:/ /\n$logevent 0x1ff\n' "$SERVER" > "$PBS_HOME/mom_priv/config"

if [ "$ROLE" = mom ]; then
    wait_for "$TIMEOUT" bash -c "exec 3<>/dev/tcp/$SERVER/17001" || fail "pbs_comm on $SERVER:17001 unreachable"
fi
/etc/init.d/pbs start > /var/log/pbs-start.log 2>&1 || { cat /var/log/pbs-start.log; fail "/etc/init.d/pbs start"; }

if [ "$ROLE" = mom ]; then
    started COMPUTE
else
    wait_for 60 qstat -B || fail "pbs_server does not answer"
    # '=' (not '+='): a restart would fail on a duplicate acl_roots entry.
    qmgr >/dev/null <<EOF || fail "qmgr server settings"
set server acl_roots = root
set server job_history_enable = True
set server scheduler_iteration = 2
set server flatuid = True
EOF
    if [ "$ROLE" = all ]; then
        NODES=$HOST
    else
        NODES=${PBS_NODES:-c1 c2}
    fi
    for n in $NODES; do
        # pbs_habitat creates the local node (all role); MOM containers are created here, once
        # their name resolves.
        if ! pbsnodes -v "$n" >/dev/null 2>&1; then
            wait_for "$TIMEOUT" getent hosts "$n" || fail "node $n does not resolve"
            wait_for 30 qmgr -c "create node $n" || fail "qmgr create node $n"
        fi
        qmgr -c "set node $n resources_available.ncpus = ${PBS_NCPUS:-16}" >/dev/null || fail "qmgr set node $n"
    done
    say "daemons started, waiting for node(s) free: $NODES"
    all_free() {
        local n
        for n in $NODES; do
            pbsnodes -v "$n" 2>/dev/null | grep -q '^ *state = free$' || return 1
        done
    }
    wait_for "$TIMEOUT" all_free || { pbsnodes -a; fail "nodes not free after $TIMEOUT s"; }
    ready "$(qstat --version)"
fi

serve "$@"
