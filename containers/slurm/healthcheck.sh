#!/bin/bash
# Docker HEALTHCHECK: ready line printed and the role's daemons answer.
test -e /run/soma-ready || exit 1
case "${SLURM_ROLE:-all}" in
    all)        scontrol ping | grep -q UP && pgrep -x slurmd >/dev/null && pgrep -x slurmdbd >/dev/null ;;
    controller) scontrol ping | grep -q UP && pgrep -x slurmdbd >/dev/null ;;
    compute)    pgrep -x slurmd >/dev/null ;;
    *)          exit 1 ;;
esac
