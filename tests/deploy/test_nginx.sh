#!/usr/bin/env bash
# deploy/nginx/strata.conf for real: nginx (Debian package, installed when missing) with a
# config rendered from that file (same directives; loopback ports, a self-signed certificate)
# in front of two `strata gateway`s and one `strata node`. Checks TLS, the ACME location, the
# HTTP->HTTPS redirect, the body limit, SSE passed through event by event, and failover when
# a gateway is killed. Usage: tests/deploy/test_nginx.sh [path/to/strata]
set -euo pipefail
start_ns=$(date +%s%N)
root=$(cd "$(dirname "$0")/../.." && pwd)
strata=${1:-${STRATA_BIN:-$root/build/strata}}
[[ -x $strata ]] || { echo "test_nginx: no strata binary at $strata (build it first)" >&2; exit 1; }

if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  echo "test_nginx: installing nginx (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null
fi
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y openssl >/dev/null

work=$(mktemp -d /tmp/strata-nginx.XXXXXX)
trap 'rm -rf "$work"' EXIT
rc=0
PATH=$PATH:/usr/sbin python3 "$root/tests/deploy/nginx_check.py" --strata "$strata" \
  --conf "$root/deploy/nginx/strata.conf" --work "$work" || rc=$?
ms=$((($(date +%s%N) - start_ns) / 1000000))
echo "test_nginx: $([[ $rc == 0 ]] && echo PASS || echo FAIL), wall $((ms / 1000)).$((ms % 1000 / 100)) s"
exit "$rc"
