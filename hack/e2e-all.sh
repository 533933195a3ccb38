#!/usr/bin/env bash
# hack/e2e-all.sh: the end-to-end stage of `make test`, with guaranteed teardown.
# Wipes and starts the harness containerd + sandboxers (hack/containerd.sh) in
# WORK (default _output/e2e), runs the e2e scripts (hack/e2e/run.sh) and/or
# critest (hack/critest.sh) against each handler in RUNTIME_HANDLERS, then
# always stops everything and removes what it mounted (trap), and exits 1 if
# any part failed.
#
#   hack/e2e-all.sh [all|e2e|critest]      (default all)
#   RUNTIME_HANDLERS="magnetar-runc runc"  also validate the scripts against
#                                          containerd's runc shim (default: magnetar-runc)
#   CRITEST_HANDLERS="runc magnetar-runc"  the handlers critest runs on
#                                          (default: RUNTIME_HANDLERS)
#   CRITEST_SET=basic|offline              critest's set of specs (hack/critest.sh)
# Prints per part "e2e: ..." / "critest: ..." and last the combined
# "total: N passed, M failed, K skipped".
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=${1:-all}
case "$MODE" in all|e2e|critest) ;; *) echo "usage: $0 [all|e2e|critest]" >&2; exit 2 ;; esac
RUNTIME_HANDLERS=${RUNTIME_HANDLERS:-magnetar-runc}
CRITEST_HANDLERS=${CRITEST_HANDLERS:-$RUNTIME_HANDLERS}
export WORK
CD=$ROOT/hack/containerd.sh

pass=0 fail=0 skip=0 summary=()
finish() {
  local rc=$?
  set +e
  stage_teardown
  stage_end total "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# every Magnetar handler asked for must have its binary
for h in $RUNTIME_HANDLERS $CRITEST_HANDLERS; do
  if bin=$(sandboxer_binary "$h") && [ ! -x "$ROOT/bin/$bin" ]; then
    echo "FAIL e2e-all: bin/$bin missing: run make build"
    fail=$((fail + 1)); exit 1
  fi
done

t0=$SECONDS
# a fresh state; reset also stops what an earlier, interrupted run left
"$CD" reset >/dev/null 2>&1 || log "reset of $WORK failed; starting anyway"
"$CD" start
mkdir -p "$WORK/logs"
if [ "$MODE" != critest ]; then
  for h in $RUNTIME_HANDLERS; do
    log "e2e scripts against $h"
    rc=0; RUNTIME_HANDLER=$h "$ROOT/hack/e2e/run.sh" 2>&1 | tee "$WORK/logs/e2e-all-$h.log" || rc=$?
    add_counts "$WORK/logs/e2e-all-$h.log" e2e "e2e[$h]" "$rc"
  done
fi
if [ "$MODE" != e2e ]; then
  for h in $CRITEST_HANDLERS; do
    log "critest against $h"
    rc=0; RUNTIME_HANDLER=$h "$ROOT/hack/critest.sh" 2>&1 | tee "$WORK/logs/critest-all-$h.log" || rc=$?
    add_counts "$WORK/logs/critest-all-$h.log" critest "critest[$h]" "$rc"
  done
fi
log "e2e-all: $MODE against $RUNTIME_HANDLERS (critest: $CRITEST_HANDLERS) took $((SECONDS - t0)) s (logs in $WORK/logs)"
