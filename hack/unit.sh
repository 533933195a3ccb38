#!/usr/bin/env bash
# hack/unit.sh: the Go unit and integration tests (`make unit`). Root-only
# tests (namespaces, cgroups, the real runc from `make tools`) skip with a
# reason when not root. Prints go test's per-package lines, the failures in
# full, and last "unit: N passed, M failed, K skipped" (counted per test,
# subtests included). Full verbose log: _output/unit.log.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
mkdir -p "$ROOT/_output"
LOG=$ROOT/_output/unit.log
cd "$ROOT"
"$GO" test -count=1 -v ./... >"$LOG" 2>&1
rc=$?
grep -E '^(ok|FAIL|---|\?) ' "$LOG" | grep -vE '^(--- PASS|--- SKIP)' | grep -vE '^\?' || true
if [ "$rc" -ne 0 ]; then
  echo "--- failures (from $LOG):"
  grep -E -B2 -A12 -- '^\s*--- FAIL' "$LOG" | head -200
  grep -E '^(# |.*\.go:[0-9]+:[0-9]+: )' "$LOG" | head -40 || true
  # what each failing test said (t.Errorf/t.Fatalf lines, a crash child's
  # output included): the context lines above can miss it
  echo "--- failure messages:"
  grep -E '^\s+[A-Za-z0-9_]+\.go:[0-9]+: ' "$LOG" | head -120 || true
fi
p=$(grep -cE -- '^\s*--- PASS' "$LOG")
f=$(grep -cE -- '^\s*--- FAIL' "$LOG")
s=$(grep -cE -- '^\s*--- SKIP' "$LOG")
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # a build error or a panic
echo "unit: $p passed, $f failed, $s skipped"
exit "$rc"
