#!/usr/bin/env bash
# Run the test suite (fast tests by default; --slow adds the tests marked slow). Extra args go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

marker=(-m "not slow")
args=()
for arg in "$@"; do
  case "$arg" in
    --slow) marker=() ;;
    *) args+=("$arg") ;;
  esac
done

# Lint and format are part of the suite: CI fails on either.
.venv/bin/ruff check --quiet . || exit 1
.venv/bin/ruff format --check --quiet src tests benchmarks || { echo "test.sh: run: .venv/bin/ruff format src tests benchmarks" >&2; exit 1; }
.venv/bin/python -m pytest "${marker[@]}" "${args[@]}"
status=$?
# pytest exits 5 when nothing was collected: that is a failure here, not a pass.
[ "$status" = 5 ] && echo "test.sh: no tests were collected" >&2
exit "$status"
