#!/bin/bash
# Start sshd (fresh host keys for this container), then the DRMS image's own entrypoint.
# soma-lib.sh comes with the base image (every DRMS image installs it, see ../common).
set -e
SOMA_NAME=ssh-host
SOMA_LOGS=/var/log/sshd.log
# shellcheck source=../common/soma-lib.sh
. /usr/local/lib/soma-lib.sh
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log || fail "sshd did not start"
say "sshd started"
exec /usr/local/sbin/entrypoint.sh "$@"
