#!/usr/bin/env bash
# The gateway's response cache on a real Redis Cluster: three redis-server masters on loopback
# (cluster mode, requirepass), two `strata gateway`s sharing the cache in front of a `strata
# node`. Checks sharing, keys on every master, ASK / MOVED during a slot migration, a killed
# master (still answered, fast) and its restart. Usage: tests/deploy/test_redis_cluster.sh [strata]
set -euo pipefail
start_ns=$(date +%s%N)
root=$(cd "$(dirname "$0")/../.." && pwd)
strata=${1:-${STRATA_BIN:-$root/build/strata}}
[[ -x $strata ]] || { echo "test_redis_cluster: no strata binary at $strata (build it first)" >&2; exit 1; }

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "test_redis_cluster: installing redis-server (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools >/dev/null
fi

work=$(mktemp -d /tmp/strata-rediscluster.XXXXXX)
trap 'rm -rf "$work"' EXIT
rc=0
python3 "$root/tests/deploy/redis_cluster_check.py" --strata "$strata" --work "$work" || rc=$?
ms=$((($(date +%s%N) - start_ns) / 1000000))
echo "test_redis_cluster: $([[ $rc == 0 ]] && echo PASS || echo FAIL), wall $((ms / 1000)).$((ms % 1000 / 100)) s"
exit "$rc"
