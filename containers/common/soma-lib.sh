# soma-lib.sh: shell functions shared by the entrypoints of the soma_schedulers test images
# (installed as /usr/local/lib/soma-lib.sh; see README.md beside this file).
# shellcheck shell=bash
#
# Set before sourcing (or after, before the first call):
#   SOMA_NAME   image name: log prefix and ready line ("slurm" -> "SOMA-SCHEDULERS-READY slurm")
#   SOMA_LOGS   globs of the daemon logs that `fail` tails (default: none)
#   SOMA_POLL   seconds between two tries of `wait_for` (default 0.1)
#   ROLE, HOST  the container's role and host name (stop and start-up lines)
# and define `stop_daemons` (what SIGTERM/SIGINT runs before the container exits 0).

SOMA_NAME=${SOMA_NAME:-soma}
SOMA_LOGS=${SOMA_LOGS:-}
SOMA_POLL=${SOMA_POLL:-0.1}
SOMA_READY_FILE=/run/soma-ready  # read by every image's healthcheck.sh
SOMA_T0=$(date +%s.%N)

say() { echo "[$SOMA_NAME $(date +%T.%3N)] $*"; }

# elapsed: seconds since the library was sourced (one decimal).
elapsed() { awk -v t0="$SOMA_T0" -v t1="$(date +%s.%N)" 'BEGIN{printf "%.1f", t1 - t0}'; }

# tail_logs: the last 30 lines of every non-empty file matching $SOMA_LOGS.
tail_logs() {
    local f
    # shellcheck disable=SC2086  # the globs expand here
    for f in $SOMA_LOGS; do
        [ -s "$f" ] && { echo "---- $f"; tail -n 30 "$f"; }
    done
    return 0
}

# fail MESSAGE: log it, tail the daemon logs, exit 1.
fail() {
    say "ERROR: $*"
    tail_logs
    exit 1
}

# wait_for SECONDS CMD...: run CMD (quietly) every $SOMA_POLL s until it succeeds; 1 on timeout.
wait_for() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep "$SOMA_POLL"
    done
}

# wait_gone SECONDS PATTERN: wait until no process name matches PATTERN (pgrep -x); 1 on timeout.
wait_gone() { wait_for "$1" bash -c "! pgrep -x '$2'"; }

# cap_open_files N: lower the soft open-files limit to N when it is above (Docker's default of
# 1M open files slows daemons that close every fd).
cap_open_files() {
    local cur
    cur=$(ulimit -Sn)
    [ "$cur" = unlimited ] || [ "$cur" -le "$1" ] || ulimit -Sn "$1"
}

# announce LINE [DETAIL...]: mark the container ready for healthcheck.sh, log the start-up time,
# print LINE (the exact line the test harness waits for).
announce() {
    local line=$1; shift
    say "ready after $(elapsed) s${1:+: $*}"
    touch "$SOMA_READY_FILE"
    echo "$line"
}

# ready [DETAIL...]: "SOMA-SCHEDULERS-READY $SOMA_NAME" (the cluster's main container).
ready() { announce "SOMA-SCHEDULERS-READY $SOMA_NAME" "$@"; }

# started KIND: "SOMA-SCHEDULERS-<KIND>-STARTED $SOMA_NAME $HOST" (a node container).
started() { announce "SOMA-SCHEDULERS-$1-STARTED $SOMA_NAME $HOST"; }

# soma_entrypoint NAME PREFIX ROLES TIMEOUT [LOGS]: the settings an entrypoint starts with
# (after sourcing this library), from its variables <PREFIX>_ROLE and <PREFIX>_READY_TIMEOUT:
#   SOMA_NAME  NAME
#   ROLE       $<PREFIX>_ROLE, one of the words of ROLES (default: the first); else `fail`
#   HOST       this host's name, without domain
#   TIMEOUT    $<PREFIX>_READY_TIMEOUT: seconds before giving up (default TIMEOUT)
#   SOMA_LOGS  LOGS, when given (quote the globs: they expand when `fail` tails the logs)
soma_entrypoint() {
    SOMA_NAME=$1
    local role_var=$2_ROLE timeout_var=$2_READY_TIMEOUT roles=$3
    # shellcheck disable=SC2034  # ROLE, HOST, TIMEOUT and SOMA_LOGS are for the entrypoint
    {
        ROLE=${!role_var:-${roles%% *}}
        HOST=$(uname -n)
        HOST=${HOST%%.*}
        TIMEOUT=${!timeout_var:-$4}
        [ $# -lt 5 ] || SOMA_LOGS=$5
    }
    case " $roles " in
        *" $ROLE "*) ;;
        *) fail "unknown $role_var=$ROLE (${roles// /, })" ;;
    esac
}

# soma_stop: the SIGTERM/SIGINT handler: stop_daemons, then exit 0.
soma_stop() {
    trap '' TERM INT
    say "stopping (${ROLE:-})"
    rm -f "$SOMA_READY_FILE"
    stop_daemons
    say "stopped"
    exit 0
}

# serve [CMD...]: the end of an entrypoint: run CMD then stop, or (no CMD) idle until a signal.
serve() {
    if [ $# -gt 0 ]; then
        "$@" &
        wait $!
        soma_stop
    fi
    while true; do
        sleep infinity &
        wait $!
    done
}

trap soma_stop TERM INT
