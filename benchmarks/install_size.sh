#!/usr/bin/env bash
# Install size and time of `pip install SRC` (core only, real dependency resolution, warm pip cache)
# into a fresh venv. Usage: benchmarks/install_size.sh [SRC=.] [LABEL=core]
# Run it twice (once to warm the cache) on a quiet machine; compare SRC trees before/after a change.
set -euo pipefail
SRC=${1:-.}; LABEL=${2:-core}
PY=${PYTHON:-python3}
VENV=$(mktemp -d)/venv
"$PY" -m venv "$VENV"
START=$(date +%s.%N)
"$VENV/bin/pip" install -q -c "$(dirname "$0")/../constraints.txt" "$SRC" >/dev/null
END=$(date +%s.%N)
SIZE=$(du -sm "$VENV" | cut -f1)
N=$("$VENV/bin/pip" list 2>/dev/null | tail -n +3 | wc -l)
printf '%s: %.0f s, venv %s MiB, %s packages\n' "$LABEL" "$(echo "$END - $START" | bc)" "$SIZE" "$N"
rm -rf "$(dirname "$VENV")"
