#!/bin/bash
# Docker HEALTHCHECK: ready line printed and the role's daemons answer (slurmdbd only when
# accounting is on: SLURM_ACCOUNTING=0 runs none).
test -e /run/soma-ready || exit 1
dbd_ok() { [ "${SLURM_ACCOUNTING:-1}" = 0 ] || pgrep -x slurmdbd >/dev/null; }
case "${SLURM_ROLE:-all}" in
    all)        scontrol ping | grep -q UP && pgrep -x slurmd >/dev/null && dbd_ok ;;
    controller) scontrol ping | grep -q UP && dbd_ok ;;
    compute)    pgrep -x slurmd >/dev/null ;;
    *)          exit 1 ;;
esac
