#!/usr/bin/env bash
# Deployment tests: runs every tests/deploy/test_*.sh section, or the named ones
# (scripts/test-deploy.sh docker ssh), each in its own bash process; prints the wall time of
# each and exits non-zero if any failed. Sections install what they need (idempotent, as
# root); shared helpers: tests/deploy/lib.sh. Cache: $STRATA_CI_CACHE (/var/cache/strata-ci).
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
for s in "${sections[@]}"; do
  name="${s#test_}"
  echo "=== deploy section $name"
  t0=$SECONDS
  rc=0
  DEPLOY_SECTION="$name" bash "$DIR/$s.sh" || rc=$?
  dt=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then verdict=PASS; else verdict="FAIL (exit $rc)"; failed=$((failed + 1)); fi
  echo "=== deploy section $name: $verdict in ${dt} s"
  results+=("$(printf '%-20s %-16s %6d s' "$name" "$verdict" "$dt")")
done
echo "=== deploy summary (${#sections[@]} sections, $((SECONDS - t_all)) s)"
printf '%s\n' "${results[@]}"
[[ $failed -eq 0 ]]
