#!/usr/bin/env bash
# strata-healthcheck [PORT [PATH]]: the image's HEALTHCHECK. Exits 0 when
# http://127.0.0.1:PORT/PATH answers 200 (bash's /dev/tcp: no curl in the image).
# Defaults: $STRATA_HEALTH_PORT or 8080, $STRATA_HEALTH_PATH or /health.
set -euo pipefail
port="${1:-${STRATA_HEALTH_PORT:-8080}}"
path="${2:-${STRATA_HEALTH_PATH:-/health}}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3<&-
[[ "$status" == "HTTP/1."[01]" 200"* ]]
