#!/usr/bin/env bash
# The guardrails: clang-format (.clang-format) and clang-tidy (.clang-tidy) on the C++ files
# changed since a base ref, shellcheck on every shell script, and the `duplicates` tool on the
# change when it is installed (it is not part of CI: that step is skipped when it is missing).
#
#   scripts/lint.sh [--base REF] [--all-format] [--no-tidy]
#     --base REF     what "changed" is measured against (default: origin/main, else main, else
#                    HEAD~1)
#     --all-format   check the format of every C++ file under src/, not only the changed ones
#     --no-tidy      skip clang-tidy (it needs a configured build/ with compile_commands.json)
# Exit status: non-zero when any check fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BASE=""
ALL_FORMAT=0
TIDY=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --all-format) ALL_FORMAT=1; shift ;;
    --no-tidy) TIDY=0; shift ;;
    *) echo "usage: $0 [--base REF] [--all-format] [--no-tidy]" >&2; exit 2 ;;
  esac
done
if [ -z "$BASE" ]; then
  for ref in origin/main main HEAD~1; do
    if git rev-parse --verify -q "$ref" >/dev/null; then BASE="$ref"; break; fi
  done
fi

status=0
mapfile -t changed < <(git diff --name-only --diff-filter=ACMR "$BASE" -- 'src/*.cc' 'src/*.h' \
                         'bench/*.cc' 'tests/*.cc')
if [ "$ALL_FORMAT" = 1 ]; then
  mapfile -t format_files < <(git ls-files 'src/*.cc' 'src/*.h')
else
  format_files=("${changed[@]}")
fi

echo "== clang-format (${#format_files[@]} files)"
if [ "${#format_files[@]}" -gt 0 ]; then
  clang-format --dry-run -Werror "${format_files[@]}" || status=1
fi

if [ "$TIDY" = 1 ]; then
  tidy_files=()
  for f in "${changed[@]}"; do
    case "$f" in *.cc) tidy_files+=("$f") ;; esac
  done
  echo "== clang-tidy (${#tidy_files[@]} files changed since $BASE)"
  if [ "${#tidy_files[@]}" -gt 0 ]; then
    if [ ! -f build/compile_commands.json ]; then
      echo "lint: build/compile_commands.json missing (run scripts/build.sh first)" >&2
      status=1
    else
      clang-tidy -p build --quiet --warnings-as-errors='*' "${tidy_files[@]}" || status=1
    fi
  fi
fi

echo "== shellcheck"
mapfile -t scripts < <(git ls-files '*.sh' '.ci/*')
shellcheck "${scripts[@]}" || status=1

if command -v duplicates >/dev/null; then
  echo "== duplicates (change since $BASE)"
  duplicates --change --base "$BASE"
else
  echo "== duplicates: not installed here, skipped"
fi

if [ "$status" = 0 ]; then echo "== lint passed"; else echo "== lint FAILED"; fi
exit "$status"
