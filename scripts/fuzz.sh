#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 60s) and
# prints the executions each reached. New crashers land in testdata/fuzz/ of
# their package; keep them as regression seeds.
set -euo pipefail
FUZZTIME=${FUZZTIME:-60s}
total=0
for pkg in $(go list ./...); do
  for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "== $pkg $f ($FUZZTIME)"
    out=$(go test -run=NONE -fuzz="^${f}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1) || { echo "$out"; exit 1; }
    execs=$(echo "$out" | grep -o 'execs: [0-9]*' | tail -1 | awk '{print $2}')
    echo "   executions: ${execs:-?}"
    total=$((total + ${execs:-0}))
  done
done
echo "fuzz: all targets passed; total executions: $total"
