#!/usr/bin/env bash
# The guardrails: clang-format (.clang-format) and clang-tidy (.clang-tidy) on the C++ files
# changed since a base ref, shellcheck on every shell script, and the `duplicates` tool on the
# change when it is installed (it is not part of CI: that step is skipped when it is missing).
#
#   scripts/lint.sh [--base REF] [--all-format] [--no-tidy]
#     --base REF     what "changed" is measured against (default: origin/main, else main, else
#                    HEAD~1)
#     --all-format   check the format of every C++ file (src/ tests/ bench/), not only the
#                    changed ones
#     --no-tidy      skip clang-tidy (its compile database: see tidy_db below)
#   scripts/lint.sh --ci               what CI runs (scripts/test.sh): clang-format --dry-run
#                                      -Werror on every C++ file of src/ tests/ bench/, and
#                                      every shell script through shellcheck (no build needed;
#                                      STRATA_LINT_FORMAT=0 leaves out the clang-format part)
#   scripts/lint.sh --tidy-all         clang-tidy (.clang-tidy, warnings as errors) on every
#                                      src/ file that the compile database compiles
#                                      (needs a configured build/; slow: one process per file,
#                                      STRATA_JOBS at a time, default 1, under nice)
#   scripts/lint.sh --fix-format       rewrites those C++ files with clang-format -i
#   scripts/lint.sh --fix-asio-alias   renames the `namespace net = boost::asio` alias of
#                                      src/node, src/gateway and src/loadtest (it shadows
#                                      strata::net) to `asio`, and its uses
# Exit status: non-zero when any check fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Every C++ file of src/, tests/ and bench/ that git knows (tracked, or new and not ignored).
cxx_files() {
  git ls-files --cached --others --exclude-standard -- 'src/*.cc' 'src/*.h' 'tests/*.cc' \
    'tests/*.h' 'bench/*.cc' 'bench/*.h' | while read -r f; do [ -f "$f" ] && echo "$f"; done
}

# Every shell script: *.sh, .ci/*, and files whose first line is a sh/bash shebang.
shell_scripts() {
  git ls-files --cached --others --exclude-standard | while read -r f; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sh|.ci/*) echo "$f" ;;
      *.py|*.cc|*.h|*.md|*.json|*.yaml|*.yml|*.js|*.mjs|*.html|*.css|*.gguf|*.txt) ;;
      *) head -n1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba|da)?sh( |$)' && echo "$f" ;;
    esac
  done
}

# The directory of a compile database that lists each src/ file on its own, for clang-tidy:
# build/ when it does; otherwise (a unity build lists only its batches) a configure-only
# tree build/tidy-db, made here in seconds (nothing is compiled).
tidy_db() {
  if [ -f build/compile_commands.json ] &&
       ! grep -qF '/Unity/unity_' build/compile_commands.json; then
    echo build
    return
  fi
  cmake -S "$ROOT" -B "$ROOT/build/tidy-db" -G Ninja -DSTRATA_TESTS=ON -DSTRATA_UNITY=OFF \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null || return 1
  echo build/tidy-db
}

# True when the compile database in directory $1 compiles file $2 (a path under the root).
compiled_in() {
  grep -qF "\"file\": \"$ROOT/$2\"" "$1/compile_commands.json"
}

case "${1:-}" in
  --ci)
    mapfile -t files < <(cxx_files)
    mapfile -t scripts < <(shell_scripts)
    status=0
    if [ "${STRATA_LINT_FORMAT:-1}" = 1 ]; then
      echo "== clang-format (${#files[@]} files)"
      clang-format --dry-run -Werror "${files[@]}" || status=1
    else
      echo "== clang-format skipped (STRATA_LINT_FORMAT=0)"
    fi
    echo "== shellcheck (${#scripts[@]} scripts)"
    shellcheck "${scripts[@]}" || status=1
    if [ "$status" = 0 ]; then echo "== lint --ci passed"; else echo "== lint --ci FAILED"; fi
    exit "$status" ;;
  --tidy-all)
    db=$(tidy_db) || { echo "lint: cannot configure a compile database" >&2; exit 1; }
    # The src/ files of the build (an ISA file of another architecture is not compiled here).
    mapfile -t files < <(git ls-files -- 'src/*.cc' | while read -r f; do
                           if compiled_in "$db" "$f"; then echo "$f"; fi; done)
    echo "== clang-tidy (${#files[@]} files of src/, ${STRATA_JOBS:-1} at a time)"
    t0=$SECONDS
    status=0
    printf '%s\0' "${files[@]}" |
      xargs -0 -n 1 -P "${STRATA_JOBS:-1}" nice -n 10 clang-tidy -p "$db" --quiet \
        --warnings-as-errors='*' 2>/dev/null || status=1
    echo "== clang-tidy took $((SECONDS - t0)) s"
    if [ "$status" = 0 ]; then echo "== clang-tidy passed"; else echo "== clang-tidy FAILED"; fi
    exit "$status" ;;
  --fix-format)
    mapfile -t files < <(cxx_files)
    clang-format -i "${files[@]}"
    echo "== clang-format applied to ${#files[@]} files"
    exit 0 ;;
  --fix-asio-alias)
    # The files that declare the alias or include a header that does; in them every `net::`
    # not qualified by a namespace (strata::net:: stays) names the alias.
    mapfile -t files < <(grep -rlE 'namespace net = boost::asio|"(node/server_impl|gateway/gateway_impl)\.h"' \
                           src/node src/gateway src/loadtest)
    perl -pi -e 's/\bnamespace net = boost::asio;/namespace asio = boost::asio;/; s/(?<![:\w])net::/asio::/g' \
      "${files[@]}"
    echo "== asio alias renamed in ${#files[@]} files"
    exit 0 ;;
esac

BASE=""
ALL_FORMAT=0
TIDY=1
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE="$2"; shift 2 ;;
    --all-format) ALL_FORMAT=1; shift ;;
    --no-tidy) TIDY=0; shift ;;
    *) echo "usage: $0 [--base REF] [--all-format] [--no-tidy] | --ci | --tidy-all |" \
            "--fix-format | --fix-asio-alias" >&2; exit 2 ;;
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
  mapfile -t format_files < <(cxx_files)
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
    if ! db=$(tidy_db); then
      echo "lint: cannot configure a compile database for clang-tidy" >&2
      status=1
    else
      # Only what the build compiles (bench/ is built by hand; a guessed command fails).
      compiled=()
      for f in "${tidy_files[@]}"; do
        if compiled_in "$db" "$f"; then
          compiled+=("$f")
        else
          echo "   (not in the build, skipped: $f)"
        fi
      done
      if [ "${#compiled[@]}" -gt 0 ]; then
        clang-tidy -p "$db" --quiet --warnings-as-errors='*' "${compiled[@]}" || status=1
      fi
    fi
  fi
fi

echo "== shellcheck"
mapfile -t scripts < <(shell_scripts)
shellcheck "${scripts[@]}" || status=1

if command -v duplicates >/dev/null; then
  echo "== duplicates (change since $BASE)"
  duplicates --change --base "$BASE"
else
  echo "== duplicates: not installed here, skipped"
fi

if [ "$status" = 0 ]; then echo "== lint passed"; else echo "== lint FAILED"; fi
exit "$status"
