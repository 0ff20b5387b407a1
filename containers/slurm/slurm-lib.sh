# Shell functions shared by entrypoint.sh and the image build (bash), on top of the
# images' common library (say, wait_for, fail, ready, serve: ../common/soma-lib.sh).
# shellcheck shell=bash

SLURM_CONF=/etc/slurm/slurm.conf
CLUSTER_NAME=soma
SOMA_NAME=slurm
SOMA_LOGS="/var/log/slurm/*.log /var/log/mariadb.log"
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh

# render_slurm_conf ROLE HOST CONTROLLER
render_slurm_conf() {
    local role=$1 host=$2 ctl=$3
    sed -e "s/@CONTROLLER@/$ctl/g" /etc/slurm/slurm.conf.in > "$SLURM_CONF"
    if [ "${SLURM_ACCOUNTING:-1}" = 0 ]; then
        # No slurmdbd: sacct answers "accounting storage is disabled".
        sed -i -e 's|^AccountingStorageType=.*|AccountingStorageType=accounting_storage/none|' \
               -e '/^AccountingStorageHost=/d' "$SLURM_CONF"
    fi
    if [ "$role" = all ]; then
        echo "NodeName=$host CPUs=${SLURM_CPUS:-16} RealMemory=${SLURM_REALMEMORY:-8192} State=UNKNOWN" >> "$SLURM_CONF"
    fi
    # debug: every test's partition (never preempted: nothing outranks it but "high", which
    # only the preemption test uses); low/high: the preemption test's (README.md, "Life events").
    cat >> "$SLURM_CONF" <<'EOF'
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=low Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=high Nodes=ALL MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
    chmod 644 "$SLURM_CONF"
}

start_munge() {
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 bash -c 'munge -n | unmunge' || { say "munged did not start"; return 1; }
}

stop_munge() {
    local pid
    pid=$(cat /run/munge/munged.pid 2>/dev/null) || pid=$(pgrep -x munged)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
    wait_pid_gone 5 "$pid"
}

start_mariadb() {
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    /usr/sbin/mariadbd --user=mysql >/var/log/mariadb.log 2>&1 &
    wait_for 60 mariadb-admin ping || { say "mariadb did not start"; tail -20 /var/log/mariadb.log; return 1; }
}

stop_mariadb() {
    mariadb-admin shutdown >/dev/null 2>&1 || pkill -x mariadbd
    wait_for 20 bash -c '! pgrep -x mariadbd'
}

start_slurmdbd() {
    /usr/sbin/slurmdbd
    wait_for 60 sacctmgr -n list cluster || { say "slurmdbd did not answer"; tail -20 /var/log/slurm/slurmdbd.log; return 1; }
}

# wait_pid_gone SECONDS PID
wait_pid_gone() {
    local limit=$1 pid=$2
    [ -n "$pid" ] || return 0
    wait_for "$limit" bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null
    return 0
}

stop_pidfile() {  # stop_pidfile FILE NAME SECONDS
    local pid
    pid=$(cat "$1" 2>/dev/null) || pid=$(pgrep -x "$2")
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null
    wait_pid_gone "$3" "$pid"
}

# Build time: create the accounting database, its user and the cluster
# record, then stop everything (the datadir stays in the image).
prebake_accounting() {
    set -e
    render_slurm_conf controller localhost localhost
    start_munge
    start_mariadb
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
                CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    start_slurmdbd
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER_NAME"
    stop_pidfile /run/slurm/slurmdbd.pid slurmdbd 20
    stop_mariadb
    stop_munge
    rm -f "$SLURM_CONF" /var/log/slurm/* /var/log/mariadb.log
    rm -rf /run/munge/* /run/mysqld/*
    set +e
}
