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
stage_start
if [ "$MODE" != critest ]; then
  for h in $RUNTIME_HANDLERS; do
    run_suite "e2e[$h]" e2e "$WORK/logs/e2e-all-$h.log" env RUNTIME_HANDLER="$h" "$ROOT/hack/e2e/run.sh"
  done
fi
if [ "$MODE" != e2e ]; then
  for h in $CRITEST_HANDLERS; do
    run_suite "critest[$h]" critest "$WORK/logs/critest-all-$h.log" env RUNTIME_HANDLER="$h" "$ROOT/hack/critest.sh"
  done
fi
log "e2e-all: $MODE against $RUNTIME_HANDLERS (critest: $CRITEST_HANDLERS) took $((SECONDS - t0)) s (logs in $WORK/logs)"
