#!/bin/bash
# Docker HEALTHCHECK: ready line printed and the role's daemons answer.
test -e /run/soma-ready || exit 1
pgrep -x condor_master >/dev/null || exit 1
case "${HTCONDOR_ROLE:-all}" in
    all|manager) runuser -u alice -- condor_q -totals >/dev/null 2>&1 ;;
    execute)     pgrep -x condor_startd >/dev/null ;;
    *)           exit 1 ;;
esac
