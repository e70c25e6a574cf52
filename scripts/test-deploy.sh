#!/usr/bin/env bash
# Deployment tests: runs every tests/deploy/test_*.sh section, or the named ones
# (scripts/test-deploy.sh docker ssh), each in its own bash process; prints the wall time of
# each and exits non-zero if any failed. Sections install what they need (idempotent, as
# root); shared helpers: tests/deploy/lib.sh. Cache: $STRATA_CI_CACHE (/var/cache/strata-ci).
# The docker section spends most of its time compiling strata inside `docker build`, while the
# others mostly wait on processes and sockets: when it is named with others it runs alongside
# them (its output is shown when it ends); STRATA_DEPLOY_SERIAL=1 runs everything in turn.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/tests/deploy"

sections=()
if [[ $# -eq 0 ]]; then
  for f in "$DIR"/test_*.sh; do
    [[ -e "$f" ]] && sections+=("$(basename "$f" .sh)")
  done
else
  for s in "$@"; do
    s="${s#test_}"
    s="${s%.sh}"
    [[ -f "$DIR/test_$s.sh" ]] || { echo "test-deploy: no section $DIR/test_$s.sh" >&2; exit 2; }
    sections+=("test_$s")
  done
fi
[[ ${#sections[@]} -gt 0 ]] || { echo "test-deploy: no sections in $DIR" >&2; exit 2; }

results=()
failed=0
t_all=$SECONDS
record() {  # NAME RC SECONDS
  local verdict=PASS
  if [[ $2 -ne 0 ]]; then verdict="FAIL (exit $2)"; failed=$((failed + 1)); fi
  echo "=== deploy section $1: $verdict in $3 s"
  results+=("$(printf '%-20s %-16s %6d s' "$1" "$verdict" "$3")")
}

# The docker section in the background when others run too.
bg_pid="" bg_log="" bg_t0=0
if [[ -z ${STRATA_DEPLOY_SERIAL:-} && ${#sections[@]} -gt 1 && " ${sections[*]} " == *" test_docker "* ]]; then
  bg_log="$(mktemp /tmp/strata-deploy-docker-log.XXXXXX)"
  bg_t0=$SECONDS
  # Its packages first: the other sections may run apt-get too (one dpkg at a time).
  STRATA_DEPLOY_INSTALL_ONLY=1 DEPLOY_SECTION=docker bash "$DIR/test_docker.sh" ||
    { echo "test-deploy: installing the docker section's packages failed" >&2; exit 1; }
  echo "=== deploy section docker: started in the background (log shown when it ends)"
  DEPLOY_SECTION=docker bash "$DIR/test_docker.sh" >"$bg_log" 2>&1 </dev/null &
  bg_pid=$!
  trap '[[ -n $bg_pid ]] && kill "$bg_pid" 2>/dev/null; rm -f "$bg_log"' EXIT
fi

for s in "${sections[@]}"; do
  name="${s#test_}"
  [[ -n $bg_pid && $name == docker ]] && continue
  echo "=== deploy section $name"
  t0=$SECONDS
  rc=0
  DEPLOY_SECTION="$name" bash "$DIR/$s.sh" || rc=$?
  record "$name" "$rc" "$((SECONDS - t0))"
done
if [[ -n $bg_pid ]]; then
  rc=0
  wait "$bg_pid" || rc=$?
  bg_pid=""
  echo "=== deploy section docker (ran in the background)"
  cat "$bg_log"
  record docker "$rc" "$((SECONDS - bg_t0))"
fi
echo "=== deploy summary (${#sections[@]} sections, $((SECONDS - t_all)) s)"
printf '%s\n' "${results[@]}"
[[ $failed -eq 0 ]]
