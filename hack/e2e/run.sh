#!/usr/bin/env bash
# hack/e2e/run.sh: run the e2e scripts one after another against the running
# harness containerd and print the combined "e2e: N passed, M failed" last
# (exit 1 if anything failed). A script that ends without its own summary
# line counts as one failure.
#
#   [RUNTIME_HANDLER=magnetar-runc|runc] [E2E_SCRIPTS="smoke multi ..."] hack/e2e/run.sh
# leak runs before restart so that it measures a daemon that was not restarted.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
HERE=$ROOT/hack/e2e
E2E_SCRIPTS=${E2E_SCRIPTS:-"smoke multi sharedpid tty exitcode resources leak restart keeper forgotten"}
export RUNTIME_HANDLER=${RUNTIME_HANDLER:-magnetar-runc}

pass=0 fail=0 failed_suites=""
t0=$SECONDS
for s in $E2E_SCRIPTS; do
  out=$WORK/logs/e2e-$s-$RUNTIME_HANDLER.log
  mkdir -p "$WORK/logs"
  ts=$SECONDS
  rc=0
  "$HERE/$s.sh" 2>&1 | tee "$out" || rc=$?
  line=$(grep -E '^e2e: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "FAIL $s: ended without a summary (rc=$rc), see $out"
    fail=$((fail + 1)); failed_suites="$failed_suites $s"
    continue
  fi
  p=$(sed 's/^e2e: \([0-9]*\) passed.*/\1/' <<<"$line")
  f=$(sed 's/.* \([0-9]*\) failed$/\1/' <<<"$line")
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$f" -gt 0 ] || [ "$rc" -ne 0 ]; then
    failed_suites="$failed_suites $s"
    if [ "$f" -eq 0 ]; then fail=$((fail + 1)); fi
  fi
  echo "--- $s: $p passed, $f failed ($((SECONDS - ts)) s)"
done
echo "--- e2e against $RUNTIME_HANDLER took $((SECONDS - t0)) s${failed_suites:+; failed suites:$failed_suites}"
echo "e2e: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
