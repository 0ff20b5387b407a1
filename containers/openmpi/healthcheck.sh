#!/bin/bash
# Docker HEALTHCHECK: ready (line printed) and sshd running.
test -e /run/soma-ready && pgrep -x sshd >/dev/null
