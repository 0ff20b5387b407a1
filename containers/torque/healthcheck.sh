#!/bin/bash
# Docker HEALTHCHECK: ready line printed and the role's daemons alive.
test -e /run/soma-ready || exit 1
case "${TORQUE_ROLE:-all}" in
    all)    qstat -B >/dev/null 2>&1 && pgrep -x pbs_mom >/dev/null ;;
    server) qstat -B >/dev/null 2>&1 && pgrep -x pbs_sched >/dev/null ;;
    mom)    pgrep -x pbs_mom >/dev/null ;;
    *)      exit 1 ;;
esac
