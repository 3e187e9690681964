#!/usr/bin/env bash
# Runs every go fuzz target of the module for a short time (FUZZTIME, default 3s).
#
# Go 1.26's fuzzing coordinator can fail a run that found nothing: when
# -fuzztime expires it compares the deadline's error with that of a child
# context not yet cancelled, and reports a bare "context deadline exceeded"
# (go.dev/issue/75804, fixed in Go 1.27). The window is microseconds wide, so
# it shows on a loaded machine. Such a run is repeated once. It is recognised
# strictly: that line is the target's whole failure report, no failing input
# was reported or written to testdata/fuzz, and a second one in a row fails.
# Any other failure fails the smoke run at once.
#
# `fuzz-smoke.sh --self-test` checks that recognition against sample outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
GO=${GO:-go}

# spurious_stop LOG NAME: whether LOG is the coordinator's spurious stop of NAME.
spurious_stop() {
  local log=$1 name=$2 report
  if grep -q 'Failing input written to' "$log"; then
    return 1
  fi
  # The lines between the target's FAIL line and the package's verdict.
  report=$(awk -v head="--- FAIL: $name (" '
    index($0, head) == 1 { on = 1; next }
    on && /^(FAIL|ok|exit status|PASS)/ { exit }
    on { print }' "$log")
  [ "$report" = "    context deadline exceeded" ]
}

# corpus DIR: the inputs written to a target's testdata corpus so far.
corpus() {
  if [ -d "$1" ]; then ls -A "$1"; fi
}

self_test() {
  local dir status=0
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  printf '%s\n' 'fuzz: elapsed: 3s, execs: 40304 (0/sec), new interesting: 4 (total: 108)' \
    '--- FAIL: FuzzX (3.20s)' '    context deadline exceeded' 'FAIL' 'exit status 1' 'FAIL	example/p	3.2s' >"$dir/spurious"
  printf '%s\n' '--- FAIL: FuzzX (0.51s)' '    --- FAIL: FuzzX (0.00s)' '        x_test.go:9: bad' '' \
    '    Failing input written to testdata/fuzz/FuzzX/0123' '    To re-run:' \
    '    go test -run=FuzzX/0123' 'FAIL' 'exit status 1' 'FAIL	example/p	0.5s' >"$dir/crasher"
  printf '%s\n' '--- FAIL: FuzzX (3.01s)' '    context deadline exceeded' '    fuzzing process hung or terminated unexpectedly: exit status 2' \
    'FAIL' 'exit status 1' 'FAIL	example/p	3.0s' >"$dir/hung"
  printf '%s\n' '--- FAIL: FuzzY (3.20s)' '    context deadline exceeded' 'FAIL' >"$dir/other-target"
  spurious_stop "$dir/spurious" FuzzX || { echo "self-test: the spurious stop was not recognised"; status=1; }
  for c in crasher hung other-target; do
    if spurious_stop "$dir/$c" FuzzX; then
      echo "self-test: $c was taken for a spurious stop"
      status=1
    fi
  done
  [ $status -eq 0 ] && echo "self-test: ok"
  return $status
}

if [ "${1:-}" = "--self-test" ]; then
  self_test
  exit
fi

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS= read -r line; do
  file=${line%%:*}
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"${line#*:}")
  dir=$(dirname "$file")
  pkg="./$dir"
  for attempt in 1 2; do
    echo "fuzz $pkg $name ($FUZZTIME)"
    before=$(corpus "$dir/testdata/fuzz/$name")
    if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
      break
    fi
    if [ "$attempt" -eq 1 ] && spurious_stop "$log" "$name" && [ "$(corpus "$dir/testdata/fuzz/$name")" = "$before" ]; then
      echo "  spurious stop of the Go fuzzing coordinator (go.dev/issue/75804); running $name again"
      continue
    fi
    cat "$log"
    status=1
    break
  done
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . | sed -E 's/^\.\///; s/:[0-9]+:/:/')
exit $status
