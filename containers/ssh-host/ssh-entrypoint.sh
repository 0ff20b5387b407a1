#!/bin/bash
# Start sshd (fresh host keys for this container), then the DRMS image's own entrypoint.
set -e
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log
echo "sshd started"
exec /usr/local/sbin/entrypoint.sh "$@"
