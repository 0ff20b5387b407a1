#!/bin/bash
# Docker HEALTHCHECK: ready line printed and the role's daemons run.
test -e /run/soma-ready || exit 1
case "${SGE_ROLE:-all}" in
    all)    qstat -f >/dev/null && pgrep -x sge_execd >/dev/null ;;
    master) qstat -f >/dev/null ;;
    exec)   pgrep -x sge_execd >/dev/null ;;
    *)      exit 1 ;;
esac
